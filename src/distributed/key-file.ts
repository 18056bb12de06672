import { stat } from 'node:fs/promises';
import { HotPatchError, messageOf } from '../core/index.js';
import { importPrivateKey, type PrivateKey } from '../crypto-agile/index.js';
import { readFileBounded } from '../repo/index.js';

const MAX_KEY_FILE = 64 * 1024;

/**
 * A private key file (PEM, PKCS#8, as `hotpatch keygen` writes it) that a long-running service
 * signs with — an agent its fleet reports. Refused (INVALID, the cause's code in `detail.code`)
 * when it cannot be read or imported, or when group or others may read it: where the CLI only
 * warns an operator at the keyboard, nobody reads a service's warnings, and a key others can
 * read lets them sign as this host (as the agent refuses such token files).
 */
export async function readPrivateKeyFile(path: string, what: string): Promise<PrivateKey> {
  const refuse = (message: string, cause?: unknown): HotPatchError =>
    new HotPatchError('INVALID', `${what} ${path}: ${message}`, {
      ...(cause === undefined ? {} : { cause }),
      ...(cause instanceof HotPatchError ? { detail: { code: cause.code } } : {}),
    });
  let mode: number;
  try {
    mode = (await stat(path)).mode;
  } catch (error) {
    throw refuse(messageOf(error), error);
  }
  if ((mode & 0o077) !== 0) throw refuse(`mode ${(mode & 0o777).toString(8)} lets group or others read it: it must be 0600 (readable by its owner only)`);
  let bytes: Uint8Array;
  try {
    bytes = await readFileBounded(path, MAX_KEY_FILE, { noFollow: false, what: 'key file' });
  } catch (error) {
    throw refuse(messageOf(error), error);
  }
  try {
    return importPrivateKey(new TextDecoder().decode(bytes));
  } catch (error) {
    throw refuse(messageOf(error), error);
  }
}

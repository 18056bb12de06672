import { stat } from 'node:fs/promises';
import { HotPatchError } from '../core/index.js';
import { importPrivateKey, type PrivateKey } from '../crypto-agile/index.js';
import { readFileBounded } from '../repo/index.js';
import { UsageError } from './cli-error.js';

const MAX_KEY_FILE = 64 * 1024;

/**
 * A private key file given with `--key` (PEM, as `hotpatch keygen` writes it). The key file is
 * the operator's own input: one that cannot be read as a key is a usage error (exit 2); a key
 * group or others may read is used, with a warning (an operator at the keyboard sees it).
 */
export async function loadPrivateKey(path: string, warn: (text: string) => void): Promise<PrivateKey> {
  let bytes: Uint8Array;
  try {
    bytes = await readFileBounded(path, MAX_KEY_FILE, { noFollow: false, what: 'key file' });
  } catch (error) {
    if (error instanceof HotPatchError && error.code !== 'IO') throw new UsageError(`--key ${path}: ${error.message}`, error.code, { cause: error });
    throw error;
  }
  const mode = (await stat(path)).mode & 0o077;
  if (mode !== 0) warn(`${path} is readable by group or others (mode ${(0o600 | mode).toString(8)}); keep private keys 0600`);
  try {
    return importPrivateKey(new TextDecoder().decode(bytes));
  } catch (error) {
    if (error instanceof HotPatchError) throw new UsageError(`--key ${path}: ${error.message}`, error.code, { cause: error });
    throw error;
  }
}

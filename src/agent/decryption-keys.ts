import { stat } from 'node:fs/promises';
import { HotPatchError, asObject, isPlainObject, rejectUnknownFields } from '../core/index.js';
import { importRecipientPrivateKey, unwrapProviderOf, type DecryptionKey, type RecipientPrivateKey, type UnwrapKeyProvider } from '../crypto-agile/index.js';
import { Pkcs11RecipientKey, readPinFile } from '../keys/index.js';
import { readFileBounded } from '../repo/index.js';

/** A decryption key of the agent: a PEM file, a key on a PKCS#11 token, or a provider. */
export type AgentDecryptionKey = string | { pkcs11: { module: string; token: string; keyLabel: string; pinFile: string } } | UnwrapKeyProvider;

/**
 * The agent's decryption keys: PEM files (bounded reads; a file others may read is refused: it
 * holds a secret), keys on a PKCS#11 token (opened now, closed by `undo`), providers as given.
 */
export async function openDecryptionKeys(keys: readonly AgentDecryptionKey[], undo: (() => Promise<void> | void)[]): Promise<DecryptionKey[]> {
  if (!Array.isArray(keys)) throw new HotPatchError('INVALID', 'decryptionKeys must be a list');
  const out: DecryptionKey[] = [];
  for (const key of keys) {
    if (typeof key === 'string') out.push(await readDecryptionKeyFile(key));
    else if (isPlainObject(key) && 'pkcs11' in key) {
      const p = asObject(key.pkcs11, 'decryptionKeys[].pkcs11');
      rejectUnknownFields(p, PKCS11_KEY_FIELDS, 'decryptionKeys[].pkcs11');
      const { module, token, keyLabel, pinFile } = p as Record<string, string>;
      const pin = await readPinFile(pinFile!);
      const opened = Pkcs11RecipientKey.open({ module: module!, token: token!, keyLabel: keyLabel!, pin });
      undo.push(() => opened.close());
      out.push(opened);
    } else out.push(unwrapProviderOf(key as UnwrapKeyProvider));
  }
  return out;
}

const PKCS11_KEY_FIELDS: ReadonlySet<string> = new Set(['module', 'token', 'keyLabel', 'pinFile']);

async function readDecryptionKeyFile(file: string): Promise<RecipientPrivateKey> {
  const mode = (
    await stat(file).catch((cause: unknown) => {
      throw new HotPatchError('NOT_FOUND', `decryption key ${file} cannot be read`, { cause });
    })
  ).mode;
  if ((mode & 0o077) !== 0)
    throw new HotPatchError('INVALID', `decryption key ${file} is readable by group or others (mode ${(mode & 0o777).toString(8)}): make it 0600`);
  return importRecipientPrivateKey(new TextDecoder().decode(await readFileBounded(file, 64 * 1024, { noFollow: false, what: 'decryption key' })));
}

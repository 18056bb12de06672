import { HotPatchError, asObject, isPlainObject, rejectUnknownFields } from '../core/index.js';
import { importRecipientPrivateKey, unwrapProviderOf, type DecryptionKey, type RecipientPrivateKey, type UnwrapKeyProvider } from '../crypto-agile/index.js';
import { Pkcs11RecipientKey, readPinFile, readSecretFile } from '../keys/index.js';

/** A decryption key of the agent: a PEM file, a key on a PKCS#11 token, or a provider. */
export type AgentDecryptionKey = string | { pkcs11: { module: string; token: string; keyLabel: string; pinFile: string } } | UnwrapKeyProvider;

/**
 * The agent's decryption keys: PEM files (bounded reads; a file others may read, or no regular
 * file, is refused: it holds a secret), keys on a PKCS#11 token (opened now, closed by
 * `undo`), providers as given.
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
  const pem = await readSecretFile(file, 'decryption key', 64 * 1024);
  try {
    return importRecipientPrivateKey(new TextDecoder().decode(pem));
  } catch (error) {
    // Which of the agent's keys is wrong (a signing key given as one, say) is the useful part.
    throw error instanceof HotPatchError ? new HotPatchError(error.code, `decryption key ${file}: ${error.message}`, { cause: error }) : error;
  } finally {
    pem.fill(0);
  }
}

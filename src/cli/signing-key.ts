import { basename } from 'node:path';
import { HotPatchError } from '../core/index.js';
import { FileKeyProvider, Pkcs11KeyProvider, type KeyProvider, type Pkcs11KeyOptions } from '../keys/index.js';
import { optionalString, requireString } from './args.js';
import { UsageError } from './cli-error.js';
import { pkcs11Options } from './pkcs11-flags.js';
import { loadPrivateKey } from './private-key-file.js';

const KEYID = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/;

/** The key a signing command (`sign`, `index`) was given: a key file, or a key on a PKCS#11 token. */
export interface SigningKey {
  /** The trust store's name for it: --keyid, or the key file's name without .key. */
  keyid: string;
  keyPath: string | undefined;
  token: Pkcs11KeyOptions | undefined;
}

/** `--key FILE [--keyid]` or the PKCS#11 flags with `--keyid`, checked before anything is read. */
export async function signingKeyOf(values: Record<string, unknown>): Promise<SigningKey> {
  const token = await pkcs11Options(values);
  if (token !== undefined && values.key !== undefined) throw new UsageError('give --key or a PKCS#11 key, not both');
  const keyPath = token === undefined ? requireString(values, 'key') : undefined;
  const keyid = optionalString(values, 'keyid') ?? (keyPath === undefined ? undefined : basename(keyPath).replace(/\.key$/, ''));
  if (keyid === undefined) throw new UsageError("a PKCS#11 key needs --keyid: the trust store's name for it");
  if (!KEYID.test(keyid)) throw new UsageError(`key id ${JSON.stringify(keyid)} must be 1-128 of [A-Za-z0-9._:@-]; pass --keyid`);
  return { keyid, keyPath, token };
}

/** Runs `body` with the key's provider; a token session is closed afterwards, whatever happened. */
export async function withSigner<T>(key: SigningKey, warn: (text: string) => void, body: (signer: KeyProvider) => Promise<T>): Promise<T> {
  const signer = key.token === undefined ? new FileKeyProvider(await loadPrivateKey(key.keyPath!, warn)) : openTokenKey(key.token);
  try {
    return await body(signer);
  } finally {
    if (signer instanceof Pkcs11KeyProvider) signer.close();
  }
}

/** The token key, or a usage error (exit 2) when the label names a key that is not for signing. */
function openTokenKey(token: Pkcs11KeyOptions): Pkcs11KeyProvider {
  try {
    return Pkcs11KeyProvider.open(token);
  } catch (error) {
    if (error instanceof HotPatchError && error.code === 'INVALID')
      throw new UsageError(`--key-label ${token.keyLabel}: ${error.message}`, 'INVALID', { cause: error });
    throw error;
  }
}

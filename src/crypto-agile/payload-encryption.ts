import { createHmac, hkdfSync, randomBytes, timingSafeEqual, type Hmac } from 'node:crypto';
import { HotPatchError, decodeBase64, encodeBase64, type ManifestEncryption, type ManifestRecipient } from '../core/index.js';
import { DATA_KEY_LENGTH, unwrapDataKey, unwrapProviderOf, wrapDataKey, type UnwrapKeyProvider, type WrappedKey } from './key-wrap.js';
import { NONCE_PREFIX_LENGTH, PAYLOAD_CIPHER, decryptChunks, encryptChunks, type PayloadCipherParams } from './payload-cipher.js';
import type { RecipientPrivateKey, RecipientPublicKey } from './recipient-keys.js';

/** 1 MiB chunks: a tag per MiB, and a chunk is all a decrypting reader holds. */
export const DEFAULT_CHUNK_SIZE = 1024 * 1024;

/** A key that decrypts payloads: a recipient private key in this process, or one on a token or in a KMS. */
export type DecryptionKey = RecipientPrivateKey | UnwrapKeyProvider;

/** One recipient of a payload: its key, and the id it is named by in the manifest. */
export interface PayloadRecipient {
  kid: string;
  key: RecipientPublicKey;
}

export interface EncryptingPayload {
  /** The ciphertext, chunk by chunk, as the plaintext is read. */
  ciphertext: AsyncIterable<Uint8Array>;
  /** Once the ciphertext is read to its end: the manifest's `encryption` and the ciphertext's size (its `payload_size`). */
  result(): { encryption: ManifestEncryption; ciphertextSize: number };
}

/**
 * Encrypts a payload for a patch (what `packPatch({ encryptTo })` does): a fresh data key seals
 * the plaintext in chunks (payload-cipher.ts) and is wrapped to each recipient (key-wrap.ts);
 * the plaintext's MAC (keyed by the data key) and size are taken while it streams. The data key never leaves this
 * function.
 */
export function encryptPayload(
  plaintext: AsyncIterable<Uint8Array>,
  recipients: readonly PayloadRecipient[],
  options: { patchId: string; chunkSize?: number },
): EncryptingPayload {
  if (!Array.isArray(recipients) || recipients.length === 0) throw new HotPatchError('INVALID', 'an encrypted payload needs at least one recipient');
  if (new Set(recipients.map((r) => r.kid)).size !== recipients.length) throw new HotPatchError('INVALID', 'each recipient of a payload needs its own key id');
  const dataKey = new Uint8Array(randomBytes(DATA_KEY_LENGTH));
  const params: PayloadCipherParams = {
    patchId: options.patchId,
    chunkSize: options.chunkSize ?? DEFAULT_CHUNK_SIZE,
    noncePrefix: new Uint8Array(randomBytes(NONCE_PREFIX_LENGTH)),
  };
  const wrapped = recipients.map((r) => wrapDataKey(dataKey, r.key, r.kid, options.patchId));
  const mac = plaintextMac(dataKey, options.patchId);
  let plaintextSize = 0;
  let result: { encryption: ManifestEncryption; ciphertextSize: number } | undefined;
  let ciphertextSize = 0;
  let done = false;
  async function* hashed(): AsyncGenerator<Uint8Array> {
    for await (const piece of plaintext) {
      mac.update(piece);
      plaintextSize += piece.length;
      yield piece;
    }
  }
  async function* ciphertext(): AsyncGenerator<Uint8Array> {
    try {
      for await (const sealed of encryptChunks(dataKey, params, hashed())) {
        ciphertextSize += sealed.length;
        yield sealed;
      }
      done = true;
    } finally {
      dataKey.fill(0);
    }
  }
  return {
    ciphertext: ciphertext(),
    result() {
      if (!done) throw new HotPatchError('INVALID', 'the encrypted payload has not been read to its end');
      return (result ??= {
        ciphertextSize,
        encryption: {
          cipher: PAYLOAD_CIPHER,
          chunk_size: params.chunkSize,
          nonce_prefix: encodeBase64(params.noncePrefix),
          plaintext_size: plaintextSize,
          plaintext_mac: `hmac-sha256:${mac.digest('hex')}`,
          recipients: wrapped.map(manifestRecipient),
        },
      });
    },
  };
}

/**
 * The plaintext of an encrypted payload, checked: the data key unwrapped with `key` (or the
 * first of several keys that can; from the recipient named `kid`, or the first entry of the
 * key's algorithm that unwraps), every chunk
 * authenticated before it is yielded, and at the end the plaintext's size and MAC against
 * the manifest's. Errors: DECRYPT_FAILED (no entry unwraps with this key; a chunk that does not
 * authenticate), SIZE_MISMATCH / HASH_MISMATCH (the plaintext is not the one signed). A caller
 * keeps nothing it was given before an error (the stager writes to a temp file it removes).
 */
export async function* decryptPayload(
  encryption: ManifestEncryption,
  patchId: string,
  key: DecryptionKey | readonly DecryptionKey[],
  ciphertext: AsyncIterable<Uint8Array>,
  kid?: string,
): AsyncGenerator<Uint8Array> {
  const keys = providersOf(key);
  const dataKey = await unwrapWithAny(encryption, patchId, keys, kid);
  const params: PayloadCipherParams = {
    patchId,
    chunkSize: encryption.chunk_size,
    noncePrefix: decodeBase64(encryption.nonce_prefix, 'encryption nonce_prefix'),
  };
  const check = new PlaintextCheck(encryption, patchId, dataKey);
  try {
    for await (const piece of decryptChunks(dataKey, params, ciphertext)) {
      check.update(piece);
      yield piece;
    }
  } finally {
    dataKey.fill(0);
  }
  check.finish();
}

/**
 * Checks a payload decrypted before (the staged plaintext of an encrypted patch, after a
 * restart) against its signed manifest: the data key is unwrapped again with `key`, and the
 * plaintext must have the signed plaintext_size and plaintext_mac. DECRYPT_FAILED: no key
 * unwraps it; SIZE_MISMATCH / HASH_MISMATCH: these are not the bytes that were signed.
 */
export async function checkDecryptedPayload(
  encryption: ManifestEncryption,
  patchId: string,
  key: DecryptionKey | readonly DecryptionKey[],
  plaintext: AsyncIterable<Uint8Array>,
): Promise<void> {
  const keys = providersOf(key);
  const dataKey = await unwrapWithAny(encryption, patchId, keys, undefined);
  try {
    const check = new PlaintextCheck(encryption, patchId, dataKey);
    for await (const piece of plaintext) check.update(piece);
    check.finish();
  } finally {
    dataKey.fill(0);
  }
}

/**
 * Whether `key` can decrypt the payload, without decrypting it: the data key is unwrapped and
 * zeroed at once (what a dry run asks). DECRYPT_FAILED when no key unwraps any entry.
 */
export async function checkUnwraps(encryption: ManifestEncryption, patchId: string, key: DecryptionKey | readonly DecryptionKey[]): Promise<void> {
  (await unwrapWithAny(encryption, patchId, providersOf(key), undefined)).fill(0);
}

/** The signed plaintext_size and plaintext_mac of a plaintext, taken as it streams. */
class PlaintextCheck {
  readonly #encryption: ManifestEncryption;
  readonly #patchId: string;
  readonly #mac: Hmac;
  #size = 0;

  constructor(encryption: ManifestEncryption, patchId: string, dataKey: Uint8Array) {
    this.#encryption = encryption;
    this.#patchId = patchId;
    this.#mac = plaintextMac(dataKey, patchId);
  }

  update(piece: Uint8Array): void {
    this.#size += piece.length;
    if (this.#size > this.#encryption.plaintext_size) {
      throw new HotPatchError('SIZE_MISMATCH', `the decrypted payload of ${this.#patchId} is longer than plaintext_size ${this.#encryption.plaintext_size}`);
    }
    this.#mac.update(piece);
  }

  finish(): void {
    const { plaintext_size: expectedSize, plaintext_mac: signedMac } = this.#encryption;
    if (this.#size !== expectedSize) {
      throw new HotPatchError('SIZE_MISMATCH', `the decrypted payload of ${this.#patchId} is ${this.#size} bytes, plaintext_size says ${expectedSize}`);
    }
    const expected = Buffer.from(signedMac.slice('hmac-sha256:'.length), 'hex');
    if (!timingSafeEqual(this.#mac.digest(), expected)) {
      throw new HotPatchError('HASH_MISMATCH', `the decrypted payload of ${this.#patchId} does not match its signed plaintext_mac`);
    }
  }
}

/**
 * The plaintext's MAC: HMAC-SHA256 under a key derived (HKDF-SHA256) from the data key and the
 * patch id. Signed in the manifest as a hash would be, but only a recipient can compute it: a
 * public hash of the plaintext would let anyone confirm a guess of the fix.
 */
function plaintextMac(dataKey: Uint8Array, patchId: string): Hmac {
  const key = Buffer.from(hkdfSync('sha256', dataKey, Buffer.alloc(0), Buffer.from(`xps-hotpatch plaintext mac v1\0${patchId}`, 'utf8'), 32));
  return createHmac('sha256', key);
}

/** Whether decrypting `encryption` could use `key` (an entry of its algorithm, or the one named `kid`). */
export function recipientEntries(encryption: ManifestEncryption, key: UnwrapKeyProvider, kid?: string): ManifestRecipient[] {
  return encryption.recipients.filter((r) => (kid === undefined ? r.alg === key.recipientKey.alg : r.kid === kid));
}

/** One key or several, each as an unwrap provider. */
function providersOf(key: DecryptionKey | readonly DecryptionKey[]): UnwrapKeyProvider[] {
  return (Array.isArray(key) ? (key as readonly DecryptionKey[]) : [key as DecryptionKey]).map(unwrapProviderOf);
}

/**
 * The data key, from the first of `keys` that unwraps an entry. When none does, a key that could
 * not be asked (a token or KMS: UNAUTHENTICATED, IO) is what is reported, before any "does not
 * unwrap": the operator has a token or a KMS to fix, not a wrong key.
 */
async function unwrapWithAny(
  encryption: ManifestEncryption,
  patchId: string,
  keys: readonly UnwrapKeyProvider[],
  kid: string | undefined,
): Promise<Uint8Array> {
  if (keys.length === 0) throw new HotPatchError('DECRYPT_FAILED', `${patchId} is encrypted and no decryption key is configured`);
  const failures: unknown[] = [];
  for (const key of keys) {
    try {
      return await unwrapAny(encryption, patchId, key, kid);
    } catch (error) {
      failures.push(error);
    }
  }
  throw failures.find((e) => !isDecryptFailure(e)) ?? failures[failures.length - 1];
}

function isDecryptFailure(error: unknown): boolean {
  return error instanceof HotPatchError && error.code === 'DECRYPT_FAILED';
}

async function unwrapAny(encryption: ManifestEncryption, patchId: string, key: UnwrapKeyProvider, kid: string | undefined): Promise<Uint8Array> {
  const entries = recipientEntries(encryption, key, kid);
  if (entries.length === 0) {
    throw new HotPatchError(
      'DECRYPT_FAILED',
      kid === undefined
        ? `${patchId} is encrypted to no ${key.recipientKey.alg} key (its recipients: ${encryption.recipients.map((r) => r.kid).join(', ')})`
        : `${patchId} is not encrypted to ${kid} (its recipients: ${encryption.recipients.map((r) => r.kid).join(', ')})`,
    );
  }
  let last: unknown;
  for (const entry of entries) {
    try {
      return await unwrapDataKey(wrappedKeyOf(entry), key, patchId);
    } catch (error) {
      // A key that cannot be asked (a token or KMS unreachable, a refused PIN) is not asked again
      // for every other entry of the payload.
      if (!isDecryptFailure(error)) throw error;
      last = error;
    }
  }
  throw last;
}

/** The manifest names each algorithm's encapsulation after what it is. */
const ENCAPSULATION_FIELD = { 'x25519-hkdf-sha256': 'epk', 'rsa-oaep-sha256': 'rsa_ct', 'ml-kem-768': 'kem_ct' } as const;

function manifestRecipient(w: WrappedKey): ManifestRecipient {
  return { kid: w.kid, alg: w.alg, wrapped: encodeBase64(w.wrapped), [ENCAPSULATION_FIELD[w.alg]]: encodeBase64(w.encapsulation) };
}

function wrappedKeyOf(r: ManifestRecipient): WrappedKey {
  const field = ENCAPSULATION_FIELD[r.alg];
  return { kid: r.kid, alg: r.alg, wrapped: decodeBase64(r.wrapped, 'recipient wrapped'), encapsulation: decodeBase64(r[field], `recipient ${field}`) };
}

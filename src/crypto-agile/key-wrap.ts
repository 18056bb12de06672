import {
  constants,
  createCipheriv,
  createDecipheriv,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  privateDecrypt,
  publicEncrypt,
  randomBytes,
  type KeyObject,
} from 'node:crypto';
import { ml_kem768 } from '@noble/post-quantum/ml-kem.js';
import { HotPatchError } from '../core/index.js';
import { RecipientPrivateKey, type RecipientAlgorithm, type RecipientPublicKey } from './recipient-keys.js';

/**
 * Wrapping a payload's 32-byte data key to one recipient, as a key encapsulation (KEM) and a
 * data encapsulation: the recipient's algorithm makes a 32-byte secret and its encapsulation —
 * X25519: an ephemeral key agreement (the encapsulation is the ephemeral public key, `epk`);
 * RSA: a random secret under RSA-OAEP-SHA256 without a label (`rsa_ct`); ML-KEM-768: its
 * encapsulation (`kem_ct`) — then HKDF-SHA256 of the secret, bound to the patch and the
 * recipient's key id, gives the key that seals the data key with AES-256-GCM (`wrapped`). So
 * the only private-key operation is one every HSM and KMS offers as is (an RSA-OAEP-SHA256
 * decryption, an X25519 agreement, a decapsulation): `UnwrapKeyProvider.unwrap`. A wrapped key
 * moved to another patch or recipient entry does not open.
 */
export interface WrappedKey {
  kid: string;
  alg: RecipientAlgorithm;
  /** The data key sealed with AES-256-GCM under the derived key: 32 bytes and the 16-byte tag. */
  wrapped: Uint8Array;
  /** What the recipient's private key turns back into the secret (X25519: 32 bytes; RSA: the modulus's size; ML-KEM-768: 1088 bytes). */
  encapsulation: Uint8Array;
}

/**
 * Where a recipient key lives (README "Keys in hardware and KMS"): a file, a PKCS#11 token, a
 * remote KMS. `unwrap` is the key's private operation on a wrapped key's encapsulation, returning
 * the 32-byte secret — RSA-OAEP-SHA256 decryption (MGF1-SHA256, no label), X25519 agreement
 * with the 32-byte ephemeral key, ML-KEM-768 decapsulation; the rest (HKDF, the binding to the
 * patch, AES-GCM) runs here. An adapter for another KMS is these three members.
 */
export interface UnwrapKeyProvider {
  /** How it is named in messages; never a secret. */
  readonly name: string;
  /** The recipient key's public half: its algorithm is the key's own. */
  readonly recipientKey: RecipientPublicKey;
  unwrap(encapsulation: Uint8Array): Promise<Uint8Array>;
}

export const DATA_KEY_LENGTH = 32;
/** The secret every recipient algorithm gives: X25519 and ML-KEM-768 make 32 bytes; RSA carries 32 random ones. */
export const SECRET_LENGTH = 32;
const ZERO_NONCE = new Uint8Array(12); // each key-encryption key encrypts exactly one message

function bindingOf(patchId: string, kid: string): Buffer {
  return Buffer.from(`xps-hotpatch data key v2\0${patchId}\0${kid}`, 'utf8');
}

/** HKDF's salt: the encapsulation, and for X25519 the recipient's own public key too (both sides of the agreement). */
function saltOf(alg: RecipientAlgorithm, encapsulation: Uint8Array, recipient: RecipientPublicKey): Buffer {
  if (alg !== 'x25519-hkdf-sha256') return Buffer.from(encapsulation);
  const m = recipient.material;
  if (m.kind !== 'node') throw new HotPatchError('INVALID', 'an X25519 recipient key has node key material');
  return Buffer.concat([encapsulation, rawX25519(m.key)]);
}

/** Wraps `dataKey` to `recipient` under `kid`, for the patch `patchId`. */
export function wrapDataKey(dataKey: Uint8Array, recipient: RecipientPublicKey, kid: string, patchId: string): WrappedKey {
  if (dataKey.length !== DATA_KEY_LENGTH) throw new HotPatchError('INVALID', `a data key is ${DATA_KEY_LENGTH} bytes`);
  const m = recipient.material;
  let secret: Uint8Array;
  let encapsulation: Uint8Array;
  if (m.kind === 'ml-kem-768') {
    const { cipherText, sharedSecret } = ml_kem768.encapsulate(m.publicKey);
    secret = sharedSecret;
    encapsulation = cipherText;
  } else if (recipient.alg === 'rsa-oaep-sha256') {
    secret = new Uint8Array(randomBytes(SECRET_LENGTH));
    encapsulation = new Uint8Array(publicEncrypt({ key: m.key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, secret));
  } else {
    const ephemeral = generateKeyPairSync('x25519');
    encapsulation = new Uint8Array(rawX25519(ephemeral.publicKey));
    secret = new Uint8Array(diffieHellman({ privateKey: ephemeral.privateKey, publicKey: m.key }));
  }
  const info = bindingOf(patchId, kid);
  const kek = Buffer.from(hkdfSync('sha256', secret, saltOf(recipient.alg, encapsulation, recipient), info, 32));
  secret.fill(0);
  const wrapped = seal(kek, dataKey, info);
  kek.fill(0);
  return { kid, alg: recipient.alg, wrapped, encapsulation };
}

/**
 * The data key of `entry`, unwrapped by `key` for the patch `patchId`. DECRYPT_FAILED when it
 * does not unwrap: another recipient's key, an entry of another patch or recipient, a tampered
 * entry. A provider's own HotPatchError (UNAUTHENTICATED, IO: a token or KMS unreachable) is kept.
 */
export async function unwrapDataKey(entry: WrappedKey, key: UnwrapKeyProvider, patchId: string): Promise<Uint8Array> {
  const alg = key.recipientKey.alg;
  if (entry.alg !== alg) throw new HotPatchError('DECRYPT_FAILED', `the data key of ${entry.kid} is wrapped with ${entry.alg}, the key given is ${alg}`);
  const refused = (cause?: unknown): HotPatchError =>
    new HotPatchError(
      'DECRYPT_FAILED',
      `the data key wrapped to ${entry.kid} does not unwrap with this key (${key.name}) for ${patchId} (another recipient's key, or an entry of another patch)`,
      cause === undefined ? {} : { cause },
    );
  let secret: Uint8Array;
  try {
    secret = await key.unwrap(entry.encapsulation);
  } catch (error) {
    throw error instanceof HotPatchError ? error : refused(error);
  }
  // All zeros: an X25519 agreement with a small-order point, or a provider answering nothing.
  if (!(secret instanceof Uint8Array) || secret.length !== SECRET_LENGTH || secret.every((b) => b === 0)) throw refused();
  const info = bindingOf(patchId, entry.kid);
  let dataKey: Uint8Array;
  const kek = Buffer.from(hkdfSync('sha256', secret, saltOf(alg, entry.encapsulation, key.recipientKey), info, 32));
  secret.fill(0);
  try {
    dataKey = open(kek, entry.wrapped, info);
  } catch (error) {
    throw refused(error);
  } finally {
    kek.fill(0);
  }
  if (dataKey.length !== DATA_KEY_LENGTH) throw refused();
  return dataKey;
}

/** A recipient private key held in this process, as a provider. */
export function unwrapProviderOf(key: RecipientPrivateKey | UnwrapKeyProvider): UnwrapKeyProvider {
  if (key instanceof RecipientPrivateKey)
    return { name: `file key ${key.publicKey.fingerprint.slice(0, 16)}`, recipientKey: key.publicKey, unwrap: (e) => decapsulate(key, e) };
  if (typeof key?.unwrap !== 'function' || typeof key.name !== 'string' || key.recipientKey === undefined) {
    throw new HotPatchError('INVALID', 'a decryption key must be a RecipientPrivateKey or an UnwrapKeyProvider {name, recipientKey, unwrap}');
  }
  return key;
}

/** The private operation of `key` on an encapsulation (what an HSM or KMS does for its keys). */
function decapsulate(key: RecipientPrivateKey, encapsulation: Uint8Array): Promise<Uint8Array> {
  const m = key.material;
  try {
    if (m.kind === 'ml-kem-768') {
      if (encapsulation.length !== 1088) throw new Error(`an ML-KEM-768 encapsulation is 1088 bytes, got ${encapsulation.length}`);
      return Promise.resolve(ml_kem768.decapsulate(encapsulation, m.secretKey));
    }
    if (key.alg === 'rsa-oaep-sha256') {
      const secret = privateDecrypt({ key: m.key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, encapsulation);
      const copy = new Uint8Array(secret);
      secret.fill(0);
      return Promise.resolve(copy);
    }
    if (encapsulation.length !== 32) throw new Error(`an X25519 ephemeral key is 32 bytes, got ${encapsulation.length}`);
    const epk = createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: Buffer.from(encapsulation).toString('base64url') }, format: 'jwk' });
    return Promise.resolve(new Uint8Array(diffieHellman({ privateKey: m.key, publicKey: epk })));
  } catch (cause) {
    // A plain error: unwrapDataKey turns it into its one DECRYPT_FAILED message.
    return Promise.reject(cause instanceof Error ? cause : new Error(String(cause)));
  }
}

function rawX25519(key: KeyObject): Buffer {
  return Buffer.from(key.export({ format: 'jwk' }).x!, 'base64url');
}

function seal(kek: Buffer, plaintext: Uint8Array, aad: Buffer): Uint8Array {
  const cipher = createCipheriv('aes-256-gcm', kek, ZERO_NONCE);
  cipher.setAAD(aad);
  return new Uint8Array(Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]));
}

function open(kek: Buffer, sealed: Uint8Array, aad: Buffer): Uint8Array {
  if (sealed.length < 16) throw new Error('too short');
  const decipher = createDecipheriv('aes-256-gcm', kek, ZERO_NONCE);
  decipher.setAAD(aad);
  decipher.setAuthTag(sealed.subarray(sealed.length - 16));
  // Into a buffer of its own, the pieces zeroed: Buffer.concat would leave the key in Node's shared pool.
  const body = decipher.update(sealed.subarray(0, sealed.length - 16));
  const tail = decipher.final();
  const out = new Uint8Array(body.length + tail.length);
  out.set(body);
  out.set(tail, body.length);
  body.fill(0);
  tail.fill(0);
  return out;
}

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
  type KeyObject,
} from 'node:crypto';
import { ml_kem768 } from '@noble/post-quantum/ml-kem.js';
import { HotPatchError } from '../core/index.js';
import type { RecipientAlgorithm, RecipientPrivateKey, RecipientPublicKey } from './recipient-keys.js';

/**
 * Wrapping a payload's 32-byte data key to one recipient, bound to the patch and the recipient's
 * key id (the `info` below): a wrapped key moved to another patch or another recipient entry
 * does not unwrap. X25519: an ephemeral key agreement, HKDF-SHA256 to a key-encryption key,
 * AES-256-GCM of the data key. RSA: OAEP with SHA-256, the binding as the OAEP label. ML-KEM-768:
 * encapsulation, HKDF-SHA256 of the shared secret, AES-256-GCM as for X25519.
 */
export interface WrappedKey {
  kid: string;
  alg: RecipientAlgorithm;
  /** The data key, encrypted (AES-256-GCM: 32 bytes and the 16-byte tag; RSA: the OAEP block). */
  wrapped: Uint8Array;
  /** X25519: the ephemeral public key (32 bytes). */
  epk?: Uint8Array;
  /** ML-KEM-768: the encapsulation (1088 bytes). */
  kemCiphertext?: Uint8Array;
}

export const DATA_KEY_LENGTH = 32;
const ZERO_NONCE = new Uint8Array(12); // each key-encryption key encrypts exactly one message

function bindingOf(patchId: string, kid: string): Buffer {
  return Buffer.from(`xps-hotpatch data key v1\0${patchId}\0${kid}`, 'utf8');
}

/** Wraps `dataKey` to `recipient` under `kid`, for the patch `patchId`. */
export function wrapDataKey(dataKey: Uint8Array, recipient: RecipientPublicKey, kid: string, patchId: string): WrappedKey {
  if (dataKey.length !== DATA_KEY_LENGTH) throw new HotPatchError('INVALID', `a data key is ${DATA_KEY_LENGTH} bytes`);
  const info = bindingOf(patchId, kid);
  const m = recipient.material;
  if (m.kind === 'ml-kem-768') {
    const { cipherText, sharedSecret } = ml_kem768.encapsulate(m.publicKey);
    const kek = Buffer.from(hkdfSync('sha256', sharedSecret, cipherText, info, 32));
    return { kid, alg: 'ml-kem-768', wrapped: seal(kek, dataKey, info), kemCiphertext: cipherText };
  }
  if (recipient.alg === 'rsa-oaep-sha256') {
    return {
      kid,
      alg: recipient.alg,
      wrapped: new Uint8Array(publicEncrypt({ key: m.key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256', oaepLabel: info }, dataKey)),
    };
  }
  const ephemeral = generateKeyPairSync('x25519');
  const epk = rawX25519(ephemeral.publicKey);
  const shared = diffieHellman({ privateKey: ephemeral.privateKey, publicKey: m.key });
  const kek = Buffer.from(hkdfSync('sha256', shared, Buffer.concat([epk, rawX25519(m.key)]), info, 32));
  return { kid, alg: 'x25519-hkdf-sha256', wrapped: seal(kek, dataKey, info), epk };
}

/**
 * The data key of `entry`, unwrapped with `key` for the patch `patchId`. DECRYPT_FAILED when it
 * does not unwrap: another recipient's key, an entry of another patch or recipient, a tampered entry.
 */
export function unwrapDataKey(entry: WrappedKey, key: RecipientPrivateKey, patchId: string): Uint8Array {
  if (entry.alg !== key.alg)
    throw new HotPatchError('DECRYPT_FAILED', `the data key of ${entry.kid} is wrapped with ${entry.alg}, the key given is ${key.alg}`);
  const info = bindingOf(patchId, entry.kid);
  const refused = (cause?: unknown): HotPatchError =>
    new HotPatchError(
      'DECRYPT_FAILED',
      `the data key wrapped to ${entry.kid} does not unwrap with this key for ${patchId} (another recipient's key, or an entry of another patch)`,
      cause === undefined ? {} : { cause },
    );
  const m = key.material;
  let dataKey: Uint8Array;
  try {
    if (m.kind === 'ml-kem-768') {
      if (entry.kemCiphertext === undefined) throw refused();
      const shared = ml_kem768.decapsulate(entry.kemCiphertext, m.secretKey);
      dataKey = open(Buffer.from(hkdfSync('sha256', shared, entry.kemCiphertext, info, 32)), entry.wrapped, info);
    } else if (key.alg === 'rsa-oaep-sha256') {
      dataKey = new Uint8Array(privateDecrypt({ key: m.key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256', oaepLabel: info }, entry.wrapped));
    } else {
      if (entry.epk === undefined || entry.epk.length !== 32) throw refused();
      const epk = createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: Buffer.from(entry.epk).toString('base64url') }, format: 'jwk' });
      const shared = diffieHellman({ privateKey: m.key, publicKey: epk });
      const own = rawX25519(createPublicKey(m.key));
      dataKey = open(Buffer.from(hkdfSync('sha256', shared, Buffer.concat([entry.epk, own]), info, 32)), entry.wrapped, info);
    }
  } catch (error) {
    throw error instanceof HotPatchError ? error : refused(error);
  }
  if (dataKey.length !== DATA_KEY_LENGTH) throw refused();
  return dataKey;
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
  return new Uint8Array(Buffer.concat([decipher.update(sealed.subarray(0, sealed.length - 16)), decipher.final()]));
}

import { HotPatchError } from './errors.js';
import { decodeBase64 } from './base64.js';
import { asObject, describe, integerInRange, oneOf, rejectUnknownFields } from './json-shape.js';

/**
 * A manifest's `encryption` (README "Encrypted payloads"): how the payload file is encrypted
 * and to whom its data key is wrapped. `payload_hash` and `payload_size` then describe the
 * ciphertext (verified before anything is decrypted); `plaintext_mac` and `plaintext_size` the
 * bytes decryption must give back. The MAC is keyed by the data key: unlike a hash of the
 * plaintext, it lets no one without a recipient key confirm a guess of the patch. Signed with the rest of the manifest: a wrapped key swapped
 * in or out is a manifest whose signatures no longer verify.
 */
export interface ManifestEncryption {
  cipher: 'aes-256-gcm-chunked-v1';
  chunk_size: number;
  /** base64 of 4 bytes. */
  nonce_prefix: string;
  plaintext_size: number;
  /** `hmac-sha256:<hex>`: HMAC-SHA256 of the plaintext under a key derived from the data key. */
  plaintext_mac: string;
  recipients: ManifestRecipient[];
}

export interface ManifestRecipient {
  kid: string;
  alg: 'x25519-hkdf-sha256' | 'rsa-oaep-sha256' | 'ml-kem-768';
  /** base64 of the data key sealed under the key derived from the recipient's secret (48 bytes). */
  wrapped: string;
  /** X25519: base64 of the ephemeral public key (32 bytes). */
  epk?: string;
  /** RSA-OAEP-SHA256: base64 of the encrypted 32-byte secret (the modulus's size: 256 to 1024 bytes). */
  rsa_ct?: string;
  /** ML-KEM-768: base64 of the encapsulation (1088 bytes). */
  kem_ct?: string;
}

const FIELDS = new Set(['cipher', 'chunk_size', 'nonce_prefix', 'plaintext_size', 'plaintext_mac', 'recipients']);
const RECIPIENT_FIELDS = new Set(['kid', 'alg', 'wrapped', 'epk', 'rsa_ct', 'kem_ct']);
const ALGS = ['x25519-hkdf-sha256', 'rsa-oaep-sha256', 'ml-kem-768'] as const;
/** Each algorithm's encapsulation field and its size in bytes (RSA: 2048- to 8192-bit moduli). */
const ENCAPSULATIONS = [
  ['epk', 'x25519-hkdf-sha256', 32, 32],
  ['rsa_ct', 'rsa-oaep-sha256', 256, 1024],
  ['kem_ct', 'ml-kem-768', 1088, 1088],
] as const;
const KID = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/;
const MAX_RECIPIENTS = 64;

/** The ciphertext size of `plaintextSize` bytes in chunks of `chunkSize` (each chunk adds a 16-byte tag; an empty payload is one chunk). */
export function encryptedPayloadSize(plaintextSize: number, chunkSize: number): number {
  return plaintextSize + 16 * Math.max(1, Math.ceil(plaintextSize / chunkSize));
}

/** Checks an `encryption` value against the manifest's `payload_size` (the ciphertext's). */
export function parseManifestEncryption(value: unknown, payloadSize: number): ManifestEncryption {
  const where = 'manifest encryption';
  const obj = asObject(value, where);
  rejectUnknownFields(obj, FIELDS, where);
  const cipher = oneOf(obj.cipher, ['aes-256-gcm-chunked-v1'] as const, `${where}.cipher`);
  const chunkSize = integerInRange(obj.chunk_size, `${where}.chunk_size`, 1024, 16 * 1024 * 1024);
  base64Of(obj.nonce_prefix, `${where}.nonce_prefix`, 4, 4);
  const plaintextSize = integerInRange(obj.plaintext_size, `${where}.plaintext_size`, 0);
  if (encryptedPayloadSize(plaintextSize, chunkSize) !== payloadSize) {
    throw new HotPatchError(
      'INVALID',
      `${where}: ${plaintextSize} plaintext bytes in chunks of ${chunkSize} make ${encryptedPayloadSize(plaintextSize, chunkSize)} bytes, payload_size says ${payloadSize}`,
    );
  }
  if (typeof obj.plaintext_mac !== 'string' || !/^hmac-sha256:[0-9a-f]{64}$/.test(obj.plaintext_mac)) {
    throw new HotPatchError('INVALID', `${where}.plaintext_mac must be hmac-sha256:<64 lowercase hex>, got ${describe(obj.plaintext_mac)}`);
  }
  if (!Array.isArray(obj.recipients) || obj.recipients.length === 0 || obj.recipients.length > MAX_RECIPIENTS) {
    throw new HotPatchError('INVALID', `${where}.recipients must list 1 to ${MAX_RECIPIENTS} recipients`);
  }
  const kids = new Set<string>();
  const recipients = obj.recipients.map((raw, i): ManifestRecipient => {
    const field = `${where}.recipients[${i}]`;
    const r = asObject(raw, field);
    rejectUnknownFields(r, RECIPIENT_FIELDS, field);
    if (typeof r.kid !== 'string' || !KID.test(r.kid))
      throw new HotPatchError('INVALID', `${field}.kid must be 1-128 of [A-Za-z0-9._:@-], got ${describe(r.kid)}`);
    if (kids.has(r.kid)) throw new HotPatchError('INVALID', `${field}.kid ${r.kid} is listed twice`);
    kids.add(r.kid);
    const alg = oneOf(r.alg, ALGS, `${field}.alg`);
    // Every size is pinned: 32 key bytes and a tag wrapped; each algorithm's encapsulation its own size.
    const out: ManifestRecipient = { kid: r.kid, alg, wrapped: base64Text(r.wrapped, `${field}.wrapped`, 48, 48) };
    for (const [name, owner, min, max] of ENCAPSULATIONS) {
      if (alg === owner) out[name] = base64Text(r[name], `${field}.${name}`, min, max);
      else if (r[name] !== undefined) throw new HotPatchError('INVALID', `${field}.${name} belongs to ${owner} only`);
    }
    return out;
  });
  return {
    cipher,
    chunk_size: chunkSize,
    nonce_prefix: obj.nonce_prefix as string,
    plaintext_size: plaintextSize,
    plaintext_mac: obj.plaintext_mac,
    recipients,
  };
}

function base64Of(value: unknown, field: string, min: number, max: number): Uint8Array {
  const bytes = decodeBase64(value, field);
  if (bytes.length < min || bytes.length > max)
    throw new HotPatchError('INVALID', `${field} must decode to ${min === max ? min : `${min} to ${max}`} bytes, got ${bytes.length}`);
  return bytes;
}

function base64Text(value: unknown, field: string, min: number, max: number): string {
  base64Of(value, field, min, max);
  return value as string;
}

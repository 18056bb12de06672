import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { ml_kem768 } from '@noble/post-quantum/ml-kem.js';
import { HotPatchError } from '../core/index.js';
import {
  DerError,
  bytesEqual,
  decodeMlKem768Pkcs8,
  decodeMlKem768Spki,
  encodeMlKem768Pkcs8,
  encodeMlKem768Spki,
  OID_ML_KEM_768,
  parseSpki,
  pkcs8AlgorithmOid,
} from './der.js';
import { decodeKeyText, encodePem } from './pem.js';

/**
 * The keys a payload's data key is wrapped to (README "Encrypted payloads"): X25519 (ECDH, then
 * HKDF), RSA-OAEP-SHA256, and ML-KEM-768 (FIPS 203, from @noble/post-quantum) as the
 * post-quantum option. The algorithm is the key's own, read from its SPKI / PKCS#8, never
 * named by a manifest. ML-KEM-768 keys are coded by hand (Node 20 has no ML-KEM key objects):
 * SPKI with id-alg-ml-kem-768, PKCS#8 in the 64-byte seed form.
 */
export const RECIPIENT_ALGORITHMS = ['x25519-hkdf-sha256', 'rsa-oaep-sha256', 'ml-kem-768'] as const;
export type RecipientAlgorithm = (typeof RECIPIENT_ALGORITHMS)[number];

/** Smallest RSA key a data key is wrapped to. */
const MIN_RSA_BITS = 2048;
/** Largest: its `rsa_ct` is the modulus's size, and a manifest takes up to 1024 bytes of it. */
const MAX_RSA_BITS = 8192;

export type RecipientPublicMaterial = { kind: 'node'; key: KeyObject } | { kind: 'ml-kem-768'; publicKey: Uint8Array };
export type RecipientPrivateMaterial = { kind: 'node'; key: KeyObject } | { kind: 'ml-kem-768'; seed: Uint8Array; secretKey: Uint8Array };

/** A key a payload can be encrypted to. */
export class RecipientPublicKey {
  readonly alg: RecipientAlgorithm;
  /** SHA-256 of the SPKI DER, hex: a recipient's default key id. */
  readonly fingerprint: string;
  /** @internal the key material (for key-wrap.ts). */
  readonly material: RecipientPublicMaterial;
  readonly #spki: Uint8Array;

  constructor(alg: RecipientAlgorithm, material: RecipientPublicMaterial, spki: Uint8Array) {
    this.alg = alg;
    this.material = material;
    this.#spki = spki;
    this.fingerprint = createHash('sha256').update(spki).digest('hex');
    Object.freeze(this);
  }

  toPem(): string {
    return encodePem('PUBLIC KEY', this.#spki);
  }
}

/** A key that unwraps a payload's data key. Never printed: `toString` names only its public half. */
export class RecipientPrivateKey {
  readonly alg: RecipientAlgorithm;
  readonly publicKey: RecipientPublicKey;
  /** @internal the key material (for key-wrap.ts). */
  declare readonly material: RecipientPrivateMaterial;

  constructor(alg: RecipientAlgorithm, material: RecipientPrivateMaterial, publicKey: RecipientPublicKey) {
    this.alg = alg;
    // Not enumerable: no generic walk over the object (a logger's serialiser) meets the secret.
    Object.defineProperty(this, 'material', { value: material, enumerable: false });
    this.publicKey = publicKey;
    Object.freeze(this);
  }

  toPem(): string {
    const m = this.material;
    if (m.kind === 'ml-kem-768') return encodePem('PRIVATE KEY', encodeMlKem768Pkcs8(m.seed));
    return m.key.export({ type: 'pkcs8', format: 'pem' }) as string;
  }

  toString(): string {
    return `RecipientPrivateKey(${this.alg}, public ${this.publicKey.fingerprint})`;
  }

  /** console.log, util.inspect and JSON.stringify show the public half only, never the key material. */
  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return this.toString();
  }

  toJSON(): { alg: RecipientAlgorithm; public: string } {
    return { alg: this.alg, public: this.publicKey.fingerprint };
  }
}

/** A fresh recipient key pair (RSA: 3072 bits). */
export function generateRecipientKey(alg: RecipientAlgorithm): { privateKey: RecipientPrivateKey; publicKey: RecipientPublicKey } {
  let privateKey: RecipientPrivateKey;
  if (alg === 'ml-kem-768') privateKey = mlKemPrivate(new Uint8Array(randomBytes(64)));
  else if (alg === 'x25519-hkdf-sha256') privateKey = nodePrivate(generateKeyPairSync('x25519').privateKey);
  else if (alg === 'rsa-oaep-sha256') privateKey = nodePrivate(generateKeyPairSync('rsa', { modulusLength: 3072 }).privateKey);
  else throw new HotPatchError('ALGORITHM_DISALLOWED', `${String(alg)} is not a recipient algorithm (${RECIPIENT_ALGORITHMS.join(', ')})`);
  return { privateKey, publicKey: privateKey.publicKey };
}

/** A recipient public key from its PEM (SPKI "PUBLIC KEY"): X25519, RSA or ML-KEM-768. */
export function importRecipientPublicKey(text: string): RecipientPublicKey {
  const { label, der } = decodeKeyText(text, 'recipient public key');
  if (label !== undefined && label !== 'PUBLIC KEY') throw new HotPatchError('INVALID', `a recipient public key is a "PUBLIC KEY" PEM block, got "${label}"`);
  let oid: Uint8Array;
  try {
    oid = parseSpki(der).oid;
  } catch (cause) {
    throw new HotPatchError('INVALID', 'the recipient public key is not a SubjectPublicKeyInfo', { cause });
  }
  if (bytesEqual(oid, OID_ML_KEM_768)) {
    try {
      return new RecipientPublicKey('ml-kem-768', { kind: 'ml-kem-768', publicKey: decodeMlKem768Spki(der).slice() }, der);
    } catch (cause) {
      throw new HotPatchError('INVALID', `the ML-KEM-768 public key is malformed: ${(cause as Error).message}`, { cause });
    }
  }
  let key: KeyObject;
  try {
    key = createPublicKey({ key: Buffer.from(der), format: 'der', type: 'spki' });
  } catch (cause) {
    throw new HotPatchError('INVALID', 'the recipient public key cannot be read', { cause });
  }
  return nodePublic(key);
}

/** A recipient private key from its PEM (PKCS#8 "PRIVATE KEY"). */
export function importRecipientPrivateKey(text: string): RecipientPrivateKey {
  const { label, der } = decodeKeyText(text, 'recipient private key');
  if (label !== 'PRIVATE KEY')
    throw new HotPatchError('INVALID', `a recipient private key is a PKCS#8 "PRIVATE KEY" PEM block${label === undefined ? '' : `, got "${label}"`}`);
  const oid = pkcs8AlgorithmOid(der);
  if (oid !== undefined && bytesEqual(oid, OID_ML_KEM_768)) {
    try {
      return mlKemPrivate(decodeMlKem768Pkcs8(der).slice());
    } catch (cause) {
      throw new HotPatchError('INVALID', `the ML-KEM-768 private key is malformed: ${cause instanceof DerError ? cause.message : 'unreadable'}`, { cause });
    }
  }
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: Buffer.from(der), format: 'der', type: 'pkcs8' });
  } catch (cause) {
    throw new HotPatchError('INVALID', 'the recipient private key cannot be read', { cause });
  }
  return nodePrivate(key);
}

function nodeAlgorithm(key: KeyObject): RecipientAlgorithm {
  if (key.asymmetricKeyType === 'x25519') return 'x25519-hkdf-sha256';
  if (key.asymmetricKeyType === 'rsa') {
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits < MIN_RSA_BITS || bits > MAX_RSA_BITS) {
      throw new HotPatchError('ALGORITHM_DISALLOWED', `an RSA recipient key of ${bits} bits is refused (${MIN_RSA_BITS} to ${MAX_RSA_BITS})`);
    }
    return 'rsa-oaep-sha256';
  }
  throw new HotPatchError('ALGORITHM_DISALLOWED', `a ${String(key.asymmetricKeyType)} key cannot receive a payload (X25519, RSA or ML-KEM-768)`);
}

function nodePublic(key: KeyObject): RecipientPublicKey {
  const alg = nodeAlgorithm(key);
  return new RecipientPublicKey(alg, { kind: 'node', key }, new Uint8Array(key.export({ type: 'spki', format: 'der' })));
}

function nodePrivate(key: KeyObject): RecipientPrivateKey {
  return new RecipientPrivateKey(nodeAlgorithm(key), { kind: 'node', key }, nodePublic(createPublicKey(key)));
}

function mlKemPrivate(seed: Uint8Array): RecipientPrivateKey {
  const { publicKey, secretKey } = ml_kem768.keygen(seed);
  const pub = new RecipientPublicKey('ml-kem-768', { kind: 'ml-kem-768', publicKey }, encodeMlKem768Spki(publicKey));
  return new RecipientPrivateKey('ml-kem-768', { kind: 'ml-kem-768', seed, secretKey }, pub);
}

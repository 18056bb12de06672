import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { ml_dsa65 } from '@noble/post-quantum/ml-dsa.js';
import { HotPatchError, asObject, describe, rejectUnknownFields } from '../core/index.js';
import type { SignatureAlgorithm } from './algorithms.js';
import { assertString, signatureAlgorithmOf } from './assert.js';
import {
  DerError,
  OID_ML_DSA_65,
  bytesEqual,
  decodeMlDsa65Pkcs8,
  decodeMlDsa65Spki,
  encodeMlDsa65Pkcs8,
  encodeMlDsa65Spki,
  parseSpki,
  pkcs8AlgorithmOid,
  rsaPssSpkiToRsaEncryption,
} from './der.js';
import { decodeKeyText, encodePem } from './pem.js';

/** Below this nobody should be signing patches; generation refuses it (policy decides for imports). */
export const MIN_GENERATED_RSA_BITS = 2048;
/** Above this an RSA verification costs enough to be a denial-of-service lever. */
export const MAX_RSA_BITS = 16384;
export const DEFAULT_RSA_BITS = 3072;
/** RSA-PSS salt length used for signing and verifying (equal to the SHA-256 output). */
export const RSA_PSS_SALT_LENGTH = 32;

/** Key material as the signature providers use it; never leaves this module's internals. */
export type PublicMaterial = { readonly kind: 'node'; readonly key: KeyObject } | { readonly kind: 'ml-dsa-65'; readonly publicKey: Uint8Array };
export type PrivateMaterial =
  { readonly kind: 'node'; readonly key: KeyObject } | { readonly kind: 'ml-dsa-65'; readonly seed: Uint8Array; readonly secretKey: Uint8Array };

// Only this module may construct keys: a PublicKey is proof that its bytes were parsed,
// checked against the declared algorithm and canonicalised.
const CONSTRUCT = Symbol('crypto-agile key constructor');

let readPublicMaterial: (key: PublicKey) => PublicMaterial;
let readPrivateMaterial: (key: PrivateKey) => PrivateMaterial;

export class PublicKey {
  readonly alg: SignatureAlgorithm;
  readonly fingerprint: string;
  readonly bits: number | undefined;
  readonly #spki: Uint8Array;
  readonly #material: PublicMaterial;

  /** @internal use importPublicKey, generateKeyPair or PrivateKey.publicKey() */
  constructor(token: symbol, alg: SignatureAlgorithm, spki: Uint8Array, material: PublicMaterial, bits?: number) {
    if (token !== CONSTRUCT) {
      throw new HotPatchError('INVALID', 'PublicKey cannot be constructed directly; use importPublicKey()');
    }
    this.alg = alg;
    this.#spki = spki;
    this.#material = material;
    this.bits = bits;
    this.fingerprint = createHash('sha256').update(spki).digest('hex');
    Object.freeze(this);
  }

  /** Canonical SubjectPublicKeyInfo DER; a copy, so callers cannot alter the key. */
  get spki(): Uint8Array {
    return this.#spki.slice();
  }

  toPem(): string {
    return encodePem('PUBLIC KEY', this.#spki);
  }

  toString(): string {
    return `PublicKey(${this.alg}, ${this.fingerprint})`;
  }

  static {
    readPublicMaterial = (key) => key.#material;
  }
}

export class PrivateKey {
  readonly alg: SignatureAlgorithm;
  readonly #material: PrivateMaterial;
  readonly #publicKey: PublicKey;

  /** @internal use importPrivateKey or generateKeyPair */
  constructor(token: symbol, alg: SignatureAlgorithm, material: PrivateMaterial, publicKey: PublicKey) {
    if (token !== CONSTRUCT) {
      throw new HotPatchError('INVALID', 'PrivateKey cannot be constructed directly; use importPrivateKey()');
    }
    this.alg = alg;
    this.#material = material;
    this.#publicKey = publicKey;
    Object.freeze(this);
  }

  publicKey(): PublicKey {
    return this.#publicKey;
  }

  /** PKCS#8 PEM ("PRIVATE KEY"); ML-DSA-65 in the RFC 9881 seed form. */
  toPem(): string {
    const m = this.#material;
    if (m.kind === 'ml-dsa-65') return encodePem('PRIVATE KEY', encodeMlDsa65Pkcs8(m.seed));
    return m.key.export({ type: 'pkcs8', format: 'pem' }) as string;
  }

  toString(): string {
    // Never the key material: private keys end up in logs through string interpolation.
    return `PrivateKey(${this.alg}, public ${this.#publicKey.fingerprint})`;
  }

  static {
    readPrivateMaterial = (key) => key.#material;
  }
}

/** @internal for the signature providers; not part of the package's public surface. */
export function publicMaterial(key: PublicKey): PublicMaterial {
  return readPublicMaterial(key);
}

/** @internal for the signature providers; not part of the package's public surface. */
export function privateMaterial(key: PrivateKey): PrivateMaterial {
  return readPrivateMaterial(key);
}

/**
 * Imports a public key for the algorithm the caller's trust store declares. The declared
 * algorithm must be the key's own: the verifier takes the algorithm from the trusted key
 * (docs/ARCHITECTURE.md "Trust store"), so a key that could be read as two algorithms would
 * let an attacker choose the weaker one.
 */
export function importPublicKey(alg: SignatureAlgorithm, text: string): PublicKey {
  const declared = signatureAlgorithmOf(alg, 'alg');
  assertString(text, 'public key text');
  const { label, der } = decodeKeyText(text, 'public key text');
  if (label !== undefined && label !== 'PUBLIC KEY') {
    throw new HotPatchError(
      'INVALID',
      label.includes('PRIVATE KEY')
        ? `public key text is a private key (PEM "${label}"); give the "PUBLIC KEY" (SPKI) instead`
        : `public key text must be a "PUBLIC KEY" (SPKI) PEM block, got "${label}"`,
    );
  }
  if (label === undefined && pkcs8AlgorithmOid(der) !== undefined) {
    throw new HotPatchError('INVALID', 'public key text is a PKCS#8 private key; give the SPKI public key instead');
  }
  let oid: Uint8Array;
  try {
    oid = parseSpki(der).oid;
  } catch (cause) {
    throw derInvalid('public key text is not a DER SubjectPublicKeyInfo', cause);
  }
  if (bytesEqual(oid, OID_ML_DSA_65)) {
    if (declared !== 'ml-dsa-65') throw mismatch('public key', 'ml-dsa-65', declared);
    let raw: Uint8Array;
    try {
      raw = decodeMlDsa65Spki(der);
    } catch (cause) {
      throw derInvalid('public key text is not a valid ML-DSA-65 SubjectPublicKeyInfo', cause);
    }
    return mlDsaPublicKey(raw.slice());
  }
  let key: KeyObject;
  try {
    key = createPublicKey({ key: Buffer.from(der), format: 'der', type: 'spki' });
  } catch (cause) {
    throw new HotPatchError('INVALID', 'public key text is not a supported public key', { cause });
  }
  return nodePublicKey(key, declared, 'public key');
}

/** Imports a PKCS#8 PEM private key; the algorithm is read from the key itself. */
export function importPrivateKey(pem: string): PrivateKey {
  assertString(pem, 'pem');
  const { label, der } = decodeKeyText(pem, 'pem');
  if (label !== 'PRIVATE KEY') {
    throw new HotPatchError(
      'INVALID',
      label === undefined
        ? 'pem must be a PKCS#8 "PRIVATE KEY" PEM block, got bare base64'
        : label === 'ENCRYPTED PRIVATE KEY'
          ? 'pem is an encrypted private key; decrypt it to an unencrypted PKCS#8 "PRIVATE KEY" first'
          : `pem must be a PKCS#8 "PRIVATE KEY" PEM block, got "${label}"`,
    );
  }
  const oid = pkcs8AlgorithmOid(der);
  if (oid === undefined) throw new HotPatchError('INVALID', 'pem is not a DER PKCS#8 PrivateKeyInfo');
  if (bytesEqual(oid, OID_ML_DSA_65)) {
    let seed: Uint8Array;
    try {
      seed = decodeMlDsa65Pkcs8(der);
    } catch (cause) {
      throw derInvalid('pem is not a valid ML-DSA-65 private key', cause);
    }
    return mlDsaPrivateKey(seed.slice());
  }
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: Buffer.from(der), format: 'der', type: 'pkcs8' });
  } catch (cause) {
    throw new HotPatchError('INVALID', 'pem is not a supported private key', { cause });
  }
  return nodePrivateKey(key, nodeKeyAlgorithm(key, 'private key'));
}

export interface GenerateKeyPairOptions {
  /** RSA modulus size; default 3072. Ignored for the other algorithms. */
  rsaBits?: number;
}

export function generateKeyPair(alg: SignatureAlgorithm, options: GenerateKeyPairOptions = {}): { privateKey: PrivateKey; publicKey: PublicKey } {
  const which = signatureAlgorithmOf(alg, 'alg');
  const rsaBits = generateOptions(options).rsaBits;
  let privateKey: PrivateKey;
  switch (which) {
    case 'ml-dsa-65':
      privateKey = mlDsaPrivateKey(new Uint8Array(randomBytes(ml_dsa65.lengths.seed ?? 32)));
      break;
    case 'ed25519':
      privateKey = nodePrivateKey(generateKeyPairSync('ed25519').privateKey, which);
      break;
    case 'ecdsa-p256-sha256':
      privateKey = nodePrivateKey(generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey, which);
      break;
    case 'rsa-pss-sha256':
      privateKey = nodePrivateKey(generateKeyPairSync('rsa', { modulusLength: rsaBits, publicExponent: 0x10001 }).privateKey, which);
      break;
  }
  return { privateKey, publicKey: privateKey.publicKey() };
}

function generateOptions(value: unknown): { rsaBits: number } {
  const options = asObject(value, 'options');
  rejectUnknownFields(options, ['rsaBits'], 'options');
  const rsaBits = options['rsaBits'] ?? DEFAULT_RSA_BITS;
  if (typeof rsaBits !== 'number' || !Number.isInteger(rsaBits) || rsaBits % 8 !== 0 || rsaBits < MIN_GENERATED_RSA_BITS || rsaBits > MAX_RSA_BITS) {
    throw new HotPatchError('INVALID', `options.rsaBits must be a multiple of 8 from ${MIN_GENERATED_RSA_BITS} to ${MAX_RSA_BITS}, got ${describe(rsaBits)}`);
  }
  return { rsaBits };
}

function nodePrivateKey(key: KeyObject, alg: SignatureAlgorithm): PrivateKey {
  return new PrivateKey(CONSTRUCT, alg, { kind: 'node', key }, nodePublicKey(createPublicKey(key), alg, 'public key'));
}

function mlDsaPrivateKey(seed: Uint8Array): PrivateKey {
  const { secretKey, publicKey } = ml_dsa65.keygen(seed);
  return new PrivateKey(CONSTRUCT, 'ml-dsa-65', { kind: 'ml-dsa-65', seed, secretKey }, mlDsaPublicKey(publicKey));
}

function mlDsaPublicKey(raw: Uint8Array): PublicKey {
  return new PublicKey(CONSTRUCT, 'ml-dsa-65', encodeMlDsa65Spki(raw), { kind: 'ml-dsa-65', publicKey: raw });
}

/**
 * Builds the PublicKey of a node-native key from its canonical SPKI, so that one key has one
 * fingerprint whatever encoding it arrived in (compressed or explicit-curve EC points,
 * RSASSA-PSS vs rsaEncryption OID): a threshold counts distinct keys (docs/ARCHITECTURE.md
 * "Trust store"), and two encodings of one key must not count twice.
 */
function nodePublicKey(key: KeyObject, declared: SignatureAlgorithm, what: string): PublicKey {
  const actual = nodeKeyAlgorithm(key, what);
  if (actual !== declared) throw mismatch(what, actual, declared);
  const bits = checkRsaSize(key, what);
  let canonical: Uint8Array;
  if (key.asymmetricKeyType === 'ec') {
    // Through JWK: always a named curve and an uncompressed point.
    canonical = exportSpki(createPublicKey({ key: key.export({ format: 'jwk' }), format: 'jwk' }));
  } else if (key.asymmetricKeyType === 'rsa-pss') {
    canonical = rsaPssSpkiToRsaEncryption(exportSpki(key));
  } else {
    canonical = exportSpki(key);
  }
  const verifyKey = createPublicKey({ key: Buffer.from(canonical), format: 'der', type: 'spki' });
  return new PublicKey(CONSTRUCT, actual, canonical, { kind: 'node', key: verifyKey }, bits);
}

function exportSpki(key: KeyObject): Uint8Array {
  return new Uint8Array(key.export({ type: 'spki', format: 'der' }));
}

/** The algorithm a node KeyObject can serve, or INVALID when it serves none of ours. */
function nodeKeyAlgorithm(key: KeyObject, what: string): SignatureAlgorithm {
  const type = key.asymmetricKeyType;
  switch (type) {
    case 'ed25519':
      return 'ed25519';
    case 'ec': {
      const curve = key.asymmetricKeyDetails?.namedCurve;
      if (curve !== 'prime256v1') {
        throw new HotPatchError('INVALID', `${what} is an EC key on curve ${curve ?? '(unnamed)'}; ecdsa-p256-sha256 needs P-256 (prime256v1)`, {
          detail: { curve: curve ?? null },
        });
      }
      return 'ecdsa-p256-sha256';
    }
    case 'rsa':
      return 'rsa-pss-sha256';
    case 'rsa-pss': {
      // An RSASSA-PSS key may restrict its own use. We sign with SHA-256 and a 32-byte salt,
      // so a key restricted to another hash or to longer salts cannot be ours (OpenSSL would
      // refuse to sign with it). MGF1's hash is not checked: OpenSSL does not enforce it and
      // records SHA-1 there by default even for keys restricted to SHA-256.
      const d = key.asymmetricKeyDetails ?? {};
      if (d.hashAlgorithm !== undefined && d.hashAlgorithm !== 'sha256') {
        throw new HotPatchError('INVALID', `${what} is an RSASSA-PSS key restricted to ${d.hashAlgorithm}; rsa-pss-sha256 needs SHA-256`);
      }
      if (d.saltLength !== undefined && d.saltLength > RSA_PSS_SALT_LENGTH) {
        throw new HotPatchError(
          'INVALID',
          `${what} is an RSASSA-PSS key requiring salts of at least ${d.saltLength} bytes; rsa-pss-sha256 uses ${RSA_PSS_SALT_LENGTH}`,
        );
      }
      return 'rsa-pss-sha256';
    }
    default:
      throw new HotPatchError('INVALID', `${what} is of unsupported type ${type ?? '(unknown)'}`, {
        detail: { keyType: type ?? null },
      });
  }
}

function checkRsaSize(key: KeyObject, what: string): number | undefined {
  if (key.asymmetricKeyType !== 'rsa' && key.asymmetricKeyType !== 'rsa-pss') return undefined;
  const bits = key.asymmetricKeyDetails?.modulusLength;
  if (bits === undefined || bits > MAX_RSA_BITS) {
    throw new HotPatchError('INVALID', `${what} is a ${bits ?? '?'}-bit RSA key, above the ${MAX_RSA_BITS}-bit limit`);
  }
  return bits;
}

function mismatch(what: string, actual: SignatureAlgorithm, declared: SignatureAlgorithm): HotPatchError {
  return new HotPatchError('INVALID', `${what} is an ${actual} key but was declared as ${declared}`, {
    detail: { actual, declared },
  });
}

function derInvalid(message: string, cause: unknown): HotPatchError {
  if (!(cause instanceof DerError)) throw cause;
  return new HotPatchError('INVALID', `${message}: ${cause.message}`, { cause });
}

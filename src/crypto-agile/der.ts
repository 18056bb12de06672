/*
 * The few DER structures this module builds and reads by hand. Node 20 has no ML-DSA key
 * objects, so ML-DSA-65 SubjectPublicKeyInfo and PKCS#8 (RFC 9881) are coded here; the same
 * reader also peeks at the algorithm OID of any key container to route it, and re-wraps an
 * RSASSA-PSS public key under rsaEncryption so one RSA key has one SPKI.
 *
 * The reader is deliberately strict: single-byte tags, minimal definite lengths, exact sizes,
 * no trailing bytes. A lenient parser would let one key have many encodings, and the key
 * fingerprint (SHA-256 of the SPKI) must identify a key, not an encoding of it.
 */

export const TAG_INTEGER = 0x02;
export const TAG_BIT_STRING = 0x03;
export const TAG_OCTET_STRING = 0x04;
export const TAG_NULL = 0x05;
export const TAG_OID = 0x06;
export const TAG_SEQUENCE = 0x30;
/** RFC 9881 `seed [0] IMPLICIT OCTET STRING (SIZE (32))` inside the PKCS#8 privateKey. */
const TAG_CONTEXT_0_PRIMITIVE = 0x80;

/** id-ml-dsa-65, 2.16.840.1.101.3.4.3.18 (FIPS 204 / RFC 9881), content bytes only. */
export const OID_ML_DSA_65 = Uint8Array.of(0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x12);
/** rsaEncryption, 1.2.840.113549.1.1.1. */
export const OID_RSA_ENCRYPTION = Uint8Array.of(0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01);
/** id-RSASSA-PSS, 1.2.840.113549.1.1.10. */
export const OID_RSASSA_PSS = Uint8Array.of(0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a);

export const ML_DSA_65_PUBLIC_KEY_LENGTH = 1952;
export const ML_DSA_65_SEED_LENGTH = 32;

/** Thrown by the reader; callers turn it into HotPatchError('INVALID') with their own context. */
export class DerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DerError';
  }
}

interface Tlv {
  tag: number;
  content: Uint8Array;
  /** Offset just past this element in the buffer it was read from. */
  end: number;
}

function readTlv(buf: Uint8Array, offset: number): Tlv {
  if (offset + 2 > buf.length) throw new DerError(`truncated element at offset ${offset}`);
  const tag = buf[offset]!;
  // High-tag-number form never appears in the structures we accept.
  if ((tag & 0x1f) === 0x1f) throw new DerError(`multi-byte tag at offset ${offset}`);
  let at = offset + 1;
  const first = buf[at++]!;
  let length: number;
  if (first < 0x80) {
    length = first;
  } else {
    const count = first & 0x7f;
    // 0x80 is BER's indefinite length; more than 3 length bytes is far beyond any key here.
    if (count === 0 || count > 3) throw new DerError(`unsupported length form at offset ${offset}`);
    if (at + count > buf.length) throw new DerError(`truncated length at offset ${offset}`);
    if (buf[at] === 0) throw new DerError(`non-minimal length at offset ${offset}`);
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + buf[at++]!;
    if (length < 0x80) throw new DerError(`non-minimal length at offset ${offset}`);
  }
  const end = at + length;
  if (end > buf.length) throw new DerError(`element at offset ${offset} overruns its container`);
  return { tag, content: buf.subarray(at, end), end };
}

function expectTag(tlv: Tlv, tag: number, what: string): Uint8Array {
  if (tlv.tag !== tag) {
    throw new DerError(`${what}: expected tag 0x${hex2(tag)}, got 0x${hex2(tlv.tag)}`);
  }
  return tlv.content;
}

/** Reads the elements of a constructed value, which must be consumed exactly. */
function readAll(content: Uint8Array): Tlv[] {
  const out: Tlv[] = [];
  let at = 0;
  while (at < content.length) {
    const tlv = readTlv(content, at);
    out.push(tlv);
    at = tlv.end;
  }
  return out;
}

/** The whole buffer must be one element: trailing bytes are an error. */
function readSingle(buf: Uint8Array, tag: number, what: string): Uint8Array {
  const tlv = readTlv(buf, 0);
  if (tlv.end !== buf.length) throw new DerError(`${what}: ${buf.length - tlv.end} trailing byte(s)`);
  return expectTag(tlv, tag, what);
}

function encodeLength(length: number): Uint8Array {
  if (length < 0x80) return Uint8Array.of(length);
  if (length < 0x100) return Uint8Array.of(0x81, length);
  if (length < 0x10000) return Uint8Array.of(0x82, length >> 8, length & 0xff);
  if (length < 0x1000000) return Uint8Array.of(0x83, length >> 16, (length >> 8) & 0xff, length & 0xff);
  throw new DerError(`length ${length} too large`);
}

export function encodeTlv(tag: number, ...parts: Uint8Array[]): Uint8Array {
  const contentLength = parts.reduce((n, p) => n + p.length, 0);
  const len = encodeLength(contentLength);
  const out = new Uint8Array(1 + len.length + contentLength);
  out[0] = tag;
  out.set(len, 1);
  let at = 1 + len.length;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

interface SpkiParts {
  /** Content bytes of the AlgorithmIdentifier's OID. */
  oid: Uint8Array;
  /** Encoded parameters (whole TLV), or undefined when absent. */
  params: Uint8Array | undefined;
  /** BIT STRING content after the unused-bits byte. */
  key: Uint8Array;
}

function parseAlgorithmIdentifier(content: Uint8Array): { oid: Uint8Array; params: Uint8Array | undefined } {
  const items = readAll(content);
  if (items.length < 1 || items.length > 2) throw new DerError('AlgorithmIdentifier must hold an OID and at most one parameter');
  const oid = expectTag(items[0]!, TAG_OID, 'AlgorithmIdentifier algorithm');
  const second = items[1];
  const params = second === undefined ? undefined : content.subarray(items[0]!.end, second.end);
  return { oid, params };
}

/** SubjectPublicKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier, subjectPublicKey BIT STRING } */
export function parseSpki(der: Uint8Array): SpkiParts {
  const items = readAll(readSingle(der, TAG_SEQUENCE, 'SubjectPublicKeyInfo'));
  if (items.length !== 2) throw new DerError(`SubjectPublicKeyInfo must have 2 elements, has ${items.length}`);
  const alg = parseAlgorithmIdentifier(expectTag(items[0]!, TAG_SEQUENCE, 'SubjectPublicKeyInfo algorithm'));
  const bits = expectTag(items[1]!, TAG_BIT_STRING, 'SubjectPublicKeyInfo subjectPublicKey');
  if (bits.length < 1 || bits[0] !== 0) throw new DerError('subjectPublicKey must be a whole number of bytes');
  return { oid: alg.oid, params: alg.params, key: bits.subarray(1) };
}

/**
 * The algorithm OID of a PKCS#8 / OneAsymmetricKey, or undefined when `der` is not shaped
 * like one. Used to route ML-DSA keys to our codec and to recognise a private key handed in
 * where a public one was expected.
 */
export function pkcs8AlgorithmOid(der: Uint8Array): Uint8Array | undefined {
  try {
    const items = readAll(readSingle(der, TAG_SEQUENCE, 'PrivateKeyInfo'));
    if (items.length < 3) return undefined;
    expectTag(items[0]!, TAG_INTEGER, 'PrivateKeyInfo version');
    const alg = parseAlgorithmIdentifier(expectTag(items[1]!, TAG_SEQUENCE, 'PrivateKeyInfo algorithm'));
    expectTag(items[2]!, TAG_OCTET_STRING, 'PrivateKeyInfo privateKey');
    return alg.oid;
  } catch (err) {
    if (err instanceof DerError) return undefined;
    throw err;
  }
}

/** A seed-form lattice key type (ML-DSA-65 per RFC 9881, ML-KEM-768 per RFC 9935): its OID and sizes. */
interface SeedKeyType {
  name: string;
  oid: Uint8Array;
  publicKeyLength: number;
  seedLength: number;
}

/** id-alg-ml-kem-768 (2.16.840.1.101.3.4.4.2). */
export const OID_ML_KEM_768 = Uint8Array.of(0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x04, 0x02);
export const ML_KEM_768_PUBLIC_KEY_LENGTH = 1184;
export const ML_KEM_768_SEED_LENGTH = 64;
const ML_DSA_65: SeedKeyType = { name: 'ML-DSA-65', oid: OID_ML_DSA_65, publicKeyLength: ML_DSA_65_PUBLIC_KEY_LENGTH, seedLength: ML_DSA_65_SEED_LENGTH };
const ML_KEM_768: SeedKeyType = { name: 'ML-KEM-768', oid: OID_ML_KEM_768, publicKeyLength: ML_KEM_768_PUBLIC_KEY_LENGTH, seedLength: ML_KEM_768_SEED_LENGTH };

/** The AlgorithmIdentifier of these types carries the OID and no parameters (RFC 9881 §4, RFC 9935). */
const algorithmIdentifier = (type: SeedKeyType): Uint8Array => encodeTlv(TAG_SEQUENCE, encodeTlv(TAG_OID, type.oid));

function encodeSeedSpki(type: SeedKeyType, publicKey: Uint8Array): Uint8Array {
  if (publicKey.length !== type.publicKeyLength) throw new DerError(`${type.name} public key must be ${type.publicKeyLength} bytes, got ${publicKey.length}`);
  return encodeTlv(TAG_SEQUENCE, algorithmIdentifier(type), encodeTlv(TAG_BIT_STRING, Uint8Array.of(0), publicKey));
}

function decodeSeedSpki(type: SeedKeyType, der: Uint8Array): Uint8Array {
  const spki = parseSpki(der);
  if (!bytesEqual(spki.oid, type.oid)) throw new DerError(`SubjectPublicKeyInfo algorithm is not ${type.name}`);
  if (spki.params !== undefined) throw new DerError(`the ${type.name} AlgorithmIdentifier must have no parameters`);
  if (spki.key.length !== type.publicKeyLength) throw new DerError(`${type.name} public key must be ${type.publicKeyLength} bytes, got ${spki.key.length}`);
  return spki.key;
}

/** PKCS#8 v1 with the seed-only private key: `80 <len> <seed>` inside the OCTET STRING. */
function encodeSeedPkcs8(type: SeedKeyType, seed: Uint8Array): Uint8Array {
  if (seed.length !== type.seedLength) throw new DerError(`${type.name} seed must be ${type.seedLength} bytes, got ${seed.length}`);
  return encodeTlv(
    TAG_SEQUENCE,
    encodeTlv(TAG_INTEGER, Uint8Array.of(0)),
    algorithmIdentifier(type),
    encodeTlv(TAG_OCTET_STRING, encodeTlv(TAG_CONTEXT_0_PRIMITIVE, seed)),
  );
}

/** The seed of a PKCS#8 in seed form; the expanded and both-forms encodings are refused. */
function decodeSeedPkcs8(type: SeedKeyType, der: Uint8Array): Uint8Array {
  const items = readAll(readSingle(der, TAG_SEQUENCE, 'PrivateKeyInfo'));
  if (items.length !== 3) throw new DerError(`${type.name} PrivateKeyInfo must have exactly 3 elements (no attributes or public key), has ${items.length}`);
  const version = expectTag(items[0]!, TAG_INTEGER, 'PrivateKeyInfo version');
  if (version.length !== 1 || version[0] !== 0) throw new DerError('PrivateKeyInfo version must be 0');
  const alg = parseAlgorithmIdentifier(expectTag(items[1]!, TAG_SEQUENCE, 'PrivateKeyInfo algorithm'));
  if (!bytesEqual(alg.oid, type.oid)) throw new DerError(`PrivateKeyInfo algorithm is not ${type.name}`);
  if (alg.params !== undefined) throw new DerError(`the ${type.name} AlgorithmIdentifier must have no parameters`);
  const inner = expectTag(items[2]!, TAG_OCTET_STRING, 'PrivateKeyInfo privateKey');
  const choice = readTlv(inner, 0);
  if (choice.tag !== TAG_CONTEXT_0_PRIMITIVE) {
    // expandedKey (OCTET STRING) or both (SEQUENCE): we keep only seeds, which are smaller
    // and cannot be inconsistent with themselves.
    throw new DerError(`${type.name} private key must be in seed form ([0] ${type.seedLength}-byte seed)`);
  }
  if (choice.end !== inner.length) throw new DerError(`${type.name} private key has trailing bytes`);
  if (choice.content.length !== type.seedLength) throw new DerError(`${type.name} seed must be ${type.seedLength} bytes, got ${choice.content.length}`);
  return choice.content;
}

export const encodeMlDsa65Spki = (publicKey: Uint8Array): Uint8Array => encodeSeedSpki(ML_DSA_65, publicKey);
/** Returns the raw 1952-byte public key of an ML-DSA-65 SPKI. */
export const decodeMlDsa65Spki = (der: Uint8Array): Uint8Array => decodeSeedSpki(ML_DSA_65, der);
export const encodeMlDsa65Pkcs8 = (seed: Uint8Array): Uint8Array => encodeSeedPkcs8(ML_DSA_65, seed);
/** Returns the 32-byte seed of an ML-DSA-65 PKCS#8 in seed form; the other RFC 9881 forms are refused. */
export const decodeMlDsa65Pkcs8 = (der: Uint8Array): Uint8Array => decodeSeedPkcs8(ML_DSA_65, der);
export const encodeMlKem768Spki = (publicKey: Uint8Array): Uint8Array => encodeSeedSpki(ML_KEM_768, publicKey);
export const decodeMlKem768Spki = (der: Uint8Array): Uint8Array => decodeSeedSpki(ML_KEM_768, der);
export const encodeMlKem768Pkcs8 = (seed: Uint8Array): Uint8Array => encodeSeedPkcs8(ML_KEM_768, seed);
export const decodeMlKem768Pkcs8 = (der: Uint8Array): Uint8Array => decodeSeedPkcs8(ML_KEM_768, der);

/**
 * Re-wraps the RSAPublicKey of an RSASSA-PSS SPKI under rsaEncryption (parameters NULL, as
 * RFC 3279 requires). The PSS OID only restricts how the key may be used; we always use it
 * with PSS/SHA-256, so both forms describe the same key and must share one fingerprint.
 */
export function rsaPssSpkiToRsaEncryption(der: Uint8Array): Uint8Array {
  const spki = parseSpki(der);
  if (!bytesEqual(spki.oid, OID_RSASSA_PSS)) throw new DerError('SubjectPublicKeyInfo algorithm is not id-RSASSA-PSS');
  return encodeTlv(
    TAG_SEQUENCE,
    encodeTlv(TAG_SEQUENCE, encodeTlv(TAG_OID, OID_RSA_ENCRYPTION), encodeTlv(TAG_NULL)),
    encodeTlv(TAG_BIT_STRING, Uint8Array.of(0), spki.key),
  );
}

function hex2(n: number): string {
  return n.toString(16).padStart(2, '0');
}

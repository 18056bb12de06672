import { X509Certificate, createHash, constants, verify as verifySignatureBytes, type KeyObject } from 'node:crypto';
import type * as Asn1 from 'asn1js';
import type * as Pki from 'pkijs';
import { asn1js, pkijs } from './pkix-modules.js';
import { HotPatchError } from '../core/index.js';

/**
 * RFC 3161 timestamp tokens, checked synchronously: pkijs parses the CMS structures (its own
 * verification is asynchronous, WebCrypto), and node:crypto checks every signature and
 * certificate, so a verifier that is pure and synchronous can count a timestamped signature.
 */

const OID_SIGNED_DATA = '1.2.840.113549.1.7.2';
const OID_TST_INFO = '1.2.840.113549.1.9.16.1.4';
const OID_CONTENT_TYPE = '1.2.840.113549.1.9.3';
const OID_MESSAGE_DIGEST = '1.2.840.113549.1.9.4';
const OID_TIMESTAMPING = '1.3.6.1.5.5.7.3.8';
const DIGESTS: Readonly<Record<string, string>> = {
  '2.16.840.1.101.3.4.2.1': 'sha256',
  '2.16.840.1.101.3.4.2.2': 'sha384',
  '2.16.840.1.101.3.4.2.3': 'sha512',
};
/** Signature algorithms a TSA may sign with: the digest they fix (undefined: the signer's digestAlgorithm; null: none, Ed25519). */
const SIGNATURES: Readonly<Record<string, { kind: 'rsa' | 'ecdsa' | 'ed25519'; digest?: string | null }>> = {
  '1.2.840.113549.1.1.1': { kind: 'rsa' },
  '1.2.840.113549.1.1.11': { kind: 'rsa', digest: 'sha256' },
  '1.2.840.113549.1.1.12': { kind: 'rsa', digest: 'sha384' },
  '1.2.840.113549.1.1.13': { kind: 'rsa', digest: 'sha512' },
  '1.2.840.10045.4.3.2': { kind: 'ecdsa', digest: 'sha256' },
  '1.2.840.10045.4.3.3': { kind: 'ecdsa', digest: 'sha384' },
  '1.2.840.10045.4.3.4': { kind: 'ecdsa', digest: 'sha512' },
  '1.3.101.112': { kind: 'ed25519', digest: null },
};

/** What a verified token says. */
export interface TimestampInfo {
  /** When the TSA saw the signature (epoch ms). */
  genTime: number;
  /** The TSA certificate's subject. */
  tsa: string;
  serial: string;
}

/** The TSTInfo of a token, unverified (to read a reply's nonce). */
export interface ParsedToken {
  signedData: Pki.SignedData;
  tstInfo: Pki.TSTInfo;
  /** The DER of the TSTInfo (what the signer's messageDigest covers). */
  eContent: Uint8Array;
}

/** DER bytes of a TimeStampToken (a CMS ContentInfo) → its parts. INVALID when it is not one. */
export function parseTimestampToken(token: Uint8Array): ParsedToken {
  try {
    const asn1 = asn1js.fromBER(token);
    if (asn1.offset === -1 || asn1.result.valueBeforeDecodeView.byteLength !== token.byteLength) throw new Error('not one DER value');
    const info = new pkijs.ContentInfo({ schema: asn1.result });
    if (info.contentType !== OID_SIGNED_DATA) throw new Error(`content type ${info.contentType} is not signed data`);
    const signedData = new pkijs.SignedData({ schema: info.content });
    if (signedData.encapContentInfo.eContentType !== OID_TST_INFO) throw new Error('its content is not a TSTInfo');
    const content = signedData.encapContentInfo.eContent;
    if (content === undefined) throw new Error('it has no TSTInfo');
    const eContent = new Uint8Array(content.getValue());
    return { signedData, tstInfo: pkijs.TSTInfo.fromBER(eContent), eContent };
  } catch (error) {
    throw new HotPatchError('INVALID', `not an RFC 3161 timestamp token: ${(error as Error).message}`, { cause: error });
  }
}

/**
 * Verifies a timestamp token over `signed` (the signature bytes it must cover) and returns when
 * it was made. The token must be signed — its signed attributes carrying, once each, the
 * TSTInfo's content type and digest, and the ESS signing-certificate hash of the signer's
 * certificate — by the one certificate its signer identifier names. That certificate must be a
 * time-stamping authority's (the timeStamping extended key usage, critical and alone, no
 * unknown critical extension, an RSA key of at most 4,096 bits or an EC/Ed25519 key), valid at
 * the token's time, and be one of `authorities` or issued directly by one that is a CA
 * (intermediate CAs are listed among the authorities, never taken from the token).
 * Errors: INVALID (not a token, too many certificates, an unusable certificate), BAD_SIGNATURE
 * (a signature, digest, imprint or certificate hash that does not match), UNTRUSTED_KEY (a
 * certificate that is not a TSA's, or that no authority vouches for).
 */
export function verifyTimestampToken(token: Uint8Array, signed: Uint8Array, authorities: readonly X509Certificate[]): TimestampInfo {
  const { signedData, tstInfo, eContent } = tokenOver(token, signed);
  if (signedData.signerInfos.length !== 1) throw new HotPatchError('INVALID', `a timestamp token has one signer, this one ${signedData.signerInfos.length}`);
  const signer = signedData.signerInfos[0]!;
  const digest = DIGESTS[signer.digestAlgorithm.algorithmId];
  if (digest === undefined) throw new HotPatchError('INVALID', `timestamp digest algorithm ${signer.digestAlgorithm.algorithmId} is not SHA-2`);
  const attributes = signer.signedAttrs;
  if (attributes === undefined) throw new HotPatchError('INVALID', 'the timestamp has no signed attributes');
  const contentType = singleAttribute(attributes, OID_CONTENT_TYPE);
  if (!(contentType instanceof asn1js.ObjectIdentifier) || contentType.valueBlock.toString() !== OID_TST_INFO) {
    throw new HotPatchError('BAD_SIGNATURE', 'the timestamp signature is not over a TSTInfo');
  }
  const messageDigest = singleAttribute(attributes, OID_MESSAGE_DIGEST);
  if (
    !(messageDigest instanceof asn1js.OctetString) ||
    !Buffer.from(messageDigest.valueBlock.valueHexView).equals(createHash(digest).update(eContent).digest())
  ) {
    throw new HotPatchError('BAD_SIGNATURE', "the timestamp's signed digest does not match its TSTInfo");
  }

  const genTime = tstInfo.genTime.getTime();
  if (!Number.isFinite(genTime)) throw new HotPatchError('INVALID', 'the timestamp has no valid time');
  const tsa = signerCertificate(signedData, signer, authorities);
  if (!checkSignature(signer, digest, new Uint8Array(attributes.encodedValue), publicKeyOf(tsa.x509))) {
    throw new HotPatchError('BAD_SIGNATURE', 'the timestamp signature does not verify with the certificate its signer names');
  }
  checkTsaCertificate(tsa);
  checkEssCertificate(attributes, tsa);
  checkValidAt(tsa.x509, genTime);
  trustedBy(tsa.x509, authorities, genTime);
  return { genTime, tsa: subjectOf(tsa.x509), serial: Buffer.from(tstInfo.serialNumber.valueBlock.valueHexView).toString('hex') };
}

/** The parts of a token whose imprint is over `signed` (BAD_SIGNATURE when it is over other bytes). Its signature is not checked. */
export function tokenOver(token: Uint8Array, signed: Uint8Array): ParsedToken {
  const parsed = parseTimestampToken(token);
  const { messageImprint } = parsed.tstInfo;
  const imprint = DIGESTS[messageImprint.hashAlgorithm.algorithmId];
  if (imprint === undefined) throw new HotPatchError('INVALID', `timestamp imprint algorithm ${messageImprint.hashAlgorithm.algorithmId} is not SHA-2`);
  const hashed = Buffer.from(messageImprint.hashedMessage.valueBlock.valueHexView);
  if (!hashed.equals(createHash(imprint).update(signed).digest()))
    throw new HotPatchError('BAD_SIGNATURE', 'the timestamp is over other bytes than this signature');
  return parsed;
}

/** A certificate in both forms: node's (keys, validity, signatures) and pkijs's (names, extensions). */
interface Cert {
  x509: X509Certificate;
  pki: Pki.Certificate;
  der: Buffer;
}

/** Most certificates a token may carry (a TSA sends its own, perhaps a CA or two). */
const MAX_TOKEN_CERTIFICATES = 8;
const OID_SIGNING_CERTIFICATE = '1.2.840.113549.1.9.16.2.12';
const OID_SIGNING_CERTIFICATE_V2 = '1.2.840.113549.1.9.16.2.47';
const OID_SUBJECT_KEY_ID = '2.5.29.14';
const OID_EXT_KEY_USAGE = '2.5.29.37';
/** Critical extensions a TSA certificate may carry: key usage, basic constraints, extended key usage, subject alternative name, policies. */
const KNOWN_CRITICAL = new Set(['2.5.29.15', '2.5.29.19', OID_EXT_KEY_USAGE, '2.5.29.17', '2.5.29.32']);
const certCache = new WeakMap<X509Certificate, Cert>();

function certOf(x509: X509Certificate): Cert {
  let cert = certCache.get(x509);
  if (cert === undefined) {
    try {
      cert = { x509, pki: pkijs.Certificate.fromBER(x509.raw), der: x509.raw };
    } catch (error) {
      throw new HotPatchError('INVALID', `a time-stamping certificate cannot be read: ${(error as Error).message}`, { cause: error });
    }
    certCache.set(x509, cert);
  }
  return cert;
}

/** The one certificate (of the token's, then the authorities') that the signer identifier names. */
function signerCertificate(signedData: Pki.SignedData, signer: Pki.SignerInfo, authorities: readonly X509Certificate[]): Cert {
  const carried = (signedData.certificates ?? []).filter((c): c is Pki.Certificate => c instanceof pkijs.Certificate);
  if (carried.length > MAX_TOKEN_CERTIFICATES)
    throw new HotPatchError('INVALID', `the timestamp carries ${carried.length} certificates, more than ${MAX_TOKEN_CERTIFICATES}`);
  const candidates = [
    ...carried.map((c): (() => Cert) => () => {
      const der = Buffer.from(c.toSchema().toBER());
      try {
        return { x509: new X509Certificate(der), pki: c, der };
      } catch (error) {
        throw new HotPatchError('INVALID', `a certificate in the timestamp cannot be read: ${(error as Error).message}`, { cause: error });
      }
    }),
    ...authorities.map((a) => () => certOf(a)),
  ];
  for (const load of candidates) {
    const cert = load();
    if (namedBy(cert.pki, signer.sid)) return cert;
  }
  throw new HotPatchError('BAD_SIGNATURE', 'no certificate of the timestamp or of the authorities is the one its signer names');
}

function namedBy(cert: Pki.Certificate, sid: unknown): boolean {
  if (sid instanceof pkijs.IssuerAndSerialNumber) return cert.serialNumber.isEqual(sid.serialNumber) && cert.issuer.isEqual(sid.issuer);
  // [0] SubjectKeyIdentifier: the certificate's own subjectKeyIdentifier extension.
  const wanted = sid instanceof asn1js.BaseBlock ? Buffer.from((sid as Asn1.OctetString).valueBlock.valueHexView) : undefined;
  const ski = cert.extensions?.find((e) => e.extnID === OID_SUBJECT_KEY_ID)?.parsedValue as Asn1.OctetString | undefined;
  return wanted !== undefined && wanted.length > 0 && ski !== undefined && Buffer.from(ski.valueBlock.valueHexView).equals(wanted);
}

/** A signed attribute that must be present once, with one value. */
function singleAttribute(attributes: Pki.SignedAndUnsignedAttributes, type: string): Asn1.AsnType | undefined {
  const found = attributes.attributes.filter((a) => a.type === type);
  if (found.length !== 1 || found[0]!.values.length !== 1) return undefined;
  return found[0]!.values[0];
}

function checkSignature(signer: Pki.SignerInfo, digest: string, data: Uint8Array, key: KeyObject): boolean {
  const alg = SIGNATURES[signer.signatureAlgorithm.algorithmId];
  if (alg === undefined) return false;
  checkKeySize(key);
  const signature = Buffer.from(signer.signature.valueBlock.valueHexView);
  try {
    if (alg.kind === 'ed25519') return key.asymmetricKeyType === 'ed25519' && verifySignatureBytes(null, data, key, signature);
    const hash = alg.digest ?? digest;
    if (alg.kind === 'rsa')
      return key.asymmetricKeyType === 'rsa' && verifySignatureBytes(hash, data, { key, padding: constants.RSA_PKCS1_PADDING }, signature);
    return key.asymmetricKeyType === 'ec' && verifySignatureBytes(hash, data, { key, dsaEncoding: 'der' }, signature);
  } catch {
    return false; // a key that cannot check this signature is not the signer's
  }
}

/** An RSA key a hostile token may carry is bounded: checking it must stay cheap. */
function checkKeySize(key: KeyObject): void {
  if (key.asymmetricKeyType !== 'rsa') return;
  const { modulusLength = 0, publicExponent = 0n } = key.asymmetricKeyDetails ?? {};
  if (modulusLength > 4096 || publicExponent > 0x1_0000_0001n) {
    throw new HotPatchError(
      'INVALID',
      `a time-stamping key of ${modulusLength} bits (exponent ${publicExponent}) is refused: at most 4096 bits and exponent 2^32+1`,
    );
  }
}

/** RFC 3161 §2.3: the timeStamping usage, critical and the only one; no critical extension this check does not know. */
function checkTsaCertificate(tsa: Cert): void {
  const who = subjectOf(tsa.x509);
  const extensions = tsa.pki.extensions ?? [];
  const eku = extensions.find((e) => e.extnID === OID_EXT_KEY_USAGE);
  const purposes = (eku?.parsedValue as Pki.ExtKeyUsage | undefined)?.keyPurposes ?? [];
  if (eku === undefined || !purposes.includes(OID_TIMESTAMPING))
    throw new HotPatchError('UNTRUSTED_KEY', `the timestamp's signer ${who} is not a time-stamping authority (no timeStamping key usage)`);
  if (eku.critical !== true || purposes.length !== 1) {
    throw new HotPatchError(
      'UNTRUSTED_KEY',
      `the timestamp's signer ${who} is not a time-stamping authority: its timeStamping usage must be critical and its only one`,
    );
  }
  const unknown = extensions.find((e) => e.critical === true && !KNOWN_CRITICAL.has(e.extnID));
  if (unknown !== undefined)
    throw new HotPatchError('UNTRUSTED_KEY', `the timestamp's signer ${who} has a critical extension ${unknown.extnID} this check does not understand`);
}

/** The ESS signing-certificate attribute (v2, or v1 with SHA-1) names the signer's certificate by its hash. */
function checkEssCertificate(attributes: Pki.SignedAndUnsignedAttributes, tsa: Cert): void {
  const v2 = singleAttribute(attributes, OID_SIGNING_CERTIFICATE_V2);
  const v1 = v2 === undefined ? singleAttribute(attributes, OID_SIGNING_CERTIFICATE) : undefined;
  const value = v2 ?? v1;
  let expected: Buffer | undefined;
  let alg = v2 === undefined ? 'sha1' : 'sha256';
  try {
    const certs = (value as Asn1.Sequence).valueBlock.value[0] as Asn1.Sequence;
    const first = certs.valueBlock.value[0] as Asn1.Sequence;
    const [head, next] = first.valueBlock.value;
    if (head instanceof asn1js.Sequence) {
      const oid = (head.valueBlock.value[0] as Asn1.ObjectIdentifier).valueBlock.toString();
      alg = DIGESTS[oid] ?? '';
      expected = Buffer.from((next as Asn1.OctetString).valueBlock.valueHexView);
    } else expected = Buffer.from((head as Asn1.OctetString).valueBlock.valueHexView);
  } catch {
    expected = undefined;
  }
  if (value === undefined || expected === undefined || alg === '') {
    throw new HotPatchError('BAD_SIGNATURE', 'the timestamp does not name its signing certificate (ESS signingCertificate attribute)');
  }
  if (!createHash(alg).update(tsa.der).digest().equals(expected))
    throw new HotPatchError('BAD_SIGNATURE', "the timestamp's signing-certificate hash is not its signer's certificate");
}

function publicKeyOf(cert: X509Certificate): KeyObject {
  try {
    return cert.publicKey;
  } catch (error) {
    throw new HotPatchError('INVALID', `the key of the certificate ${subjectOf(cert)} cannot be used: ${(error as Error).message}`, { cause: error });
  }
}

function subjectOf(cert: X509Certificate): string {
  return cert.subject.replace(/\n/g, ', ');
}

function checkValidAt(cert: X509Certificate, time: number): void {
  if (time < Date.parse(cert.validFrom) || time > Date.parse(cert.validTo)) {
    throw new HotPatchError('UNTRUSTED_KEY', `the certificate ${subjectOf(cert)} was not valid at the timestamp's time ${new Date(time).toISOString()}`);
  }
}

/** The TSA's certificate is an authority, or is issued directly by one that is a CA, valid at the time. */
function trustedBy(tsa: X509Certificate, authorities: readonly X509Certificate[], time: number): void {
  if (authorities.some((a) => a.fingerprint256 === tsa.fingerprint256)) return;
  const issuer = authorities.find((a) => a.ca && tsa.checkIssued(a) && safeVerify(tsa, a));
  if (issuer === undefined)
    throw new HotPatchError('UNTRUSTED_KEY', `the timestamp is signed by ${subjectOf(tsa)}, which no trusted time-stamping authority vouches for`);
  checkValidAt(issuer, time);
}

function safeVerify(cert: X509Certificate, issuer: X509Certificate): boolean {
  try {
    return cert.verify(issuer.publicKey);
  } catch {
    return false;
  }
}

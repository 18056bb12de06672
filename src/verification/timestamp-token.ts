import { X509Certificate, createHash, constants, verify as verifySignatureBytes, type KeyObject } from 'node:crypto';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
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
/** Longest certificate chain followed from the TSA's certificate to a trusted one. */
const MAX_CHAIN = 4;

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
  signedData: pkijs.SignedData;
  tstInfo: pkijs.TSTInfo;
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
 * it was made. The token must be signed — its signed attributes carrying the TSTInfo's type and
 * digest — by a certificate with the timeStamping extended key usage, valid at that time, that
 * is one of `authorities` or chains to one (through certificates in the token, each a CA).
 * Errors: INVALID (not a token), BAD_SIGNATURE (a signature, digest or imprint that does not
 * match), UNTRUSTED_KEY (a TSA the authorities do not vouch for).
 */
export function verifyTimestampToken(token: Uint8Array, signed: Uint8Array, authorities: readonly X509Certificate[]): TimestampInfo {
  const { signedData, tstInfo, eContent } = tokenOver(token, signed);

  if (signedData.signerInfos.length !== 1) throw new HotPatchError('INVALID', `a timestamp token has one signer, this one ${signedData.signerInfos.length}`);
  const signer = signedData.signerInfos[0]!;
  const digest = DIGESTS[signer.digestAlgorithm.algorithmId];
  if (digest === undefined) throw new HotPatchError('INVALID', `timestamp digest algorithm ${signer.digestAlgorithm.algorithmId} is not SHA-2`);
  const attributes = signer.signedAttrs;
  if (attributes === undefined) throw new HotPatchError('INVALID', 'the timestamp has no signed attributes');
  const attribute = (type: string): asn1js.AsnType | undefined => attributes.attributes.find((a) => a.type === type)?.values[0];
  const contentType = attribute(OID_CONTENT_TYPE);
  if (!(contentType instanceof asn1js.ObjectIdentifier) || contentType.valueBlock.toString() !== OID_TST_INFO) {
    throw new HotPatchError('BAD_SIGNATURE', 'the timestamp signature is not over a TSTInfo');
  }
  const messageDigest = attribute(OID_MESSAGE_DIGEST);
  if (
    !(messageDigest instanceof asn1js.OctetString) ||
    !Buffer.from(messageDigest.valueBlock.valueHexView).equals(createHash(digest).update(eContent).digest())
  ) {
    throw new HotPatchError('BAD_SIGNATURE', "the timestamp's signed digest does not match its TSTInfo");
  }

  const genTime = tstInfo.genTime.getTime();
  const certificates = (signedData.certificates ?? []).flatMap((c) =>
    c instanceof pkijs.Certificate ? [new X509Certificate(Buffer.from(c.toSchema().toBER()))] : [],
  );
  const signedBytes = new Uint8Array(attributes.encodedValue); // re-tagged as a SET by pkijs, as signed
  const tsa = [...certificates, ...authorities].find((cert) => matchesSid(cert, signer.sid) && checkSignature(signer, digest, signedBytes, cert.publicKey));
  if (tsa === undefined) throw new HotPatchError('BAD_SIGNATURE', 'no certificate of the timestamp verifies its signature');
  if (tsa.keyUsage?.includes(OID_TIMESTAMPING) !== true)
    throw new HotPatchError('UNTRUSTED_KEY', `the timestamp's signer ${tsa.subject} is not a time-stamping authority (no timeStamping key usage)`);
  checkValidAt(tsa, genTime);
  trustedChain(tsa, certificates, authorities, genTime);
  return { genTime, tsa: tsa.subject.replace(/\n/g, ', '), serial: Buffer.from(tstInfo.serialNumber.valueBlock.valueHexView).toString('hex') };
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

function matchesSid(cert: X509Certificate, sid: unknown): boolean {
  if (sid instanceof pkijs.IssuerAndSerialNumber) {
    const serial = Buffer.from(sid.serialNumber.valueBlock.valueHexView).toString('hex').replace(/^0+/, '');
    return cert.serialNumber.toLowerCase().replace(/^0+/, '') === serial;
  }
  return true; // a subjectKeyIdentifier: the signature check decides
}

function checkSignature(signer: pkijs.SignerInfo, digest: string, data: Uint8Array, key: KeyObject): boolean {
  const alg = SIGNATURES[signer.signatureAlgorithm.algorithmId];
  if (alg === undefined) return false;
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

function checkValidAt(cert: X509Certificate, time: number): void {
  if (time < Date.parse(cert.validFrom) || time > Date.parse(cert.validTo)) {
    throw new HotPatchError(
      'UNTRUSTED_KEY',
      `the certificate ${cert.subject.replace(/\n/g, ', ')} was not valid at the timestamp's time ${new Date(time).toISOString()}`,
    );
  }
}

/** The TSA's certificate is an authority, or is issued (through CA certificates of the token) by one. */
function trustedChain(tsa: X509Certificate, certificates: readonly X509Certificate[], authorities: readonly X509Certificate[], time: number): void {
  let current = tsa;
  for (let depth = 0; depth <= MAX_CHAIN; depth++) {
    if (authorities.some((a) => a.fingerprint256 === current.fingerprint256)) return;
    const issuer = authorities.find((a) => issues(a, current));
    if (issuer !== undefined) {
      checkValidAt(issuer, time);
      return;
    }
    const next = certificates.find((c) => c.fingerprint256 !== current.fingerprint256 && c.ca && issues(c, current));
    if (next === undefined) break;
    checkValidAt(next, time);
    current = next;
  }
  throw new HotPatchError(
    'UNTRUSTED_KEY',
    `the timestamp is signed by ${tsa.subject.replace(/\n/g, ', ')}, which no trusted time-stamping authority vouches for`,
  );
}

function issues(issuer: X509Certificate, cert: X509Certificate): boolean {
  return cert.checkIssued(issuer) && cert.verify(issuer.publicKey);
}

import { HotPatchError } from './errors.js';
import { decodeBase64, encodeBase64 } from './base64.js';
import { asObject, boundedString, decodeJsonObject, describe, rejectUnknownFields } from './json-shape.js';

/**
 * The payloadType every hot-patch manifest envelope carries (docs/ARCHITECTURE.md
 * "Signed envelopes (DSSE)").
 */
export const MANIFEST_PAYLOAD_TYPE = 'application/vnd.xps.hotpatch.manifest+json';

export interface EnvelopeSignature {
  keyid: string;
  /** Raw signature bytes (decoded from the envelope's base64). */
  sig: Uint8Array;
  /**
   * An RFC 3161 timestamp token (DER) over `sig`: proof from a time-stamping authority that the
   * signature existed at its time. Not covered by any signature; it carries its own (the TSA's).
   */
  timestamp?: Uint8Array;
}

export interface Envelope {
  payloadType: string;
  /** Raw payload bytes (decoded from the envelope's base64). */
  payload: Uint8Array;
  signatures: EnvelopeSignature[];
}

const ENVELOPE_FIELDS = new Set(['payloadType', 'payload', 'signatures']);
const SIGNATURE_FIELDS = new Set(['keyid', 'sig', 'timestamp']);
/** Largest timestamp token accepted (base64 characters): a token with its certificates is a few KiB. */
const MAX_TIMESTAMP_BASE64 = 64 * 1024;
const MAX_SIGNATURES = 64;
const MAX_KEYID = 256;

const encoder = new TextEncoder();

/**
 * DSSE pre-authentication encoding: "DSSEv1" SP len(type) SP type SP len(body) SP body,
 * lengths as ASCII decimal byte counts. Signing these bytes (not the JSON) binds the type.
 */
export function pae(payloadType: string, body: Uint8Array): Uint8Array {
  const type = encoder.encode(payloadType);
  const head = encoder.encode(`DSSEv1 ${type.length} `);
  const mid = encoder.encode(` ${body.length} `);
  const out = new Uint8Array(head.length + type.length + mid.length + body.length);
  out.set(head, 0);
  out.set(type, head.length);
  out.set(mid, head.length + type.length);
  out.set(body, head.length + type.length + mid.length);
  return out;
}

/**
 * DSSE's PAE (`pae` above): "DSSEv1" SP len(type) SP type SP len(body) SP body, lengths as
 * ASCII decimal byte counts — for one payloadType fixed in advance. Everything up to the
 * body's length is encoded once, here, instead of on every verification (three UTF-8 encodes
 * and template strings per call in `pae`), and the message is built in a single allocation
 * (a pooled Buffer: it only ever goes to a signature verification, never to a caller).
 * Byte for byte the same as `pae(payloadType, body)` for every type and body.
 */
export function paeFor(payloadType: string): (body: Uint8Array) => Uint8Array {
  const type = Buffer.from(payloadType, 'utf8');
  const head = Buffer.concat([Buffer.from(`DSSEv1 ${type.length} `, 'latin1'), type, Buffer.from(' ', 'latin1')]);
  return (body: Uint8Array): Uint8Array => {
    const length = `${body.length} `;
    const out = Buffer.allocUnsafe(head.length + length.length + body.length);
    head.copy(out, 0);
    out.write(length, head.length, 'latin1');
    out.set(body, head.length + length.length);
    return out;
  };
}

/** Envelope JSON bytes → envelope with decoded payload and signatures. */
export function decodeEnvelope(input: Uint8Array | string): Envelope {
  const obj = decodeJsonObject(input, 'envelope');
  rejectUnknownFields(obj, ENVELOPE_FIELDS, 'envelope');
  const payloadType = boundedString(obj.payloadType, 'envelope payloadType');
  // DSSE accepts standard and URL-safe base64, padding optional (decodeBase64's default).
  const payload = decodeBase64(obj.payload, 'envelope payload');
  if (!Array.isArray(obj.signatures)) {
    throw new HotPatchError('INVALID', `envelope signatures must be an array, got ${describe(obj.signatures)}`);
  }
  if (obj.signatures.length > MAX_SIGNATURES) {
    throw new HotPatchError('INVALID', `envelope has ${obj.signatures.length} signatures, more than the ${MAX_SIGNATURES} allowed`);
  }
  const signatures = obj.signatures.map((s: unknown, i): EnvelopeSignature => {
    const where = `envelope signatures[${i}]`;
    const sig = asObject(s, where);
    rejectUnknownFields(sig, SIGNATURE_FIELDS, where);
    const signature: EnvelopeSignature = { keyid: boundedString(sig.keyid, `${where}.keyid`, MAX_KEYID), sig: decodeBase64(sig.sig, `${where}.sig`) };
    if (sig.timestamp !== undefined) {
      if (typeof sig.timestamp === 'string' && sig.timestamp.length > MAX_TIMESTAMP_BASE64) {
        throw new HotPatchError('TOO_LARGE', `${where}.timestamp is longer than ${MAX_TIMESTAMP_BASE64} characters`);
      }
      signature.timestamp = decodeBase64(sig.timestamp, `${where}.timestamp`);
    }
    return signature;
  });
  return { payloadType, payload, signatures };
}

/** Envelope → canonical JSON text (standard base64, fields in DSSE order). */
export function encodeEnvelope(envelope: Envelope): string {
  return `${JSON.stringify(
    {
      payloadType: envelope.payloadType,
      payload: encodeBase64(envelope.payload),
      signatures: envelope.signatures.map((s) => ({
        keyid: s.keyid,
        sig: encodeBase64(s.sig),
        ...(s.timestamp === undefined ? {} : { timestamp: encodeBase64(s.timestamp) }),
      })),
    },
    null,
    2,
  )}\n`;
}

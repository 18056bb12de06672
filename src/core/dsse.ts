import { HotPatchError } from './errors.js';
import { describe } from './json-shape.js';
import { decodeJson } from './manifest.js';

/**
 * The payloadType every hot-patch manifest envelope carries (docs/ARCHITECTURE.md
 * "Signed envelopes (DSSE)").
 */
export const MANIFEST_PAYLOAD_TYPE = 'application/vnd.xps.hotpatch.manifest+json';

export interface EnvelopeSignature {
  keyid: string;
  /** Raw signature bytes (decoded from the envelope's base64). */
  sig: Uint8Array;
}

export interface Envelope {
  payloadType: string;
  /** Raw payload bytes (decoded from the envelope's base64). */
  payload: Uint8Array;
  signatures: EnvelopeSignature[];
}

const ENVELOPE_FIELDS = new Set(['payloadType', 'payload', 'signatures']);
const SIGNATURE_FIELDS = new Set(['keyid', 'sig']);
// DSSE accepts standard and URL-safe base64; padding optional, but never mixed alphabets.
const BASE64_STD = /^[A-Za-z0-9+/]*={0,2}$/;
const BASE64_URL = /^[A-Za-z0-9_-]*={0,2}$/;
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

/** Strict base64 (standard or URL-safe) → bytes; Buffer.from alone would skip garbage silently. */
export function decodeBase64(value: unknown, field: string): Uint8Array {
  if (typeof value !== 'string') {
    throw new HotPatchError('INVALID', `${field} must be a base64 string, got ${describe(value)}`);
  }
  const std = BASE64_STD.test(value);
  if ((!std && !BASE64_URL.test(value)) || value.replace(/=+$/, '').length % 4 === 1) {
    throw new HotPatchError('INVALID', `${field} is not valid base64`);
  }
  const bytes = Buffer.from(value, std ? 'base64' : 'base64url');
  // Refuse non-canonical encodings (stray trailing bits), so one signature has one spelling.
  const again = bytes.toString(std ? 'base64' : 'base64url').replace(/=+$/, '');
  if (again !== value.replace(/=+$/, '')) {
    throw new HotPatchError('INVALID', `${field} is not canonical base64`);
  }
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function encodeBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

/** Envelope JSON bytes → envelope with decoded payload and signatures. */
export function decodeEnvelope(input: Uint8Array | string): Envelope {
  const value = decodeJson(input, 'envelope');
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new HotPatchError('INVALID', `envelope must be a JSON object, got ${describe(value)}`);
  }
  const obj = value as Record<string, unknown>;
  for (const key of Object.keys(obj)) {
    if (!ENVELOPE_FIELDS.has(key)) throw new HotPatchError('INVALID', `envelope has unknown field ${JSON.stringify(key)}`);
  }
  if (typeof obj.payloadType !== 'string' || obj.payloadType.length === 0) {
    throw new HotPatchError('INVALID', `envelope payloadType must be a non-empty string, got ${describe(obj.payloadType)}`);
  }
  const payload = decodeBase64(obj.payload, 'envelope payload');
  if (!Array.isArray(obj.signatures)) {
    throw new HotPatchError('INVALID', `envelope signatures must be an array, got ${describe(obj.signatures)}`);
  }
  if (obj.signatures.length > MAX_SIGNATURES) {
    throw new HotPatchError('INVALID', `envelope has ${obj.signatures.length} signatures, more than the ${MAX_SIGNATURES} allowed`);
  }
  const signatures = obj.signatures.map((s, i): EnvelopeSignature => {
    if (typeof s !== 'object' || s === null || Array.isArray(s)) {
      throw new HotPatchError('INVALID', `envelope signatures[${i}] must be an object, got ${describe(s)}`);
    }
    const sig = s as Record<string, unknown>;
    for (const key of Object.keys(sig)) {
      if (!SIGNATURE_FIELDS.has(key)) {
        throw new HotPatchError('INVALID', `envelope signatures[${i}] has unknown field ${JSON.stringify(key)}`);
      }
    }
    if (typeof sig.keyid !== 'string' || sig.keyid.length === 0 || sig.keyid.length > MAX_KEYID) {
      throw new HotPatchError('INVALID', `envelope signatures[${i}].keyid must be a non-empty string, got ${describe(sig.keyid)}`);
    }
    return { keyid: sig.keyid, sig: decodeBase64(sig.sig, `envelope signatures[${i}].sig`) };
  });
  return { payloadType: obj.payloadType, payload, signatures };
}

/** Envelope → canonical JSON text (standard base64, fields in DSSE order). */
export function encodeEnvelope(envelope: Envelope): string {
  return `${JSON.stringify(
    {
      payloadType: envelope.payloadType,
      payload: encodeBase64(envelope.payload),
      signatures: envelope.signatures.map((s) => ({ keyid: s.keyid, sig: encodeBase64(s.sig) })),
    },
    null,
    2,
  )}\n`;
}

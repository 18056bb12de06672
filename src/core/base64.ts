import { HotPatchError } from './errors.js';
import { describe } from './json-shape.js';

/*
 * The one base64 decoder for untrusted text. Buffer.from(text, 'base64') alone skips garbage
 * and ignores stray trailing bits silently, so one signature or key would have many spellings;
 * this refuses every string that is not exactly how its bytes encode.
 */

export interface Base64Options {
  /** Also accept the URL-safe alphabet (`-` and `_`), as DSSE does; never both in one string. Default true. */
  urlSafe?: boolean;
  /**
   * `optional` (default): with or without `=` padding, but when present it must be the right
   * amount. `required`: padded to a multiple of 4 characters (RFC 4648 §4, as PEM writes it).
   */
  padding?: 'optional' | 'required';
}

const STANDARD = /^[A-Za-z0-9+/]*={0,2}$/;
const URL_SAFE = /^[A-Za-z0-9_-]*={0,2}$/;

/**
 * Strict, canonical base64 → bytes (a copy, never a view of Buffer's shared pool). INVALID
 * naming `field` for a value that is not a string, a character outside the alphabet (or both
 * alphabets mixed), a wrong length or padding, or non-zero unused trailing bits.
 */
export function decodeBase64(value: unknown, field: string, options: Base64Options = {}): Uint8Array {
  if (typeof value !== 'string') {
    throw new HotPatchError('INVALID', `${field} must be a base64 string, got ${describe(value)}`);
  }
  const standard = STANDARD.test(value);
  const urlSafe = !standard && options.urlSafe !== false && URL_SAFE.test(value);
  const body = value.replace(/=+$/, '');
  const padded = body.length !== value.length;
  if ((!standard && !urlSafe) || body.length % 4 === 1 || (padded && value.length % 4 !== 0)) {
    throw new HotPatchError('INVALID', `${field} is not valid base64`);
  }
  if (options.padding === 'required' && value.length % 4 !== 0) {
    throw new HotPatchError('INVALID', `${field} is not valid base64: it must be padded with "=" to a multiple of 4 characters`);
  }
  const encoding = standard ? 'base64' : 'base64url';
  const bytes = Buffer.from(body, encoding);
  if (bytes.toString(encoding).replace(/=+$/, '') !== body) {
    throw new HotPatchError('INVALID', `${field} is not canonical base64`);
  }
  return new Uint8Array(bytes);
}

/** Bytes → standard, padded base64 (the form every decoder accepts). */
export function encodeBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

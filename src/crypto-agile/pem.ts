import { HotPatchError, decodeBase64, encodeBase64 } from '../core/index.js';

/*
 * PEM and bare base64 for key text. Strict on purpose: exactly one block, canonical base64,
 * no encapsulated headers (an encrypted legacy key would otherwise reach the DER parser as
 * garbage), and a size cap so a hostile trust store cannot make us decode megabytes.
 */

/** Far above any key we accept (a 16384-bit RSA SPKI is under 3 KiB of PEM). */
export const MAX_KEY_TEXT_LENGTH = 64 * 1024;

const PEM_BLOCK = /^-----BEGIN ([A-Z0-9 ]+)-----\r?\n([\s\S]*?)\r?\n?-----END ([A-Z0-9 ]+)-----$/;

export interface DecodedKeyText {
  /** The PEM label, or undefined for bare base64. */
  label: string | undefined;
  der: Uint8Array;
}

export function decodeKeyText(text: string, name: string): DecodedKeyText {
  if (text.length > MAX_KEY_TEXT_LENGTH) {
    throw new HotPatchError('INVALID', `${name} is ${text.length} characters, above the ${MAX_KEY_TEXT_LENGTH} limit`);
  }
  const trimmed = text.trim();
  if (trimmed.startsWith('-----BEGIN ')) {
    const m = PEM_BLOCK.exec(trimmed);
    if (m === null) throw new HotPatchError('INVALID', `${name} is not a single well-formed PEM block`);
    const [, begin, body, end] = m;
    if (body!.includes('-----')) throw new HotPatchError('INVALID', `${name} holds more than one PEM block`);
    if (begin !== end) {
      throw new HotPatchError('INVALID', `${name} PEM block begins as "${begin}" but ends as "${end}"`);
    }
    return { label: begin, der: decodeKeyBase64(body!, name) };
  }
  return { label: undefined, der: decodeKeyBase64(trimmed, name) };
}

/** The base64 of a key, line breaks and blanks ignored: standard alphabet, padded, canonical (core's decoder). */
function decodeKeyBase64(body: string, name: string): Uint8Array {
  const compact = body.replace(/[ \t\r\n]+/g, '');
  if (compact.length === 0) throw new HotPatchError('INVALID', `${name} is empty`);
  return decodeBase64(compact, name, { urlSafe: false, padding: 'required' });
}

export function encodePem(label: string, der: Uint8Array): string {
  const b64 = encodeBase64(der);
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 64) lines.push(b64.slice(i, i + 64));
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

import { HotPatchError } from '../core/index.js';

/*
 * PEM and bare base64 for key text. Strict on purpose: exactly one block, canonical base64,
 * no encapsulated headers (an encrypted legacy key would otherwise reach the DER parser as
 * garbage), and a size cap so a hostile trust store cannot make us decode megabytes.
 */

/** Far above any key we accept (a 16384-bit RSA SPKI is under 3 KiB of PEM). */
export const MAX_KEY_TEXT_LENGTH = 64 * 1024;

const PEM_BLOCK = /^-----BEGIN ([A-Z0-9 ]+)-----\r?\n([\s\S]*?)\r?\n?-----END ([A-Z0-9 ]+)-----$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

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
    return { label: begin, der: decodeBase64(body!, name) };
  }
  return { label: undefined, der: decodeBase64(trimmed, name) };
}

function decodeBase64(body: string, name: string): Uint8Array {
  const compact = body.replace(/[ \t\r\n]+/g, '');
  if (compact.length === 0) throw new HotPatchError('INVALID', `${name} is empty`);
  if (!BASE64.test(compact)) throw new HotPatchError('INVALID', `${name} is neither PEM nor canonical base64`);
  const bytes = Buffer.from(compact, 'base64');
  // Non-zero padding bits would give one DER many texts; refuse rather than normalise.
  if (bytes.toString('base64') !== compact) {
    throw new HotPatchError('INVALID', `${name} is not canonical base64`);
  }
  // A copy, not a view: small Buffers share a pool with unrelated data.
  return new Uint8Array(bytes);
}

export function encodePem(label: string, der: Uint8Array): string {
  const b64 = Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 64) lines.push(b64.slice(i, i + 64));
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

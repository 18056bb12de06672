import { generateKeyPair, type PrivateKey, type PublicKey, type SignatureAlgorithm } from '../../src/crypto-agile/index.js';

/** Asserts that `fn` throws a HotPatchError with `code` (and, when given, a message matching `message`). */
export { throwsCode } from '../support/assertions.js';

export function hex(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text.replace(/\s+/g, ''), 'hex'));
}

export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}

export function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64');
}

export function pem(label: string, der: Uint8Array): string {
  const lines = toBase64(der).match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts));
}

/** An independent, minimal DER writer for building test inputs (definite lengths only). */
export function tlv(tag: number, ...parts: Uint8Array[]): Uint8Array {
  const body = concat(...parts);
  const n = body.length;
  const len = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : n < 0x10000 ? [0x82, n >> 8, n & 0xff] : [0x83, n >> 16, (n >> 8) & 0xff, n & 0xff];
  return concat(Uint8Array.of(tag, ...len), body);
}

export const utf8 = (text: string): Uint8Array => new TextEncoder().encode(text);

/** Returns a copy of `bytes` with bit `bit` (0 = lowest bit of byte 0) flipped. */
export function flipBit(bytes: Uint8Array, bit: number): Uint8Array {
  const out = bytes.slice();
  const i = Math.floor(bit / 8);
  out[i] = out[i]! ^ (1 << (bit % 8));
  return out;
}

const pairs = new Map<SignatureAlgorithm, { privateKey: PrivateKey; publicKey: PublicKey }>();

/** One key pair per algorithm per test process (RSA 2048 to keep the suite fast). */
export function keyPair(alg: SignatureAlgorithm): { privateKey: PrivateKey; publicKey: PublicKey } {
  let pair = pairs.get(alg);
  if (pair === undefined) {
    pair = generateKeyPair(alg, { rsaBits: 2048 });
    pairs.set(alg, pair);
  }
  return pair;
}

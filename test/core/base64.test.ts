/*
 * The one strict base64 decoder (core/base64.ts): every byte string has exactly the spellings
 * the options allow, and every other string is INVALID.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { decodeBase64, encodeBase64, type Base64Options } from '../../src/core/index.js';
import { outcomeOf, throwsCode } from '../support/assertions.js';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const PEM: Base64Options = { urlSafe: false, padding: 'required' };

const bare = (text: string): string => text.replace(/=+$/, '');
const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;

test('for any bytes, their standard and URL-safe encodings, padded or not, decode back to them', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
      const standard = encodeBase64(bytes);
      const urlSafe = Buffer.from(bytes).toString('base64url');
      const urlPadded = urlSafe.padEnd(standard.length, '=');
      for (const spelling of [standard, bare(standard), urlSafe, urlPadded]) {
        assert.ok(same(decodeBase64(spelling, 'sig'), bytes), spelling);
      }
      assert.ok(same(decodeBase64(standard, 'key', PEM), bytes));
      if (standard !== bare(standard)) throwsCode(() => decodeBase64(bare(standard), 'key', PEM), 'INVALID', /must be padded/);
      if (/[-_]/.test(urlSafe)) throwsCode(() => decodeBase64(urlSafe, 'key', PEM), 'INVALID', /^key is not valid base64$/);
    }),
    { numRuns: 500 },
  );
});

test('for any string, decodeBase64 either refuses it with INVALID or it is the one canonical spelling of what it returns', () => {
  const chars = fc.constantFrom(...`${ALPHABET}-_= .!\n`.split(''));
  fc.assert(
    fc.property(fc.oneof(fc.string({ unit: chars, maxLength: 24 }), fc.string({ maxLength: 24 })), fc.boolean(), (text, pem) => {
      const out = outcomeOf(() => decodeBase64(text, 'payload', pem ? PEM : {}));
      if (!out.ok) {
        assert.equal(out.error.code, 'INVALID');
        assert.match(out.error.message, /^payload (is not (valid|canonical) base64|must be a base64 string)/);
        return;
      }
      const urlSafe = /[-_]/.test(text);
      assert.equal(
        Buffer.from(out.value)
          .toString(urlSafe ? 'base64url' : 'base64')
          .replace(/=+$/, ''),
        bare(text),
      );
      // Padding, when written, is exactly the amount the length calls for.
      if (text !== bare(text) || pem) assert.equal(text.length % 4, 0);
      assert.ok(!(urlSafe && /[+/]/.test(text)), 'never both alphabets');
    }),
    { numRuns: 2000 },
  );
});

test('for any bytes whose encoding has unused trailing bits, setting one of them makes the text INVALID', () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 1, maxLength: 64 }).filter((b) => b.length % 3 !== 0),
      fc.boolean(),
      (bytes, padded) => {
        const body = bare(encodeBase64(bytes));
        const last = ALPHABET.indexOf(body.at(-1)!);
        // 1 byte left over: 4 unused bits; 2 bytes: 2 unused bits. The lowest is always unused.
        const flipped = `${body.slice(0, -1)}${ALPHABET[last ^ 1]}`;
        throwsCode(
          () => decodeBase64(padded ? flipped.padEnd(body.length + ((4 - (body.length % 4)) % 4), '=') : flipped, 'sig'),
          'INVALID',
          /^sig is not canonical base64$/,
        );
      },
    ),
    { numRuns: 300 },
  );
});

test('for any bytes, the result is a copy that owns its memory, not a view of a shared pool', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
      const out = decodeBase64(encodeBase64(bytes), 'sig');
      assert.equal(out.byteOffset, 0);
      assert.equal(out.buffer.byteLength, out.byteLength);
    }),
  );
});

test('wrong padding, mixed alphabets, impossible lengths and non-strings are INVALID, named', () => {
  throwsCode(() => decodeBase64('QQ=', 'sig'), 'INVALID', /^sig is not valid base64$/);
  throwsCode(() => decodeBase64('QUI==', 'sig'), 'INVALID', /^sig is not valid base64$/);
  throwsCode(() => decodeBase64('QUJD=', 'sig'), 'INVALID', /^sig is not valid base64$/);
  throwsCode(() => decodeBase64('+-AA', 'sig'), 'INVALID', /^sig is not valid base64$/);
  throwsCode(() => decodeBase64('AAAAA', 'sig'), 'INVALID', /^sig is not valid base64$/);
  throwsCode(() => decodeBase64('QQ==\n', 'sig'), 'INVALID', /^sig is not valid base64$/);
  throwsCode(() => decodeBase64(null, 'sig'), 'INVALID', /^sig must be a base64 string, got null$/);
  throwsCode(() => decodeBase64(new Uint8Array(4), 'sig'), 'INVALID', /^sig must be a base64 string, got an instance of Uint8Array$/);
  assert.deepEqual([...decodeBase64('', 'sig')], []);
});

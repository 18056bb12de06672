/*
 * The OAEP decoding used after a token's raw RSA decryption: it gives back exactly what node's
 * RSA-OAEP-SHA256 encryption put in (messages of every length it allows, with or without the
 * leading zero byte a raw decryption may drop), and refuses a block changed anywhere, another
 * label, or another hash — the same `undefined` for each.
 */
import assert from 'node:assert/strict';
import { constants, generateKeyPairSync, privateDecrypt, publicEncrypt } from 'node:crypto';
import { test } from 'node:test';
import fc from 'fast-check';
import { oaepDecodeSha256 } from '../../src/keys/oaep-decode.js';

const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const K = 256;
const raw = (block: Buffer): Buffer => privateDecrypt({ key: privateKey, padding: constants.RSA_NO_PADDING }, block);
const encrypt = (message: Uint8Array, options: { oaepHash?: string; oaepLabel?: Buffer } = {}): Buffer =>
  publicEncrypt({ key: publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: options.oaepHash ?? 'sha256', ...options }, message);

test('OAEP-SHA256 decoding returns what was encrypted, for every message length OAEP allows', () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 0, maxLength: K - 2 * 32 - 2 }), (message) => {
      const em = raw(encrypt(message));
      assert.deepEqual(Buffer.from(oaepDecodeSha256(em, K)!), Buffer.from(message));
      // A raw decryption that dropped the leading zero byte decodes the same.
      assert.equal(em[0], 0);
      assert.deepEqual(Buffer.from(oaepDecodeSha256(em.subarray(1), K)!), Buffer.from(message));
    }),
    { numRuns: 60 },
  );
});

test('a block changed in any byte, another label or another hash does not decode', () => {
  const secret = new Uint8Array(32).fill(7);
  fc.assert(
    fc.property(fc.integer({ min: 0, max: K - 1 }), fc.integer({ min: 1, max: 255 }), (at, flip) => {
      const em = raw(encrypt(secret));
      em[at]! ^= flip;
      assert.equal(oaepDecodeSha256(em, K), undefined);
    }),
    { numRuns: 80 },
  );
  assert.equal(oaepDecodeSha256(raw(encrypt(secret, { oaepLabel: Buffer.from('a label') })), K), undefined);
  assert.equal(oaepDecodeSha256(raw(encrypt(secret, { oaepHash: 'sha1' })), K), undefined);
  assert.equal(oaepDecodeSha256(new Uint8Array(K + 1), K), undefined, 'longer than the modulus');
  assert.equal(oaepDecodeSha256(new Uint8Array(K), K), undefined, 'all zeros');
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { SIGNATURE_ALGORITHMS, hashBytes, hashProvider, HASH_ALGORITHMS, sign, verifySignature } from '../../src/crypto-agile/index.js';
import { flipBit, keyPair, toHex } from './helpers.js';

// RSA and ML-DSA signing costs milliseconds per run, so those get fewer runs.
const RUNS = { ed25519: 100, 'ecdsa-p256-sha256': 100, 'rsa-pss-sha256': 20, 'ml-dsa-65': 20 } as const;

for (const alg of SIGNATURE_ALGORITHMS) {
  test(`for any ${alg} message, the signature verifies and one flipped bit anywhere makes it fail`, () => {
    const { privateKey, publicKey } = keyPair(alg);
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 512 }), fc.boolean(), fc.nat(), (message, inMessage, position) => {
        const signature = sign(privateKey, message);
        assert.equal(verifySignature(publicKey, message, signature), true);
        if (inMessage) {
          assert.equal(verifySignature(publicKey, flipBit(message, position % (message.length * 8)), signature), false);
        } else {
          assert.equal(verifySignature(publicKey, message, flipBit(signature, position % (signature.length * 8))), false);
        }
      }),
      { numRuns: RUNS[alg] },
    );
  });
}

test('for any random bytes offered as a signature, verification returns false without throwing', () => {
  fc.assert(
    fc.property(fc.constantFrom(...SIGNATURE_ALGORITHMS), fc.uint8Array({ maxLength: 4000 }), (alg, garbage) => {
      assert.equal(verifySignature(keyPair(alg).publicKey, Uint8Array.of(1, 2, 3), garbage), false);
    }),
    { numRuns: 200 },
  );
});

const SIGNATURE_LENGTH = { ed25519: 64, 'ecdsa-p256-sha256': 72, 'rsa-pss-sha256': 256, 'ml-dsa-65': 3309 } as const;

test("for any random bytes of exactly a signature's length, verification returns false without throwing", () => {
  fc.assert(
    fc.property(
      fc
        .constantFrom(...SIGNATURE_ALGORITHMS)
        .chain((alg) => fc.tuple(fc.constant(alg), fc.uint8Array({ minLength: SIGNATURE_LENGTH[alg], maxLength: SIGNATURE_LENGTH[alg] }))),
      ([alg, garbage]) => {
        assert.equal(verifySignature(keyPair(alg).publicKey, Uint8Array.of(1, 2, 3), garbage), false);
      },
    ),
    { numRuns: 100 },
  );
});

test('for any split of the input, streaming hashing equals one-shot hashing', () => {
  fc.assert(
    fc.property(fc.constantFrom(...HASH_ALGORITHMS), fc.uint8Array({ maxLength: 1024 }), fc.nat(), (alg, data, cut) => {
      const at = data.length === 0 ? 0 : cut % (data.length + 1);
      const hasher = hashProvider(alg).create();
      hasher.update(data.subarray(0, at));
      hasher.update(data.subarray(at));
      assert.equal(toHex(hasher.digest()), toHex(hashBytes(alg, data)));
    }),
  );
});

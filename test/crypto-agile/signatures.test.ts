import assert from 'node:assert/strict';
import { constants, createPrivateKey, sign as nodeSign } from 'node:crypto';
import { test } from 'node:test';
import {
  SIGNATURE_ALGORITHMS,
  generateKeyPair,
  importPrivateKey,
  importPublicKey,
  sign,
  signatureProvider,
  verifySignature,
} from '../../src/crypto-agile/index.js';
import { concat, flipBit, hex, keyPair, pem, throwsCode, toHex, utf8 } from './helpers.js';

const message = utf8('DSSEv1 49 application/vnd.xps.hotpatch.manifest+json 2 {}');

for (const alg of SIGNATURE_ALGORITHMS) {
  test(`an ${alg} signature verifies under the matching public key`, () => {
    const { privateKey, publicKey } = keyPair(alg);
    assert.equal(verifySignature(publicKey, message, sign(privateKey, message)), true);
  });

  test(`an ${alg} signature does not verify for a tampered message`, () => {
    const { privateKey, publicKey } = keyPair(alg);
    const signature = sign(privateKey, message);
    assert.equal(verifySignature(publicKey, flipBit(message, 3), signature), false);
  });

  test(`an ${alg} signature with one flipped bit does not verify`, () => {
    const { privateKey, publicKey } = keyPair(alg);
    const signature = sign(privateKey, message);
    for (const bit of [0, 8 * Math.floor(signature.length / 2) + 5, 8 * signature.length - 1]) {
      assert.equal(verifySignature(publicKey, message, flipBit(signature, bit)), false, `bit ${bit}`);
    }
  });

  test(`garbage, empty and truncated ${alg} signatures return false instead of throwing`, () => {
    const { privateKey, publicKey } = keyPair(alg);
    const signature = sign(privateKey, message);
    const candidates = [
      new Uint8Array(0),
      new Uint8Array(1),
      signature.subarray(0, signature.length - 1),
      signature.subarray(1),
      concat(signature, Uint8Array.of(0)),
      new Uint8Array(signature.length).fill(0xff),
      new Uint8Array(signature.length),
      utf8('not a signature at all'),
    ];
    for (const candidate of candidates) {
      assert.equal(verifySignature(publicKey, message, candidate), false, `length ${candidate.length}`);
    }
  });

  test(`an ${alg} signature does not verify under another key of the same algorithm`, () => {
    const { privateKey } = keyPair(alg);
    const stranger = generateKeyPair(alg, { rsaBits: 2048 }).publicKey;
    assert.equal(verifySignature(stranger, message, sign(privateKey, message)), false);
  });

  test(`the ${alg} provider refuses keys of the other algorithms`, () => {
    const provider = signatureProvider(alg);
    for (const other of SIGNATURE_ALGORITHMS.filter((a) => a !== alg)) {
      const { privateKey, publicKey } = keyPair(other);
      throwsCode(() => provider.sign(privateKey, message), 'INVALID', new RegExp(`${other} key`));
      throwsCode(() => provider.verify(publicKey, message, sign(privateKey, message)), 'INVALID');
    }
  });
}

test('signing and verifying refuse a message that is not a Uint8Array, naming the argument', () => {
  const { privateKey, publicKey } = keyPair('ed25519');
  throwsCode(() => sign(privateKey, 'text' as unknown as Uint8Array), 'INVALID', /^message must be a Uint8Array/);
  throwsCode(() => verifySignature(publicKey, [1, 2] as unknown as Uint8Array, new Uint8Array(64)), 'INVALID', /^message/);
  throwsCode(() => verifySignature(publicKey, message, 'sig' as unknown as Uint8Array), 'INVALID', /^signature/);
});

test('signing and verifying refuse something that is not a key object', () => {
  const { publicKey } = keyPair('ed25519');
  throwsCode(() => sign(publicKey as never, message), 'INVALID', /^key must be a PrivateKey/);
  throwsCode(() => verifySignature({ alg: 'ed25519' } as never, message, new Uint8Array(64)), 'INVALID', /^key must be a PublicKey/);
});

test('an unknown signature algorithm name is ALGORITHM_DISALLOWED', () => {
  throwsCode(() => signatureProvider('rsa-pkcs1-sha1'), 'ALGORITHM_DISALLOWED', /rsa-pkcs1-sha1/);
  throwsCode(() => signatureProvider('ED25519'), 'ALGORITHM_DISALLOWED');
});

test('each provider reports the algorithm it was asked for', () => {
  for (const alg of SIGNATURE_ALGORITHMS) assert.equal(signatureProvider(alg).alg, alg);
});

// RFC 8032 section 7.1, TEST 1.
const RFC8032_SECRET = '9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60';
const RFC8032_PUBLIC = 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a';
const RFC8032_SIGNATURE = 'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b';
const ED25519_PKCS8_PREFIX = '302e020100300506032b657004220420';
const ED25519_SPKI_PREFIX = '302a300506032b6570032100';

test('ed25519 reproduces the RFC 8032 test 1 signature of the empty message', () => {
  const privateKey = importPrivateKey(pem('PRIVATE KEY', hex(ED25519_PKCS8_PREFIX + RFC8032_SECRET)));
  assert.equal(privateKey.alg, 'ed25519');
  assert.equal(toHex(sign(privateKey, new Uint8Array(0))), RFC8032_SIGNATURE);
});

test('ed25519 derives the RFC 8032 test 1 public key from its secret', () => {
  const privateKey = importPrivateKey(pem('PRIVATE KEY', hex(ED25519_PKCS8_PREFIX + RFC8032_SECRET)));
  assert.equal(toHex(privateKey.publicKey().spki), ED25519_SPKI_PREFIX + RFC8032_PUBLIC);
});

test('ed25519 verifies the RFC 8032 test 1 signature and rejects it for a non-empty message', () => {
  const publicKey = importPublicKey('ed25519', pem('PUBLIC KEY', hex(ED25519_SPKI_PREFIX + RFC8032_PUBLIC)));
  assert.equal(verifySignature(publicKey, new Uint8Array(0), hex(RFC8032_SIGNATURE)), true);
  assert.equal(verifySignature(publicKey, Uint8Array.of(0), hex(RFC8032_SIGNATURE)), false);
});

test('ml-dsa-65 signatures are hedged: two signatures of one message differ and both verify', () => {
  const { privateKey, publicKey } = keyPair('ml-dsa-65');
  const a = sign(privateKey, message);
  const b = sign(privateKey, message);
  assert.notDeepEqual(a, b);
  assert.equal(verifySignature(publicKey, message, a), true);
  assert.equal(verifySignature(publicKey, message, b), true);
});

test('signatures come back as plain Uint8Array, not Buffer', () => {
  for (const alg of SIGNATURE_ALGORITHMS) {
    const signature = sign(keyPair(alg).privateKey, message);
    assert.equal(Object.getPrototypeOf(signature), Uint8Array.prototype, alg);
  }
});

test('an ECDSA P-256 signature verifies only in DER form, not as raw r‖s (IEEE P1363)', () => {
  const { privateKey, publicKey } = keyPair('ecdsa-p256-sha256');
  const key = createPrivateKey(privateKey.toPem());
  const der = nodeSign('sha256', message, { key, dsaEncoding: 'der' });
  const raw = nodeSign('sha256', message, { key, dsaEncoding: 'ieee-p1363' });
  assert.equal(raw.length, 64);
  assert.equal(verifySignature(publicKey, message, der), true);
  assert.equal(verifySignature(publicKey, message, raw), false);
});

test('an RSA-PSS signature verifies only with a 32-byte salt, whatever salt length would also fit', () => {
  const { privateKey, publicKey } = keyPair('rsa-pss-sha256');
  const key = createPrivateKey(privateKey.toPem());
  const withSalt = (saltLength: number): Uint8Array => nodeSign('sha256', message, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength });
  assert.equal(verifySignature(publicKey, message, withSalt(32)), true);
  for (const saltLength of [0, 20, 64]) assert.equal(verifySignature(publicKey, message, withSalt(saltLength)), false, `salt ${saltLength}`);
  // PKCS#1 v1.5 padding is refused too.
  assert.equal(verifySignature(publicKey, message, nodeSign('sha256', message, { key, padding: constants.RSA_PKCS1_PADDING })), false);
});

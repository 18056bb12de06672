import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { generateKeyPair } from '../../src/crypto-agile/index.js';
import { distinctValidKeys, parseTrustStore, trustForTarget, type CheckedSignature } from '../../src/verification/index.js';
import { assertCode, makeKey, trustDoc } from './fixtures.js';

const a = makeKey('a');
const b = makeKey('b', 'ecdsa-p256-sha256');

test('a trust store loads from PEM and from base64 SPKI alike', () => {
  const spki = Buffer.from(generateKeyPair('ed25519').publicKey.spki).toString('base64');
  const store = parseTrustStore({ keys: { a: { alg: 'ed25519', public_key: a.publicPem }, c: { alg: 'ed25519', public_key: spki } }, threshold: 2 });
  assert.equal(store.keys.size, 2);
  assert.equal(store.root.threshold, 2);
});

test('a threshold of 0, or above the number of distinct keys, is refused at load', () => {
  assert.throws(() => parseTrustStore(trustDoc([a, b], 0)), assertCode('INVALID'));
  assert.throws(() => parseTrustStore(trustDoc([a, b], 3)), assertCode('INVALID'));
  const alias = { ...a, keyid: 'a2' };
  assert.throws(() => parseTrustStore(trustDoc([a, alias], 2)), assertCode('INVALID'));
});

test('a key whose declared algorithm is not its own is refused; an unknown algorithm is ALGORITHM_DISALLOWED', () => {
  assert.throws(() => parseTrustStore({ keys: { a: { alg: 'ecdsa-p256-sha256', public_key: a.publicPem } }, threshold: 1 }), assertCode('INVALID'));
  assert.throws(() => parseTrustStore({ keys: { a: { alg: 'dsa', public_key: a.publicPem } }, threshold: 1 }), assertCode('ALGORITHM_DISALLOWED'));
});

test('unknown fields, rules naming missing keys and bad patterns are INVALID; broken JSON is PARSE', () => {
  assert.throws(() => parseTrustStore({ ...trustDoc([a], 1), extra: 1 }), assertCode('INVALID'));
  assert.throws(() => parseTrustStore(trustDoc([a], 1, { rules: [{ targets: ['x.*'], threshold: 1, keys: ['zz'] }] })), assertCode('INVALID'));
  assert.throws(() => parseTrustStore(trustDoc([a], 1, {}, { a: ['x/(.*)'] })), assertCode('INVALID'));
  assert.throws(() => parseTrustStore('{"keys":'), assertCode('PARSE'));
});

test('per-key target patterns and the first matching rule decide which keys count for a target', () => {
  const store = parseTrustStore(trustDoc([a, b], 1, { rules: [{ targets: ['xps.crypto.*'], threshold: 1, keys: ['a'] }] }, { b: ['xps.net.*'] }));
  assert.deepEqual([...trustForTarget(store, 'xps.crypto.hash').authorized], ['a']);
  assert.deepEqual([...trustForTarget(store, 'xps.net.tls').authorized], ['a', 'b']);
  assert.deepEqual([...trustForTarget(store, 'xps.cryptography.x').authorized], ['a']);
});

test('property: the threshold count equals the number of distinct fingerprints among valid admitted signatures', () => {
  const statuses = ['valid', 'unknown-key', 'algorithm-disallowed', 'bad-signature'] as const;
  const keyids = ['k1', 'k2', 'k3', 'k4', 'k5'] as const;
  // Each key id stands for one public key; several ids may share one (aliases).
  const fingerprintOf = fc.tuple(...keyids.map(() => fc.constantFrom('f1', 'f2', 'f3')));
  const sigArb = fc.record({ keyid: fc.constantFrom(...keyids), status: fc.constantFrom(...statuses) });
  fc.assert(
    fc.property(fingerprintOf, fc.array(sigArb, { maxLength: 20 }), fc.subarray([...keyids]), (fps, sigs, admitted) => {
      const fp = (id: string): string => fps[keyids.indexOf(id as (typeof keyids)[number])]!;
      const checked: CheckedSignature[] = sigs.map((s) => ({ ...s, fingerprint: fp(s.keyid) }));
      const counted = distinctValidKeys(checked, (id) => admitted.includes(id as (typeof keyids)[number]));
      const expected = new Set(sigs.filter((s) => s.status === 'valid' && admitted.includes(s.keyid)).map((s) => fp(s.keyid)));
      const countedFps = counted.map(fp);
      return counted.length === expected.size && new Set(countedFps).size === countedFps.length && countedFps.every((f) => expected.has(f));
    }),
    { numRuns: 1000 },
  );
});

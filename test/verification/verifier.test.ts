import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CryptoPolicy } from '../../src/crypto-agile/index.js';
import { DefaultVerifier } from '../../src/verification/index.js';
import { PAYLOAD, assertCode, chunksOf, envelopeBytes, makeKey, manifestFor, trust } from './fixtures.js';

const a = makeKey('team-key-1');
const b = makeKey('build-bot', 'ecdsa-p256-sha256');
const c = makeKey('pq-officer', 'ml-dsa-65');
const stranger = makeKey('stranger');

test('a manifest signed by 2 of 3 trusted keys of different algorithms verifies, payload included', async () => {
  const verifier = new DefaultVerifier(trust([a, b, c], 2));
  const verified = verifier.verifyEnvelope(envelopeBytes(manifestFor(), [b, c]));
  assert.deepEqual(verified.signers, ['build-bot', 'pq-officer']);
  assert.equal(verified.threshold, 2);
  await verifier.verifyPayload(verified, chunksOf(PAYLOAD));
});

test('one valid signature of two required is THRESHOLD_NOT_MET and says how far off it was', () => {
  const verifier = new DefaultVerifier(trust([a, b, c], 2));
  assert.throws(
    () => verifier.verifyEnvelope(envelopeBytes(manifestFor(), [a])),
    (e: unknown) => assertCode('THRESHOLD_NOT_MET')(e) && /signed by 1 of 2 required keys/.test((e as Error).message),
  );
});

test('the same signature twice counts once', () => {
  const bytes = envelopeBytes(manifestFor(), [a, a]);
  assert.throws(() => new DefaultVerifier(trust([a, b], 2)).verifyEnvelope(bytes), assertCode('THRESHOLD_NOT_MET'));
});

test('one key under two key ids counts once', () => {
  const alias = { ...a, keyid: 'alias-of-team-key-1' };
  const bytes = envelopeBytes(manifestFor(), [a, alias]);
  assert.throws(() => new DefaultVerifier(trust([a, alias, b], 2)).verifyEnvelope(bytes), assertCode('THRESHOLD_NOT_MET'));
});

test('signatures only by untrusted keys are UNTRUSTED_KEY', () => {
  assert.throws(() => new DefaultVerifier(trust([a, b], 1)).verifyEnvelope(envelopeBytes(manifestFor(), [stranger])), assertCode('UNTRUSTED_KEY'));
});

test('a trusted key id with a signature that does not verify is BAD_SIGNATURE', () => {
  const forged = { ...stranger, keyid: 'team-key-1' };
  assert.throws(() => new DefaultVerifier(trust([a, b], 1)).verifyEnvelope(envelopeBytes(manifestFor(), [forged])), assertCode('BAD_SIGNATURE'));
});

test('a valid signature over another payloadType does not count', () => {
  const bytes = envelopeBytes(manifestFor(), [a], { signedType: 'application/vnd.other+json' });
  assert.throws(() => new DefaultVerifier(trust([a], 1)).verifyEnvelope(bytes), assertCode('BAD_SIGNATURE'));
  const relabelled = envelopeBytes(manifestFor(), [a], { payloadType: 'application/vnd.other+json' });
  assert.throws(() => new DefaultVerifier(trust([a], 1)).verifyEnvelope(relabelled), assertCode('INVALID'));
});

test('a key limited to other targets does not count for this one (UNTRUSTED_KEY)', () => {
  const store = trust([a, b], 2, {}, { 'team-key-1': ['xps.net.*'] });
  assert.throws(() => new DefaultVerifier(store).verifyEnvelope(envelopeBytes(manifestFor(), [a, b])), assertCode('UNTRUSTED_KEY'));
});

test('the first matching rule sets the threshold and the keys that may count', () => {
  const store = trust([a, b, c], 1, { rules: [{ targets: ['xps.crypto.hash.*'], threshold: 2, keys: ['team-key-1', 'build-bot'] }] });
  const verifier = new DefaultVerifier(store);
  assert.throws(() => verifier.verifyEnvelope(envelopeBytes(manifestFor(), [a, c])), assertCode('UNTRUSTED_KEY'));
  assert.equal(verifier.verifyEnvelope(envelopeBytes(manifestFor(), [a, b])).threshold, 2);
  assert.equal(verifier.verifyEnvelope(envelopeBytes(manifestFor({ target: 'xps.net.tls' }), [c])).threshold, 1);
});

test('when the manifest names its signers, other keys do not count', () => {
  const bytes = envelopeBytes(manifestFor({ signers: ['pq-officer', 'build-bot'] }), [a, b]);
  assert.throws(() => new DefaultVerifier(trust([a, b, c], 2)).verifyEnvelope(bytes), assertCode('THRESHOLD_NOT_MET'));
});

test('freshness uses one reference time with a configurable skew', () => {
  const now = Date.now();
  const future = manifestFor({ created_at: new Date(now + 30_000).toISOString() });
  const verifier = new DefaultVerifier(trust([a], 1), { clockSkewMs: 60_000 });
  verifier.verifyEnvelope(envelopeBytes(future, [a]), { now });
  const strict = new DefaultVerifier(trust([a], 1), { clockSkewMs: 0 });
  assert.throws(() => strict.verifyEnvelope(envelopeBytes(future, [a]), { now }), assertCode('NOT_YET_VALID'));
  const old = manifestFor({ created_at: '2020-01-01T00:00:00Z', expires: '2021-01-01T00:00:00Z' });
  assert.throws(
    () => strict.verifyEnvelope(envelopeBytes(old, [a]), { now }),
    (e: unknown) => assertCode('EXPIRED')(e) && /expired \d+d ago/.test((e as Error).message),
  );
});

test('a version below the highest recorded one is DOWNGRADE; the same version is allowed', () => {
  const verifier = new DefaultVerifier(trust([a], 1));
  const bytes = envelopeBytes(manifestFor({ version: '1.2.3' }), [a]);
  assert.throws(() => verifier.verifyEnvelope(bytes, { highestVersion: '1.10.0' }), assertCode('DOWNGRADE'));
  verifier.verifyEnvelope(bytes, { highestVersion: '1.2.3' });
  assert.throws(
    () => verifier.verifyEnvelope(bytes, { highestVersion: (t) => (t === 'xps.crypto.hash.sha256' ? '2.0.0' : undefined) }),
    assertCode('DOWNGRADE'),
  );
});

test('an algorithm switched off at runtime stops counting, and switching it back restores it', () => {
  const policy = new CryptoPolicy();
  const verifier = new DefaultVerifier(trust([a, b], 1), { cryptoPolicy: policy });
  const bytes = envelopeBytes(manifestFor(), [a]);
  verifier.verifyEnvelope(bytes);
  policy.set('xps.crypto.*', { signatures: ['ecdsa-p256-sha256', 'ml-dsa-65'] });
  assert.throws(() => verifier.verifyEnvelope(bytes), assertCode('ALGORITHM_DISALLOWED'));
  policy.delete('xps.crypto.*');
  verifier.verifyEnvelope(bytes);
});

test('a disallowed or unknown payload hash algorithm is refused before any payload byte is read', () => {
  const policy = new CryptoPolicy();
  policy.set('xps.crypto.hash.sha256', { hashes: ['sha384'] });
  const verifier = new DefaultVerifier(trust([a], 1), { cryptoPolicy: policy });
  assert.throws(() => verifier.verifyEnvelope(envelopeBytes(manifestFor(), [a])), assertCode('ALGORITHM_DISALLOWED'));
  const md5 = manifestFor({ payload_hash: `md5:${'00'.repeat(16)}` });
  assert.throws(() => new DefaultVerifier(trust([a], 1)).verifyEnvelope(envelopeBytes(md5, [a])), assertCode('ALGORITHM_DISALLOWED'));
  const short = manifestFor({ payload_hash: `sha256:${'00'.repeat(16)}` });
  assert.throws(() => new DefaultVerifier(trust([a], 1)).verifyEnvelope(envelopeBytes(short, [a])), assertCode('INVALID'));
});

test('a payload one byte longer or shorter than payload_size is SIZE_MISMATCH, other bytes HASH_MISMATCH', async () => {
  const verifier = new DefaultVerifier(trust([a], 1));
  const verified = verifier.verifyEnvelope(envelopeBytes(manifestFor(), [a]));
  const longer = new Uint8Array([...PAYLOAD, 0x0a]);
  await assert.rejects(verifier.verifyPayload(verified, chunksOf(longer)), assertCode('SIZE_MISMATCH'));
  await assert.rejects(verifier.verifyPayload(verified, chunksOf(PAYLOAD.subarray(1))), assertCode('SIZE_MISMATCH'));
  const flipped = PAYLOAD.slice();
  flipped[3] = flipped[3]! ^ 1;
  await assert.rejects(verifier.verifyPayload(verified, chunksOf(flipped)), assertCode('HASH_MISMATCH'));
});

test('an endless payload is abandoned one byte past payload_size', async () => {
  const verifier = new DefaultVerifier(trust([a], 1));
  const verified = verifier.verifyEnvelope(envelopeBytes(manifestFor(), [a]));
  let produced = 0;
  async function* endless(): AsyncIterable<Uint8Array> {
    for (;;) {
      produced += 1;
      yield new Uint8Array(1);
    }
  }
  await assert.rejects(verifier.verifyPayload(verified, endless()), assertCode('SIZE_MISMATCH'));
  assert.equal(produced, PAYLOAD.length + 1);
});

test('the check order is fixed: a bad signature is reported before expiry and downgrade', () => {
  const old = manifestFor({ created_at: '2020-01-01T00:00:00Z', expires: '2021-01-01T00:00:00Z', version: '0.0.1' });
  const verifier = new DefaultVerifier(trust([a, b], 2));
  assert.throws(() => verifier.verifyEnvelope(envelopeBytes(old, [a]), { highestVersion: '9.9.9' }), assertCode('THRESHOLD_NOT_MET'));
  assert.throws(() => verifier.verifyEnvelope(envelopeBytes(old, [a, b]), { highestVersion: '9.9.9' }), assertCode('EXPIRED'));
});

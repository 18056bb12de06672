import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isHotPatchError } from '../../src/core/index.js';
import { CryptoPolicy, HASH_ALGORITHMS, SIGNATURE_ALGORITHMS, defaultCryptoPolicy } from '../../src/crypto-agile/index.js';
import { keyPair, throwsCode } from './helpers.js';

const TARGET = 'xps.crypto.hash.sha256';

test('the default policy allows all four signature algorithms and hashes with a 2048-bit RSA floor', () => {
  assert.deepEqual(defaultCryptoPolicy.ruleFor(TARGET), {
    signatures: [...SIGNATURE_ALGORITHMS],
    hashes: [...HASH_ALGORITHMS],
    minRsaBits: 2048,
  });
  for (const alg of SIGNATURE_ALGORITHMS) defaultCryptoPolicy.assertSignatureAllowed(TARGET, keyPair(alg).publicKey);
  for (const alg of HASH_ALGORITHMS) defaultCryptoPolicy.assertHashAllowed(TARGET, alg);
});

test('an algorithm disallowed at runtime is refused, then accepted again once re-allowed', () => {
  const policy = new CryptoPolicy();
  const key = keyPair('ed25519').publicKey;
  policy.assertSignatureAllowed(TARGET, key);
  policy.setDefault({ signatures: ['ecdsa-p256-sha256', 'ml-dsa-65'] });
  throwsCode(() => policy.assertSignatureAllowed(TARGET, key), 'ALGORITHM_DISALLOWED');
  policy.setDefault({ signatures: ['ed25519', 'ecdsa-p256-sha256', 'ml-dsa-65'] });
  policy.assertSignatureAllowed(TARGET, key);
});

test('a refused signature algorithm is named together with the component and what is allowed', () => {
  const policy = new CryptoPolicy({ defaults: { signatures: ['ml-dsa-65'] } });
  throwsCode(
    () => policy.assertSignatureAllowed(TARGET, keyPair('ed25519').publicKey),
    'ALGORITHM_DISALLOWED',
    /^signature algorithm ed25519 is not allowed for xps\.crypto\.hash\.sha256 \(allowed: ml-dsa-65\)$/,
  );
});

test('a component-specific rule beats the default', () => {
  const policy = new CryptoPolicy();
  policy.set(TARGET, { signatures: ['ml-dsa-65'] });
  throwsCode(() => policy.assertSignatureAllowed(TARGET, keyPair('ed25519').publicKey), 'ALGORITHM_DISALLOWED');
  policy.assertSignatureAllowed('xps.other', keyPair('ed25519').publicKey);
  policy.assertSignatureAllowed(TARGET, keyPair('ml-dsa-65').publicKey);
});

test('fields a component rule leaves out follow the default, even when the default changes later', () => {
  const policy = new CryptoPolicy();
  policy.set(TARGET, { signatures: ['ed25519'] });
  assert.deepEqual(policy.ruleFor(TARGET).hashes, [...HASH_ALGORITHMS]);
  policy.setDefault({ hashes: ['sha512'], minRsaBits: 4096 });
  assert.deepEqual(policy.ruleFor(TARGET), { signatures: ['ed25519'], hashes: ['sha512'], minRsaBits: 4096 });
});

test('the longest matching pattern wins over shorter ones', () => {
  const policy = new CryptoPolicy();
  policy.set('xps.*', { signatures: ['ed25519'] });
  policy.set('xps.crypto.*', { signatures: ['ml-dsa-65'] });
  policy.set('*', { signatures: ['rsa-pss-sha256'] });
  assert.deepEqual(policy.ruleFor(TARGET).signatures, ['ml-dsa-65']);
  assert.deepEqual(policy.ruleFor('xps.net.tls').signatures, ['ed25519']);
  assert.deepEqual(policy.ruleFor('other').signatures, ['rsa-pss-sha256']);
});

test('an exact component name beats any pattern that also matches it', () => {
  const policy = new CryptoPolicy();
  policy.set('xps.crypto.hash.*', { hashes: ['sha3-256'] });
  policy.set(TARGET, { hashes: ['sha384'] });
  assert.deepEqual(policy.ruleFor(TARGET).hashes, ['sha384']);
  assert.deepEqual(policy.ruleFor('xps.crypto.hash.sha512').hashes, ['sha3-256']);
});

test('among equally long patterns the one with more literal text wins, whatever the insertion order', () => {
  const a = new CryptoPolicy();
  a.set('xps.*.*', { minRsaBits: 3072 });
  a.set('xps.cr*', { minRsaBits: 4096 });
  const b = new CryptoPolicy();
  b.set('xps.cr*', { minRsaBits: 4096 });
  b.set('xps.*.*', { minRsaBits: 3072 });
  assert.equal(a.ruleFor('xps.crypto.x').minRsaBits, 4096);
  assert.equal(b.ruleFor('xps.crypto.x').minRsaBits, 4096);
});

test('a pattern only matches on its anchored glob, not on a longer segment name', () => {
  const policy = new CryptoPolicy();
  policy.set('xps.crypto.*', { signatures: [] });
  assert.deepEqual(policy.ruleFor('xps.cryptography.x').signatures, [...SIGNATURE_ALGORITHMS]);
  assert.deepEqual(policy.ruleFor('xps.crypto.x').signatures, []);
});

test('deleting a component rule falls back to the default and reports whether it existed', () => {
  const policy = new CryptoPolicy();
  policy.set(TARGET, { hashes: ['sha512'] });
  assert.equal(policy.delete(TARGET), true);
  assert.equal(policy.delete(TARGET), false);
  assert.deepEqual(policy.ruleFor(TARGET).hashes, [...HASH_ALGORITHMS]);
});

test('an RSA key below the minimum is refused, saying by how much', () => {
  const policy = new CryptoPolicy({ components: { 'xps.crypto.*': { minRsaBits: 3072 } } });
  throwsCode(
    () => policy.assertSignatureAllowed(TARGET, keyPair('rsa-pss-sha256').publicKey),
    'ALGORITHM_DISALLOWED',
    /^2048-bit RSA key is below the 3072-bit minimum for xps\.crypto\.hash\.sha256$/,
  );
  policy.assertSignatureAllowed('xps.other', keyPair('rsa-pss-sha256').publicKey);
});

test('the RSA refusal carries the measured figures in its detail', () => {
  const policy = new CryptoPolicy({ defaults: { minRsaBits: 3072 } });
  try {
    policy.assertSignatureAllowed(TARGET, keyPair('rsa-pss-sha256').publicKey);
    assert.fail('expected a refusal');
  } catch (err) {
    assert.ok(isHotPatchError(err, 'ALGORITHM_DISALLOWED'));
    assert.equal(err.detail?.['bits'], 2048);
    assert.equal(err.detail?.['minRsaBits'], 3072);
    assert.equal(err.detail?.['component'], TARGET);
  }
});

test('an unknown hash algorithm is refused as ALGORITHM_DISALLOWED', () => {
  throwsCode(() => new CryptoPolicy().assertHashAllowed(TARGET, 'md5'), 'ALGORITHM_DISALLOWED', /md5.*unknown/);
});

test('a known hash outside the component rule is refused and one inside it is accepted', () => {
  const policy = new CryptoPolicy();
  policy.set(TARGET, { hashes: ['sha384', 'sha512'] });
  throwsCode(() => policy.assertHashAllowed(TARGET, 'sha256'), 'ALGORITHM_DISALLOWED', /sha256 is not allowed for xps\.crypto\.hash\.sha256/);
  policy.assertHashAllowed(TARGET, 'sha512');
});

test('a policy survives a round trip through JSON', () => {
  const policy = new CryptoPolicy({ defaults: { hashes: ['sha256', 'sha512'] } });
  policy.set('xps.crypto.*', { signatures: ['ml-dsa-65'], minRsaBits: 4096 });
  policy.set(TARGET, { hashes: ['sha3-256'] });
  const json = JSON.parse(JSON.stringify(policy)) as unknown;
  const again = CryptoPolicy.fromJSON(json);
  assert.deepEqual(again.toJSON(), policy.toJSON());
  assert.deepEqual(again.ruleFor(TARGET), policy.ruleFor(TARGET));
});

test('fromJSON refuses unknown fields at every level', () => {
  throwsCode(() => CryptoPolicy.fromJSON({ defaults: {}, extra: 1 }), 'INVALID', /^policy has unknown field "extra" \(allowed: defaults, components\)$/);
  throwsCode(
    () => CryptoPolicy.fromJSON({ defaults: { signature: ['ed25519'] } }),
    'INVALID',
    /^policy\.defaults has unknown field "signature" \(allowed: signatures, hashes, minRsaBits\)$/,
  );
  throwsCode(() => CryptoPolicy.fromJSON({ components: { a: { hash: [] } } }), 'INVALID', /^policy\.components\["a"\] has unknown field "hash"/);
});

test('fromJSON refuses unknown algorithms as INVALID', () => {
  throwsCode(() => CryptoPolicy.fromJSON({ defaults: { signatures: ['ed25519', 'rsa-pkcs1'] } }), 'INVALID', /signatures\[1\].*rsa-pkcs1/);
  throwsCode(() => CryptoPolicy.fromJSON({ components: { x: { hashes: ['md5'] } } }), 'INVALID', /md5/);
});

test('fromJSON refuses malformed values', () => {
  for (const bad of [
    null,
    [],
    'policy',
    { defaults: [] },
    { components: [] },
    { defaults: { minRsaBits: 2048.5 } },
    { defaults: { minRsaBits: 512 } },
    { defaults: { signatures: 'ed25519' } },
    { components: { 'bad pattern': {} } },
  ]) {
    throwsCode(() => CryptoPolicy.fromJSON(bad), 'INVALID');
  }
});

test('setting a rule validates the component name and the rule', () => {
  const policy = new CryptoPolicy();
  throwsCode(() => policy.set('a b', {}), 'INVALID', /component/);
  throwsCode(() => policy.set(TARGET, { signatures: ['dsa' as never] }), 'INVALID', /rule\.signatures\[0\]/);
  throwsCode(() => policy.setDefault({ minRsaBits: '2048' as never }), 'INVALID', /rule\.minRsaBits/);
});

test('a rule returned by ruleFor is a copy that cannot change the policy', () => {
  const policy = new CryptoPolicy();
  policy.ruleFor(TARGET).signatures.length = 0;
  policy.toJSON().defaults.hashes.length = 0;
  assert.deepEqual(policy.ruleFor(TARGET).signatures, [...SIGNATURE_ALGORITHMS]);
  assert.deepEqual(policy.ruleFor(TARGET).hashes, [...HASH_ALGORITHMS]);
});

test('a component named __proto__ is kept as data through JSON', () => {
  const json = JSON.parse('{"components":{"__proto__":{"hashes":["sha512"]}}}') as unknown;
  const policy = CryptoPolicy.fromJSON(json);
  assert.deepEqual(policy.ruleFor('__proto__').hashes, ['sha512']);
  assert.deepEqual(Object.keys(policy.toJSON().components), ['__proto__']);
  assert.deepEqual(CryptoPolicy.fromJSON(JSON.parse(JSON.stringify(policy))).toJSON(), policy.toJSON());
});

test('an empty signature list switches a component off entirely', () => {
  const policy = new CryptoPolicy({ components: { [TARGET]: { signatures: [] } } });
  for (const alg of SIGNATURE_ALGORITHMS) {
    throwsCode(() => policy.assertSignatureAllowed(TARGET, keyPair(alg).publicKey), 'ALGORITHM_DISALLOWED', /allowed: none/);
  }
});

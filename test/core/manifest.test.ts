import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { HotPatchError, parseManifest, parseRfc3339 } from '../../src/core/index.js';

const base = {
  id: 'hotfix-2025-10-27',
  target: 'xps.crypto.hash.sha256',
  version: '1.2.3',
  created_at: '2025-10-27T09:00:00Z',
  expires: '2026-10-27T09:00:00Z',
  signers: ['team-key-1', 'build-bot'],
  payload_hash: `sha256:${'ab'.repeat(32)}`,
  payload_size: 48213,
  payload_type: 'esm',
  min_platform: 'linux-x86_64',
  constraints: { platforms: ['linux-x64'], node: '>=20', requires: { 'xps.crypto.core': '>=1.0.0' } },
  metadata: { ticket: 'SEC-1234', changelog: 'Fix constant-time padding edge case' },
};

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof HotPatchError, `expected HotPatchError, got ${String(error)}`);
    return error.code;
  }
  return 'accepted';
}

test('the example manifest parses with its facts extracted', () => {
  const { manifest, facts } = parseManifest(new TextEncoder().encode(JSON.stringify(base)));
  assert.equal(manifest.target, 'xps.crypto.hash.sha256');
  assert.equal(facts.hashAlgorithm, 'sha256');
  assert.equal(facts.createdAtMs, Date.UTC(2025, 9, 27, 9));
  assert.deepEqual(manifest.constraints?.requires, { 'xps.crypto.core': '>=1.0.0' });
});

test('uppercase hex and algorithm names are accepted and normalised to lowercase', () => {
  const { manifest, facts } = parseManifest({ ...base, payload_hash: `SHA256:${'AB'.repeat(32)}` });
  assert.equal(manifest.payload_hash, `sha256:${'ab'.repeat(32)}`);
  assert.equal(facts.hashHex, 'ab'.repeat(32));
});

test('truncated JSON and invalid UTF-8 are PARSE errors', () => {
  assert.equal(
    codeOf(() => parseManifest(JSON.stringify(base).slice(0, 40))),
    'PARSE',
  );
  assert.equal(
    codeOf(() => parseManifest(new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]))),
    'PARSE',
  );
});

test('unknown fields, at the top and inside constraints, are INVALID', () => {
  assert.equal(
    codeOf(() => parseManifest({ ...base, extra: 1 })),
    'INVALID',
  );
  assert.equal(
    codeOf(() => parseManifest({ ...base, constraints: { cpu: 'x' } })),
    'INVALID',
  );
});

test('wrong types and missing fields are INVALID', () => {
  const cases: Record<string, unknown>[] = [
    { ...base, version: 123 },
    { ...base, version: '1.2' },
    { ...base, payload_size: -1 },
    { ...base, payload_size: 1.5 },
    { ...base, payload_size: '10' },
    { ...base, payload_type: 'exe' },
    { ...base, payload_hash: 'sha256:' },
    { ...base, payload_hash: '' },
    { ...base, payload_hash: 'sha256:abc' },
    { ...base, payload_hash: 'sha256:zz' },
    { ...base, signers: 'team-key-1' },
    { ...base, signers: ['a', 'a'] },
    { ...base, id: '../etc' },
    { ...base, target: 'a..b' },
    { ...base, metadata: { n: 1 } },
    { ...base, constraints: { node: 'not a range!!' } },
  ];
  for (const c of cases)
    assert.equal(
      codeOf(() => parseManifest(c)),
      'INVALID',
      JSON.stringify(c),
    );
  for (const field of ['id', 'target', 'version', 'created_at', 'payload_hash', 'payload_size', 'payload_type']) {
    const copy: Record<string, unknown> = { ...base };
    delete copy[field];
    assert.equal(
      codeOf(() => parseManifest(copy)),
      'INVALID',
      field,
    );
  }
});

test('unparseable and impossible dates are INVALID, and expires must follow created_at', () => {
  for (const created_at of [
    'yesterday',
    '2025-02-30T00:00:00Z',
    '2025-10-27 09:00:00',
    '2025-10-27T09:00:00',
    '2025-10-27T24:00:00Z',
    '2025-10-27T09:00:60Z',
  ]) {
    assert.equal(
      codeOf(() => parseManifest({ ...base, created_at })),
      'INVALID',
      created_at,
    );
  }
  assert.equal(
    codeOf(() => parseManifest({ ...base, expires: base.created_at })),
    'INVALID',
  );
});

test('RFC 3339 offsets are applied', () => {
  assert.equal(parseRfc3339('2025-10-27T11:00:00+02:00', 'x'), Date.UTC(2025, 9, 27, 9));
  assert.equal(parseRfc3339('2025-10-27T09:00:00.250Z', 'x'), Date.UTC(2025, 9, 27, 9, 0, 0, 250));
});

test('property: any JSON value either parses to a manifest or fails with PARSE or INVALID', () => {
  fc.assert(
    fc.property(fc.jsonValue(), (value) => {
      const code = codeOf(() => parseManifest(JSON.stringify(value)));
      return code === 'INVALID' || code === 'PARSE' || code === 'accepted';
    }),
    { numRuns: 500 },
  );
});

test('property: mutating one field of a valid manifest to a random value never throws anything but INVALID', () => {
  const fields = Object.keys(base);
  fc.assert(
    fc.property(fc.constantFrom(...fields), fc.jsonValue(), (field, value) => {
      const code = codeOf(() => parseManifest({ ...base, [field]: value }));
      return code === 'INVALID' || code === 'accepted';
    }),
    { numRuns: 500 },
  );
});

test('property: arbitrary bytes never crash the parser', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 256 }), (bytes) => {
      const code = codeOf(() => parseManifest(bytes));
      return code === 'INVALID' || code === 'PARSE';
    }),
    { numRuns: 500 },
  );
});

test('property: a valid manifest survives a serialise/parse round trip unchanged', () => {
  const arb = fc.record({
    version: fc.tuple(fc.nat(99), fc.nat(99), fc.nat(99)).map(([a, b, c]) => `${a}.${b}.${c}`),
    payload_size: fc.nat(),
    hex: fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b).toString('hex')),
    ticket: fc.string(),
  });
  fc.assert(
    fc.property(arb, ({ version, payload_size, hex, ticket }) => {
      const m = { ...base, version, payload_size, payload_hash: `sha256:${hex}`, metadata: { ticket } };
      const first = parseManifest(JSON.stringify(m)).manifest;
      const second = parseManifest(JSON.stringify(first)).manifest;
      assert.deepEqual(second, first);
    }),
    { numRuns: 300 },
  );
});

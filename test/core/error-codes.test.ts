import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import * as api from '../../src/index.js';

// fastify-style registry check: the list of error codes (docs/ARCHITECTURE.md "Error codes")
// is a contract, so every code must be exported, documented in the README, and produced by
// at least one test.
const CONTRACT_CODES = [
  'IO',
  'PARSE',
  'NOT_FOUND',
  'INVALID',
  'TOO_LARGE',
  'BAD_SIGNATURE',
  'UNTRUSTED_KEY',
  'THRESHOLD_NOT_MET',
  'HASH_MISMATCH',
  'SIZE_MISMATCH',
  'EXPIRED',
  'NOT_YET_VALID',
  'ALGORITHM_DISALLOWED',
  'DOWNGRADE',
  'KEY_REVOKED',
  'DECRYPT_FAILED',
  'POLICY_DENIED',
  'REQUIREMENT_UNSATISFIED',
  'PLATFORM_MISMATCH',
  'UNAUTHENTICATED',
  'APPROVAL_MISSING',
  'SELF_TEST_FAILED',
  'CANARY_FAILED',
  'ABORTED',
  'LOAD_FAILED',
  'CRASHED',
  'TIMEOUT',
];

function testSources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? testSources(p) : p.endsWith('.test.ts') && !p.endsWith('error-codes.test.ts') ? [p] : [];
  });
}

test('the exported code list is exactly the documented list', () => {
  assert.deepEqual([...api.ERROR_CODES], CONTRACT_CODES);
});

test('every error code is documented in the README error table', () => {
  const readme = readFileSync('README.md', 'utf8');
  for (const code of api.ERROR_CODES) assert.match(readme, new RegExp(`^\\| \`${code}\` \\|`, 'm'), `${code} missing from README`);
});

test('every error code is asserted by at least one test', () => {
  const sources = testSources('test').map((p) => readFileSync(p, 'utf8'));
  const missing = api.ERROR_CODES.filter((code) => !sources.some((s) => s.includes(`'${code}'`)));
  assert.deepEqual(missing, []);
});

test('a HotPatchError carries its code, cause and detail and serialises them', () => {
  const cause = new Error('disk on fire');
  const e = new api.HotPatchError('IO', 'cannot write', { cause, detail: { path: '/x' } });
  assert.equal(e.code, 'IO');
  assert.equal(e.cause, cause);
  assert.deepEqual(JSON.parse(JSON.stringify(e)), { code: 'IO', message: 'cannot write', detail: { path: '/x' } });
  assert.equal(api.isHotPatchError(e, 'IO'), true);
  assert.equal(api.errorCategory('DOWNGRADE'), 'verification');
});

test('an error message built from untrusted input is bounded, saying how much was cut', async () => {
  const { HotPatchError: E, MAX_ERROR_MESSAGE } = await import('../../src/core/index.js');
  const e = new E('UNTRUSTED_KEY', `no trusted key among: ${'x'.repeat(20_000)}`);
  assert.equal(e.message.length, MAX_ERROR_MESSAGE);
  assert.match(e.message, /^no trusted key among: x+ … \(\d+ characters cut\)$/);
  assert.equal(new E('IO', 'short').message, 'short');
});

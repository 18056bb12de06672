import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { checkPlan, type PatchPlan } from '../../src/orchestration/index.js';
import { isCode } from '../support/assertions.js';
import { makeEnv, planOf, types, withTraffic } from './helpers.js';

async function payloadHash(repoDir: string, id: string): Promise<string> {
  return `sha256:${createHash('sha256')
    .update(await readFile(join(repoDir, `${id}.bin`)))
    .digest('hex')}`;
}

test('a plan pinned to the version and payload hash of its patch applies it', async () => {
  const env = await makeEnv();
  try {
    const proc = env.process();
    const planner = await proc.open();
    await env.publish('fix-101', '1.0.1');
    const pin = { version: '1.0.1', payloadHash: await payloadHash(env.repoDir, 'fix-101') };
    planner.addPlan(planOf('pinned', { patch: 'fix-101', pin }) as PatchPlan);
    const { result } = await withTraffic(proc, planner.runOnce('pinned'));
    assert.equal(result.status, 'activated', result.reason);
    assert.equal(proc.target.active.patchId, 'fix-101');
    assert.deepEqual(planner.plan('pinned').plan.pin, pin);
  } finally {
    await env.close();
  }
});

test('a pinned plan refuses a correctly signed patch with another payload (HASH_MISMATCH) or another version (INVALID), before staging anything', async () => {
  const env = await makeEnv();
  try {
    const proc = env.process();
    const planner = await proc.open();
    await env.publish('fix-101', '1.0.1');
    const real = await payloadHash(env.repoDir, 'fix-101');
    const other = `sha256:${'ab'.repeat(32)}`;
    planner.addPlan(planOf('other-bytes', { patch: 'fix-101', pin: { version: '1.0.1', payloadHash: other } }) as PatchPlan);
    const bytes = await planner.runOnce('other-bytes');
    assert.deepEqual([bytes.status, bytes.code], ['failed', 'HASH_MISMATCH'], bytes.reason);
    assert.match(bytes.reason, /pinned to sha256:abab/);
    planner.addPlan(planOf('other-version', { patch: 'fix-101', pin: { version: '1.0.2', payloadHash: real } }) as PatchPlan);
    const version = await planner.runOnce('other-version');
    assert.deepEqual([version.status, version.code], ['failed', 'INVALID'], version.reason);
    assert.match(version.reason, /is version 1\.0\.1, but plan other-version is pinned to 1\.0\.2/);
    assert.ok(!types(proc.events).includes('Staged'), 'nothing staged');
    assert.equal(proc.target.active.patchId, null);
    // A dry run says the same, and changes nothing.
    const dry = await planner.dryRun(planOf('dry', { patch: 'fix-101', pin: { version: '1.0.1', payloadHash: other } }) as PatchPlan);
    assert.equal(dry.wouldApply, false);
    assert.equal(dry.checks.find((c) => c.check === 'fetch and verify')?.code, 'HASH_MISMATCH');
  } finally {
    await env.close();
  }
});

test('a pin is checked strictly: unknown fields, a non-semver version, a malformed hash, or a plan that names no patch are INVALID', () => {
  const base = planOf('p', { patch: 'fix-1' });
  const hash = `sha256:${'0'.repeat(64)}`;
  assert.deepEqual(checkPlan({ ...base, pin: { version: '1.0.1', payloadHash: hash.toUpperCase().replace('SHA256', 'sha256') } }).pin, {
    version: '1.0.1',
    payloadHash: hash,
  });
  for (const pin of [
    { version: '1.0.1' },
    { version: '1.0.1', payloadHash: hash, extra: 1 },
    { version: 'one', payloadHash: hash },
    { version: '1.0.1', payloadHash: 'sha256:xyz' },
    { version: '1.0.1', payloadHash: 42 },
    'sha256:00',
  ]) {
    assert.throws(() => checkPlan({ ...base, pin }), isCode('INVALID'), JSON.stringify(pin));
  }
  const { patch: _patch, ...polling } = base;
  assert.throws(() => checkPlan({ ...polling, pin: { version: '1.0.1', payloadHash: hash } }), isCode('INVALID'));
});

test('any pin checkPlan accepts survives its own canonical form unchanged (what the journal writes, its reader accepts)', () => {
  fc.assert(
    fc.property(
      fc.tuple(fc.nat(99), fc.nat(99), fc.nat(99)),
      fc.constantFrom('sha256', 'sha512', 'sha3-256'),
      fc.string({ unit: fc.constantFrom(...'0123456789abcdefABCDEF'), minLength: 32, maxLength: 128 }),
      ([a, b, c], alg, hex) => {
        const plan = checkPlan(planOf('p', { patch: 'fix-1', pin: { version: `${a}.${b}.${c}`, payloadHash: `${alg}:${hex}` } }));
        assert.deepEqual(checkPlan(JSON.parse(JSON.stringify(plan))), plan);
      },
    ),
  );
});

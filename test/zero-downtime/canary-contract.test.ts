import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { HotPatchError } from '../../src/core/index.js';
import { twoPhaseApply } from '../../src/zero-downtime/index.js';
import { FAST, drive, signedPatch, world } from './fixtures.js';
import { until } from '../support/wait.js';

const T = 'xps.crypto.hash.sha256';
const digest = (s: string): string => createHash('sha256').update(s).digest('hex');

test('a candidate that turns a synchronous method async fails the canary and no caller ever gets a promise', async () => {
  const w = await world();
  try {
    const target = w.runtime.target(T, { version: '1.0.0', impl: { digest }, deterministic: true });
    const src = `import { createHash } from 'node:crypto';
export const api = { digest: async (s) => createHash('sha256').update(s).digest('hex') };`;
    const { verified, payload } = signedPatch('async-1', T, '1.0.1', src);
    const apply = twoPhaseApply(w.installer, verified, payload, { ...FAST, runtime: w.runtime });
    let promises = 0;
    await drive((i) => {
      const out: unknown = target.api.digest(`m${i}`);
      if (typeof out !== 'string') promises += 1;
      return out;
    }, apply);
    await assert.rejects(apply, (e: unknown) => e instanceof HotPatchError && e.code === 'CANARY_FAILED');
    assert.equal(promises, 0);
    assert.equal(target.active.version, '1.0.0');
  } finally {
    await w.close();
  }
});

test('a deterministic async candidate that never answers does not hang callers: they get the baseline answer', async () => {
  const w = await world();
  try {
    const target = w.runtime.target(T, { version: '1.0.0', impl: { digest: async (s: string) => digest(s) }, deterministic: true });
    const src = `export const api = { digest: (s) => new Promise(() => {}) };`;
    const { verified, payload } = signedPatch('hang-1', T, '1.0.1', src);
    const apply = twoPhaseApply(w.installer, verified, payload, { ...FAST, canaryInterval: 10, maxInconclusiveExtensions: 3, runtime: w.runtime });
    const load = await drive(async (i) => {
      const out = await target.api.digest(`m${i}`);
      assert.equal(out, digest(`m${i}`));
      return out;
    }, apply);
    await assert.rejects(apply, (e: unknown) => e instanceof HotPatchError && e.code === 'CANARY_FAILED');
    assert.equal(load.errors.length, 0);
    assert.ok(load.ok > 0);
  } finally {
    await w.close();
  }
});

test('an abort that arrives during the state handover is honoured: the old version keeps serving', async () => {
  const w = await world();
  try {
    let release!: () => void;
    const handover = new Promise<void>((r) => (release = r));
    const target = w.runtime.target(T, {
      version: '1.0.0',
      impl: { digest },
      exportState: async () => {
        await handover;
        return { n: 1 };
      },
    });
    const src = `export const api = { digest: (s) => s }; export function importState() {}`;
    const { verified, payload } = signedPatch('handover-1', T, '1.0.1', src);
    const apply = twoPhaseApply(w.installer, verified, payload, { ...FAST, steps: [1], runtime: w.runtime });
    const driving = drive((i) => target.api.digest(`m${i}`), apply);
    await until(() => target.applying !== undefined && target.canary !== null, 15_000, 'the canary to start');
    // Wait until the canary step is judged and the handover has begun.
    await new Promise<void>((resolve) => {
      const off = w.bus.subscribe(
        () => {
          off();
          resolve();
        },
        { types: ['CanaryStep'] },
      );
    });
    await w.runtime.rollback(T, 'operator changed their mind');
    release();
    await assert.rejects(apply, (e: unknown) => e instanceof HotPatchError && e.code === 'ABORTED');
    await driving;
    assert.equal(target.active.version, '1.0.0');
  } finally {
    await w.close();
  }
});

test('rolling back to a version still in its probation resumes that probation, so it can become good', async () => {
  const w = await world();
  try {
    const target = w.runtime.target(T, { version: '1.0.0', impl: { digest } });
    const good = `import { createHash } from 'node:crypto';\nexport const api = { digest: (s) => createHash('sha256').update(s).digest('hex') };`;
    const b = signedPatch('pb', T, '1.0.1', good);
    const c = signedPatch('pc', T, '1.0.2', `${good}\n// c`);
    for (const p of [b, c]) {
      const apply = twoPhaseApply(w.installer, p.verified, p.payload, { ...FAST, steps: [1], probationMs: 150, runtime: w.runtime });
      await drive((i) => target.api.digest(`m${i}`), apply);
      await apply;
    }
    await w.runtime.rollback(T, 'c misbehaves');
    assert.equal(target.active.patchId, 'pb');
    // The resumed probation (150 ms) ends and records pb good; without the resume it never would.
    const readState = async () => JSON.parse(await readFile(join(w.dir, 'state.json'), 'utf8'));
    await until(async () => (await readState()).targets[T].active.good === true, 15_000, 'pb to be recorded good at the end of its resumed probation');
    const state = await readState();
    assert.equal(state.targets[T].active.id, 'pb');
    assert.equal(state.targets[T].active.good, true);
    assert.equal(state.targets[T].last_good.id, 'pb');
  } finally {
    await w.close();
  }
});

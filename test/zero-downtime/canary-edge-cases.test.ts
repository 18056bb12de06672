import assert from 'node:assert/strict';
import { test } from 'node:test';
import { twoPhaseApply } from '../../src/zero-downtime/index.js';
import { drive, signedPatch, world } from './fixtures.js';
import { isCode } from '../support/assertions.js';

const T = 'xps.test.edge';

test('a run of candidate errors during the state handover, after the last look, stops the promotion', async () => {
  const w = await world();
  try {
    const target = w.runtime.target(T, { version: '1.0.0', impl: { f: (x: number) => x + 1 }, exportState: () => 'state' });
    // The candidate starts failing every call while its importState runs (after the last look).
    const src = `export const api = { f(x) { if (globalThis.__edgeBroken === true) throw new Error('broken'); return x + 1; } };
export async function importState() { globalThis.__edgeBroken = true; for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r)); }`;
    const { verified, payload } = signedPatch('edge-handover', T, '1.0.1', src);
    const apply = twoPhaseApply(w.installer, verified, payload, {
      runtime: w.runtime,
      steps: [0.5],
      canaryInterval: 20,
      minCalls: 0,
      minCallsPerStep: 20,
      warmupCalls: 0,
      minLatencySamples: 1,
    });
    await drive((i) => {
      try {
        return target.api.f(i);
      } catch {
        return -1;
      }
    }, apply);
    await assert.rejects(apply, (e: unknown) => isCode('CANARY_FAILED')(e) && /failed before promotion/.test((e as Error).message));
    assert.equal(target.active.version, '1.0.0');
    assert.ok(w.events.some((e) => e.type === 'RolledBack'));
    assert.ok(!w.events.some((e) => e.type === 'Promoted'));
  } finally {
    delete (globalThis as { __edgeBroken?: boolean }).__edgeBroken;
    await w.close();
  }
});

test('with retryOnBaseline at a step of 1, re-answered calls are not baseline evidence: a 0.5 % error candidate still fails', async () => {
  const w = await world();
  try {
    const target = w.runtime.target(T, { version: '1.0.0', impl: { f: (x: number) => x + 1 }, idempotent: true });
    for (let i = 0; i < 20_000; i++) target.api.f(i); // the baseline's record: 20,000 calls, no error
    const src = `let n = 0; export const api = { f(x) { if (++n % 200 === 0) throw new Error('rare'); return x + 1; } };`;
    const { verified, payload } = signedPatch('edge-retry', T, '1.0.1', src);
    const apply = twoPhaseApply(w.installer, verified, payload, {
      runtime: w.runtime,
      steps: [1],
      canaryInterval: 30,
      minCalls: 20_000,
      retryOnBaseline: true,
    });
    const load = await drive((i) => target.api.f(i), apply);
    await assert.rejects(apply, isCode('CANARY_FAILED'));
    assert.equal(load.errors.length, 0, 'every failed candidate call was answered by the baseline');
    const failed = w.events.find((e) => e.type === 'CanaryStep' && e.detail?.verdict === 'Failed')!;
    assert.equal(failed.detail?.baselineCalls, 0, 'retries are not counted as baseline calls');
    assert.ok(failed.detail?.rule === 'overwhelming-errors' || failed.detail?.errorTest === 'fisher-exact-vs-history', JSON.stringify(failed.detail));
  } finally {
    await w.close();
  }
});

test('a slow baseline answer in a shadow call does not count against an async candidate that answered in time', async () => {
  const w = await world();
  try {
    let n = 0;
    const target = w.runtime.target(T, {
      version: '1.0.0',
      deterministic: true,
      impl: {
        async g(x: number): Promise<number> {
          // One call in twenty takes 120 ms on the baseline: slower than the candidate's 60 ms deadline.
          if (++n % 20 === 0) await new Promise((r) => setTimeout(r, 120));
          return x * 2;
        },
      },
    });
    const src = `export const api = { async g(x) { return x * 2; } };`;
    const { verified, payload } = signedPatch('edge-shadow', T, '1.0.1', src);
    const apply = twoPhaseApply(w.installer, verified, payload, {
      runtime: w.runtime,
      steps: [0.5],
      canaryInterval: 200,
      minCalls: 0,
      minCallsPerStep: 20,
      canaryCallTimeoutMs: 60,
      maxLatencyShift: 1000,
    });
    const loads = await Promise.all(Array.from({ length: 8 }, () => drive((i) => target.api.g(i), apply)));
    const result = await apply;
    assert.equal(result.outcome, 'promoted', result.reason);
    assert.equal(result.steps.at(-1)!.figures.timeouts, 0);
    assert.equal(loads.flatMap((l) => l.errors).length, 0);
  } finally {
    await w.close();
  }
});

test('a baseline that throws synchronously while re-answering a rejected async candidate call rejects the caller, never leaves it hanging', async () => {
  const w = await world();
  try {
    const target = w.runtime.target(T, {
      version: '1.0.0',
      idempotent: true,
      asyncMethods: ['h'],
      impl: {
        h(x: number): Promise<number> {
          if (x < 0) throw new RangeError('negative');
          return Promise.resolve(x);
        },
      },
    });
    const src = `export const api = { h(x) { return Promise.reject(new Error('candidate fails')); } };`;
    const { verified, payload } = signedPatch('edge-answer', T, '1.0.1', src);
    const started = new Promise<void>((resolve) => w.bus.subscribe((e) => e.type === 'CanaryStarted' && resolve()));
    const apply = twoPhaseApply(w.installer, verified, payload, {
      runtime: w.runtime,
      steps: [1],
      canaryInterval: 60_000,
      retryOnBaseline: true,
      returnErrorOnCanaryFail: false,
    });
    await started;
    // At a step of 1 every call goes to the candidate; its rejection is re-answered by the
    // baseline, which throws synchronously for a negative input: the caller must see that throw.
    await assert.rejects(Promise.resolve(target.api.h(-1)), RangeError);
    assert.equal(await target.api.h(3), 3);
    target.abort('done');
    await apply.catch(() => undefined);
  } finally {
    await w.close();
  }
});

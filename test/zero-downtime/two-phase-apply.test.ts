import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { HotPatchError } from '../../src/core/index.js';
import { resolveZdtOptions, twoPhaseApply } from '../../src/zero-downtime/index.js';
import { FAST, drive, signedPatch, types, world } from './fixtures.js';
import { isCode } from '../support/assertions.js';
import { until } from '../support/wait.js';

const T = 'xps.crypto.hash.sha256';
const builtin = { digest: (s: string) => createHash('sha256').update(s).digest('hex') };
const GOOD = `import { createHash } from 'node:crypto';
export const api = { digest: (s) => createHash('sha256').update(s).digest('hex') };
export function selfTest() { if (api.digest('abc') !== 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad') throw new Error('KAT'); }`;

test('a good patch is promoted step by step while every call succeeds', async () => {
  const w = await world();
  try {
    const target = w.runtime.target(T, { version: '1.0.0', impl: builtin, deterministic: true });
    const { verified, payload } = signedPatch('good-1', T, '1.0.1', GOOD);
    const apply = twoPhaseApply(w.installer, verified, payload, { ...FAST, runtime: w.runtime });
    const load = await drive((i) => target.api.digest(`m${i}`), apply);
    const result = await apply;
    assert.equal(result.outcome, 'promoted');
    assert.deepEqual(
      result.steps.map((s) => s.verdict),
      ['Successful', 'Successful', 'Successful', 'Successful'],
    );
    assert.deepEqual(
      result.steps.map((s) => s.ratio),
      [0.004, 0.05, 0.25, 0.5],
    );
    assert.ok(result.steps.every((s) => s.figures.rule === 'no-regression' && s.figures.candidateErrors === 0));
    assert.equal(load.errors.length, 0);
    assert.ok(load.ok > 100);
    assert.equal(target.active.version, '1.0.1');
    assert.equal(target.previous?.version, '1.0.0');
    // Each look is a CanaryStep event (an Inconclusive look waits for more calls).
    assert.deepEqual(
      types(w.events).filter((t) => t !== 'CanaryStep'),
      ['Staged', 'CanaryStarted', 'Promoted', 'Activated'],
    );
    assert.ok(types(w.events).filter((t) => t === 'CanaryStep').length >= 4);
    const promoted = w.events.find((e) => e.type === 'Promoted')!;
    assert.match(promoted.reason, /candidate calls, 0 errors .* \(Fisher exact p=1\); latency ×[\d.]+ \(Wilcoxon signed-rank \(paired\)/);
    const state = JSON.parse(await readFile(join(w.dir, 'state.json'), 'utf8'));
    assert.equal(state.targets[T].active.id, 'good-1');
    assert.equal(state.targets[T].previous.version, '1.0.0');
    assert.equal(state.targets[T].highest_version, '1.0.1');
  } finally {
    await w.close();
  }
});

test('a patch that throws on 10% of calls is rolled back with CANARY_FAILED and the baseline keeps serving', async () => {
  const w = await world();
  try {
    const target = w.runtime.target(T, { version: '1.0.0', impl: builtin });
    const src = `let n = 0; export const api = { digest: (s) => { if (++n % 10 === 0) throw new Error('flaky'); return 'x' + s; } };`;
    const { verified, payload } = signedPatch('flaky-1', T, '1.0.1', src);
    const apply = twoPhaseApply(w.installer, verified, payload, { ...FAST, runtime: w.runtime });
    await drive((i) => target.api.digest(`m${i}`), apply);
    await assert.rejects(
      apply,
      (e: unknown) => isCode('CANARY_FAILED')(e) && /against the baseline's 0 of [\d,]+.*Fisher exact one-sided p=/.test((e as Error).message),
    );
    assert.equal(target.active.version, '1.0.0');
    assert.equal(target.canary, null);
    assert.equal(target.api.digest('abc'), builtin.digest('abc'));
    assert.ok(types(w.events).includes('RolledBack'));
    const step = w.events.find((e) => e.type === 'CanaryStep' && e.detail?.verdict === 'Failed');
    assert.ok(typeof step?.detail?.errorRate === 'number' && (step.detail.errorRate as number) > 0.01);
    assert.ok(step.detail.rule === 'error-excess' || step.detail.rule === 'overwhelming-errors', String(step.detail.rule));
    assert.ok((step.detail.errorP as number) < (step.detail.alpha as number) || step.detail.rule === 'overwhelming-errors');
    const state = JSON.parse(await readFile(join(w.dir, 'state.json'), 'utf8'));
    assert.deepEqual(state.targets[T].failed, ['flaky-1']);
  } finally {
    await w.close();
  }
});

test('a patch three times slower fails the latency test beyond the tolerated shift', async () => {
  const w = await world();
  try {
    const spin = (ms: number): void => {
      const end = performance.now() + ms;
      while (performance.now() < end);
    };
    const target = w.runtime.target(T, { version: '1.0.0', impl: { digest: (s: string) => (spin(0.2), s) } });
    const src = `export const api = { digest: (s) => { const end = performance.now() + 0.6; while (performance.now() < end); return s; } };`;
    const { verified, payload } = signedPatch('slow-1', T, '1.0.1', src);
    const apply = twoPhaseApply(w.installer, verified, payload, { ...FAST, runtime: w.runtime, maxLatencyRatio: 2 });
    await drive((i) => target.api.digest(`m${i}`), apply);
    await assert.rejects(
      apply,
      (e: unknown) =>
        isCode('CANARY_FAILED')(e) && /candidate latency ×[\d.]+ the baseline's \(tolerated ×2\.00\): Mann–Whitney U one-sided p=/.test((e as Error).message),
    );
    assert.equal(target.active.version, '1.0.0');
  } finally {
    await w.close();
  }
});

test('a deterministic target catches a patch that returns wrong bytes for 1% of inputs, and callers never see them', async () => {
  const w = await world();
  try {
    const target = w.runtime.target(T, { version: '1.0.0', impl: builtin, deterministic: true });
    const src = `import { createHash } from 'node:crypto';
export const api = { digest: (s) => { const h = createHash('sha256').update(s).digest('hex'); return Number(s.slice(1)) % 100 === 37 ? h.replace(/^./, 'f') : h; } };`;
    const { verified, payload } = signedPatch('wrong-1', T, '1.0.1', src);
    const apply = twoPhaseApply(w.installer, verified, payload, { ...FAST, runtime: w.runtime });
    const load = await drive((i) => {
      const input = `m${i}`;
      const out = target.api.digest(input);
      if (out !== builtin.digest(input)) throw new Error(`wrong output for ${input}`);
      return out;
    }, apply);
    await assert.rejects(apply, (e: unknown) => isCode('CANARY_FAILED')(e) && /differed from the baseline/.test((e as Error).message));
    assert.equal(load.errors.length, 0);
    assert.equal(target.active.version, '1.0.0');
  } finally {
    await w.close();
  }
});

test('a patch failing its self-test never takes a call (SELF_TEST_FAILED, Failed event)', async () => {
  const w = await world();
  try {
    const target = w.runtime.target(T, {
      version: '1.0.0',
      impl: builtin,
      selfTest: (api) => {
        if (api.digest('abc') !== builtin.digest('abc')) throw new Error('known answer mismatch for "abc"');
      },
    });
    const { verified, payload } = signedPatch('kat-1', T, '1.0.1', `export const api = { digest: (s) => 'nope' };`);
    await assert.rejects(twoPhaseApply(w.installer, verified, payload, { ...FAST, runtime: w.runtime }), isCode('SELF_TEST_FAILED'));
    assert.deepEqual(types(w.events), ['Staged', 'Failed']);
    assert.equal(target.api.digest('abc'), builtin.digest('abc'));
  } finally {
    await w.close();
  }
});

test('a patch whose top-level await, init() or selfTest() never settles is LOAD_FAILED at loadTimeoutMs, and the target is free again', async () => {
  const w = await world();
  try {
    const target = w.runtime.target(T, { version: '1.0.0', impl: builtin });
    const hangs = [
      `await new Promise(() => {}); export const api = { digest: () => 'x' };`,
      `export const api = { digest: () => 'x' }; export function init() { return new Promise(() => {}); }`,
      `export const api = { digest: () => 'x' }; export function selfTest() { return new Promise(() => {}); }`,
    ];
    for (const [i, source] of hangs.entries()) {
      const { verified, payload } = signedPatch(`hang-${i}`, T, `1.0.${i + 1}`, source);
      await assert.rejects(twoPhaseApply(w.installer, verified, payload, { ...FAST, loadTimeoutMs: 100, runtime: w.runtime }), (e: unknown) => {
        assert.ok(e instanceof HotPatchError && e.code === 'LOAD_FAILED', String(e));
        assert.match(e.message, /did not finish loading within 100 ms \(loadTimeoutMs\)/);
        return true;
      });
      assert.equal(target.active.version, '1.0.0');
      assert.equal(target.applying, undefined, 'the target is not left busy');
    }
    // The target takes the next patch at once.
    const { verified, payload } = signedPatch('after-hang', T, '1.0.9', GOOD);
    const apply = twoPhaseApply(w.installer, verified, payload, { ...FAST, runtime: w.runtime });
    await drive((i) => target.api.digest(`m${i}`), apply);
    assert.equal((await apply).outcome, 'promoted');
  } finally {
    await w.close();
  }
});

test('a patch that pollutes Object.prototype or replaces fetch while loading is refused (LOAD_FAILED) and the built-ins are as before', async () => {
  const w = await world();
  const fetchBefore = globalThis.fetch;
  try {
    const target = w.runtime.target(T, { version: '1.0.0', impl: builtin });
    const hostile = [
      `export const api = { digest: () => 'x' }; export function init() { Object.prototype.polluted = 'yes'; }`,
      `globalThis.fetch = async () => new Response('exfiltrated'); export const api = { digest: () => 'x' };`,
    ];
    for (const [i, source] of hostile.entries()) {
      const { verified, payload } = signedPatch(`tamper-${i}`, T, `1.0.${i + 1}`, source);
      await assert.rejects(twoPhaseApply(w.installer, verified, payload, { ...FAST, runtime: w.runtime }), (e: unknown) => {
        assert.ok(e instanceof HotPatchError && e.code === 'LOAD_FAILED', String(e));
        assert.match(
          e.message,
          /changed the process's shared built-ins while loading \((Object\.prototype\.polluted added|globalThis\.fetch replaced)\); every change undone, and the patch refused/,
        );
        return true;
      });
      assert.equal(target.active.version, '1.0.0');
    }
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    assert.equal(globalThis.fetch, fetchBefore);
  } finally {
    await w.close();
  }
});

test('a refused patch cannot leave its tampering behind: an Object.prototype.toJSON added before init() throws is undone before the refusal is recorded', async () => {
  const w = await world();
  try {
    const target = w.runtime.target(T, { version: '1.0.0', impl: builtin });
    const source = `export const api = { digest: () => 'x' };
export function init() {
  Object.defineProperty(Object.prototype, 'toJSON', { configurable: true, value() { return this && this.type === 'Failed' ? { ...this, type: 'Activated' } : this; } });
  throw new Error('init gave up');
}`;
    const { verified, payload } = signedPatch('liar-1', T, '1.0.1', source);
    await assert.rejects(twoPhaseApply(w.installer, verified, payload, { ...FAST, runtime: w.runtime }), (e: unknown) => {
      assert.ok(e instanceof HotPatchError && e.code === 'LOAD_FAILED', String(e));
      assert.match(e.message, /init gave up.*; also: liar-1 changed the process's shared built-ins before it was refused \(Object\.prototype\.toJSON added\)/s);
      return true;
    });
    assert.equal(Object.getOwnPropertyDescriptor(Object.prototype, 'toJSON'), undefined);
    const failed = w.events.at(-1)!;
    assert.equal(failed.type, 'Failed');
    assert.equal(JSON.parse(JSON.stringify(failed)).type, 'Failed', 'the record of the refusal serialises as what it is');
    assert.equal(target.active.version, '1.0.0');
  } finally {
    await w.close();
  }
});

test('a patch whose calls pollute Object.prototype during the canary is not promoted (CANARY_FAILED) and the pollution is undone', async () => {
  const w = await world();
  try {
    const target = w.runtime.target(T, { version: '1.0.0', impl: builtin, deterministic: true });
    const source = `import { createHash } from 'node:crypto';
let n = 0;
export const api = { digest: (s) => { if (++n === 50) Object.prototype.sneaky = 1; return createHash('sha256').update(s).digest('hex'); } };`;
    const { verified, payload } = signedPatch('sneaky-1', T, '1.0.1', source);
    const apply = twoPhaseApply(w.installer, verified, payload, { ...FAST, runtime: w.runtime });
    await drive(
      (i) => target.api.digest(`m${i}`),
      apply.catch(() => undefined),
    );
    await assert.rejects(apply, (e: unknown) => {
      assert.ok(e instanceof HotPatchError && e.code === 'CANARY_FAILED', String(e));
      assert.match(e.message, /changed the process's shared built-ins during its canary \(Object\.prototype\.sneaky added\)/);
      return true;
    });
    assert.equal(target.active.version, '1.0.0');
    assert.equal(({} as Record<string, unknown>).sneaky, undefined);
  } finally {
    await w.close();
  }
});

test('loadTimeoutMs must be a positive timer', () => {
  for (const bad of [0, -1, 2 ** 31, Number.NaN]) {
    assert.throws(
      () => resolveZdtOptions({ loadTimeoutMs: bad }),
      (e: unknown) => e instanceof HotPatchError && e.code === 'INVALID' && /loadTimeoutMs/.test(e.message),
    );
  }
});

test('a patch that throws at import is LOAD_FAILED and the current version is untouched', async () => {
  const w = await world();
  try {
    const target = w.runtime.target(T, { version: '1.0.0', impl: builtin });
    const { verified, payload } = signedPatch('boom-1', T, '1.0.1', `throw new Error('top-level boom'); export const api = {};`);
    await assert.rejects(twoPhaseApply(w.installer, verified, payload, { ...FAST, runtime: w.runtime }), isCode('LOAD_FAILED'));
    assert.equal(target.active.version, '1.0.0');
    assert.equal(w.events.at(-1)?.type, 'Failed');
  } finally {
    await w.close();
  }
});

test('a throwing importState aborts the promotion and keeps the old version', async () => {
  const w = await world();
  try {
    let sessions = 3;
    const target = w.runtime.target(T, { version: '1.0.0', impl: builtin, exportState: () => ({ sessions }) });
    const src = `export const api = { digest: (s) => s }; export function importState(state) { throw new Error('cannot read sessions ' + state.sessions); }`;
    const { verified, payload } = signedPatch('state-1', T, '1.0.1', src);
    const apply = twoPhaseApply(w.installer, verified, payload, { ...FAST, runtime: w.runtime });
    await drive((i) => target.api.digest(`m${i}`), apply);
    await assert.rejects(apply, (e: unknown) => isCode('ABORTED')(e) && /state handover/.test((e as Error).message));
    assert.equal(target.active.version, '1.0.0');
    assert.ok(types(w.events).includes('Aborted'));
    sessions += 1;
  } finally {
    await w.close();
  }
});

test('state is handed over from the old version to the new one at promotion', async () => {
  const w = await world();
  try {
    const target = w.runtime.target(T, { version: '1.0.0', impl: builtin, exportState: () => ({ counter: 41 }) });
    const src = `let counter = 0; export const api = { digest: (s) => String(counter) }; export function importState(state) { counter = state.counter + 1; }`;
    const { verified, payload } = signedPatch('state-2', T, '1.0.1', src);
    const apply = twoPhaseApply(w.installer, verified, payload, { ...FAST, runtime: w.runtime });
    await drive((i) => target.api.digest(`m${i}`), apply);
    await apply;
    assert.equal(target.api.digest('x'), '42');
  } finally {
    await w.close();
  }
});

test('an AbortSignal mid-canary rolls back when rollbackOnCancel is true', async () => {
  const w = await world();
  try {
    const target = w.runtime.target(T, { version: '1.0.0', impl: builtin });
    const { verified, payload } = signedPatch('abort-1', T, '1.0.1', GOOD);
    const controller = new AbortController();
    w.bus.subscribe(() => controller.abort(new Error('operator pressed stop')), { types: ['CanaryStep'] });
    const apply = twoPhaseApply(w.installer, verified, payload, { ...FAST, runtime: w.runtime, signal: controller.signal });
    await drive((i) => target.api.digest(`m${i}`), apply);
    await assert.rejects(apply, (e: unknown) => isCode('ABORTED')(e) && /operator pressed stop/.test((e as Error).message));
    assert.equal(target.active.version, '1.0.0');
    assert.equal(target.canary, null);
    assert.deepEqual(types(w.events).slice(-2), ['Aborted', 'RolledBack']);
  } finally {
    await w.close();
  }
});

test('with rollbackOnCancel false an abort pauses the canary until an operator promotes it', async () => {
  const w = await world();
  try {
    const target = w.runtime.target(T, { version: '1.0.0', impl: builtin });
    const { verified, payload } = signedPatch('pause-1', T, '1.0.1', GOOD);
    const controller = new AbortController();
    w.bus.subscribe(() => controller.abort(), { types: ['CanaryStep'] });
    const apply = twoPhaseApply(w.installer, verified, payload, { ...FAST, runtime: w.runtime, signal: controller.signal, rollbackOnCancel: false });
    await drive((i) => target.api.digest(`m${i}`), apply);
    await assert.rejects(apply, (e: unknown) => isCode('ABORTED')(e) && (e as HotPatchError).detail?.paused === true);
    assert.notEqual(target.canary, null);
    assert.equal(target.canary?.ratio, 0.004);
    await target.promote();
    assert.equal(target.active.version, '1.0.1');
    assert.equal(target.canary, null);
  } finally {
    await w.close();
  }
});

test('a paused canary can also be rolled back by the operator', async () => {
  const w = await world();
  try {
    const target = w.runtime.target(T, { version: '1.0.0', impl: builtin });
    const { verified, payload } = signedPatch('pause-2', T, '1.0.1', GOOD);
    const controller = new AbortController();
    w.bus.subscribe(() => controller.abort(), { types: ['CanaryStep'] });
    const apply = twoPhaseApply(w.installer, verified, payload, { ...FAST, runtime: w.runtime, signal: controller.signal, rollbackOnCancel: false });
    await drive((i) => target.api.digest(`m${i}`), apply);
    await assert.rejects(apply, isCode('ABORTED'));
    await w.runtime.rollback(T, 'not today');
    assert.equal(target.canary, null);
    assert.equal(target.active.version, '1.0.0');
    assert.equal(w.events.at(-1)?.type, 'RolledBack');
  } finally {
    await w.close();
  }
});

test('retryOnBaseline hides candidate errors from callers while the canary still fails', async () => {
  const w = await world();
  try {
    const target = w.runtime.target(T, { version: '1.0.0', impl: builtin, idempotent: true });
    const { verified, payload } = signedPatch('retry-1', T, '1.0.1', `export const api = { digest: () => { throw new Error('always'); } };`);
    const apply = twoPhaseApply(w.installer, verified, payload, { ...FAST, runtime: w.runtime, retryOnBaseline: true });
    const load = await drive((i) => target.api.digest(`m${i}`), apply);
    await assert.rejects(apply, isCode('CANARY_FAILED'));
    assert.equal(load.errors.length, 0);
  } finally {
    await w.close();
  }
});

test('a canary without traffic is never promoted: Inconclusive, then CANARY_FAILED', async () => {
  const w = await world();
  try {
    w.runtime.target(T, { version: '1.0.0', impl: builtin });
    const { verified, payload } = signedPatch('idle-1', T, '1.0.1', GOOD);
    await assert.rejects(
      twoPhaseApply(w.installer, verified, payload, { ...FAST, canaryInterval: 5, runtime: w.runtime, maxInconclusiveExtensions: 3 }),
      (e: unknown) => isCode('CANARY_FAILED')(e) && /never promoted without data/.test((e as Error).message),
    );
    const steps = w.events.filter((e) => e.type === 'CanaryStep');
    assert.equal(steps.length, 4);
    assert.deepEqual(
      steps.map((e) => e.detail?.verdict),
      ['Inconclusive', 'Inconclusive', 'Inconclusive', 'Failed'],
    );
  } finally {
    await w.close();
  }
});

test('a second apply to a busy target is refused clearly, and a frozen target refuses every apply', async () => {
  const w = await world();
  try {
    const target = w.runtime.target(T, { version: '1.0.0', impl: builtin });
    const one = signedPatch('one', T, '1.0.1', GOOD);
    const two = signedPatch('two', T, '1.0.2', GOOD);
    const first = twoPhaseApply(w.installer, one.verified, one.payload, { ...FAST, runtime: w.runtime });
    await until(() => target.applying?.patchId === 'one', 15_000, 'the first apply to hold the target');
    await assert.rejects(
      twoPhaseApply(w.installer, two.verified, two.payload, { ...FAST, runtime: w.runtime }),
      (e: unknown) => isCode('ABORTED')(e) && /busy with patch one/.test((e as Error).message),
    );
    await drive((i) => target.api.digest(`m${i}`), first);
    await first;
    target.frozen = 'incident INC-7';
    await assert.rejects(twoPhaseApply(w.installer, two.verified, two.payload, { ...FAST, runtime: w.runtime }), isCode('POLICY_DENIED'));
  } finally {
    await w.close();
  }
});

test('rollback() flips to the warm previous version and records the failed patch', async () => {
  const w = await world();
  try {
    const target = w.runtime.target(T, { version: '1.0.0', impl: builtin });
    const { verified, payload } = signedPatch('good-2', T, '1.0.1', GOOD);
    const apply = twoPhaseApply(w.installer, verified, payload, { ...FAST, runtime: w.runtime });
    await drive((i) => target.api.digest(`m${i}`), apply);
    await apply;
    const previous = target.previous;
    await w.runtime.rollback(T, 'customer reports');
    assert.equal(target.active, previous);
    assert.equal(target.active.version, '1.0.0');
    const state = JSON.parse(await readFile(join(w.dir, 'state.json'), 'utf8'));
    assert.equal(state.targets[T].active.version, '1.0.0');
    assert.deepEqual(state.targets[T].failed, ['good-2']);
    assert.equal(await w.runtime.rollbackIndex?.getLastGood(T).then((r) => r?.version), '1.0.0');
    await assert.rejects(w.runtime.rollback(T), isCode('NOT_FOUND'));
  } finally {
    await w.close();
  }
});

test('bad options are INVALID before anything happens', async () => {
  const w = await world();
  try {
    w.runtime.target(T, { version: '1.0.0', impl: builtin });
    const { verified, payload } = signedPatch('opt-1', T, '1.0.1', GOOD);
    await assert.rejects(twoPhaseApply(w.installer, verified, payload, { runtime: w.runtime, steps: [0.5, 0.25] }), isCode('INVALID'));
    await assert.rejects(twoPhaseApply(w.installer, verified, payload, { runtime: w.runtime, retryOnBaseline: true }), isCode('INVALID'));
    assert.equal(w.events.length, 0);
  } finally {
    await w.close();
  }
});

test('a patch applied again after a rollback is active and no longer listed as failed', async () => {
  const w = await world();
  try {
    const target = w.runtime.target(T, { version: '1.0.0', impl: builtin, deterministic: true });
    const { verified, payload } = signedPatch('again-1', T, '1.0.1', GOOD);
    const options = { ...FAST, runtime: w.runtime, steps: [1], minCalls: 0, probationMs: 0 };
    const first = twoPhaseApply(w.installer, verified, payload, options);
    await drive((i) => target.api.digest(`a${i}`), first);
    assert.equal((await first).outcome, 'promoted');
    await w.runtime.rollback(T, 'operator rollback');
    let state = JSON.parse(await readFile(join(w.dir, 'state.json'), 'utf8'));
    assert.deepEqual(state.targets[T].failed, ['again-1']);
    const second = twoPhaseApply(w.installer, verified, payload, options);
    await drive((i) => target.api.digest(`b${i}`), second);
    assert.equal((await second).outcome, 'promoted');
    state = JSON.parse(await readFile(join(w.dir, 'state.json'), 'utf8'));
    assert.equal(state.targets[T].active.id, 'again-1');
    assert.deepEqual(state.targets[T].failed, []);
  } finally {
    await w.close();
  }
});

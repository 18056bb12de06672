/*
 * The lifecycle of isolated versions, in each isolated mode: canary and promotion, state
 * handover across the boundary, operator rollback (a flip to the warm previous isolate), true
 * unload of retired versions, draining before an isolate is ended, the probation watch, restart
 * restore, restarts after a death, per-call deadlines, and what may cross the boundary.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { PatchInstaller } from '../../src/core/index.js';
import { HotPatchMetrics } from '../../src/observability/index.js';
import { HotPatchRuntime, twoPhaseApply } from '../../src/zero-downtime/index.js';
import { isCode } from '../support/assertions.js';
import { running } from '../support/isolates.js';
import { until } from '../support/wait.js';
import { FAST, drive, signedPatch, world, type World } from './fixtures.js';

const T = 'xps.ledger.balance';
const MODES = ['worker', 'process'] as const;
type Mode = (typeof MODES)[number];

interface LedgerApi {
  /** The balance after adding `amount`; also says which version answered. */
  add(amount: number): { version: string; balance: number };
  echo(value: unknown): unknown;
  slow(ms: number): Promise<string>;
}

function builtin(): LedgerApi {
  let balance = 0;
  return {
    add: (amount) => ({ version: '1.0.0', balance: (balance += amount) }),
    echo: (value) => value,
    slow: (ms) => new Promise((resolve) => setTimeout(() => resolve('1.0.0'), ms)),
  };
}

/** A version of the ledger as a patch: its balance is state handed over from the version before. */
function ledgerSource(version: string, extra = ''): string {
  return `
let balance = 0;
let handed = null;
export const api = {
  add(amount) { ${extra} balance += amount; return { version: ${JSON.stringify(version)}, balance }; },
  echo(value) { if (value === 'give me a function') return () => 1; if (value === 'throw a range error') throw new RangeError('out of range'); if (value === 'handed') return handed; return value; },
  slow(ms) { return new Promise((resolve) => setTimeout(() => resolve(${JSON.stringify(version)}), ms)); },
};
export function exportState() { return { balance, seen: new Map([['by', ${JSON.stringify(version)}]]), at: new Date(0) }; }
export function importState(state) { handed = state; balance = state?.balance ?? 0; }
`;
}

async function ledger(mode: Mode, w?: World, limits: Record<string, number> = {}) {
  const wld = w ?? (await world());
  const target = wld.runtime.target(T, {
    version: '1.0.0',
    impl: builtin(),
    isolation: mode,
    isolationLimits: { callTimeoutMs: 2_000, ...limits },
    exportState: () => ({ balance: 0 }),
  });
  return { w: wld, target };
}

type Ledger = Awaited<ReturnType<typeof ledger>>['target'];

/** Applies `id` (version `version`) while adding 1 in a loop; returns the apply's result and the callers' errors. */
async function applyVersion(w: World, target: Ledger, id: string, version: string, options: Record<string, unknown> = {}, extra = '') {
  const { verified, payload } = signedPatch(id, T, version, ledgerSource(version, extra));
  const apply = twoPhaseApply(w.installer, verified, payload, { ...FAST, steps: [0.25, 0.5], probationMs: 0, ...options, runtime: w.runtime });
  const load = await drive(() => target.api.add(0), apply);
  return { result: await apply, errors: load.errors };
}

for (const mode of MODES) {
  test(`${mode}: a good isolated patch is canaried and promoted with no caller error; its state (a Map, a Date) crosses the boundary`, async () => {
    const { w, target } = await ledger(mode);
    try {
      assert.deepEqual(await target.api.add(5), { version: '1.0.0', balance: 5 });
      const { result, errors } = await applyVersion(w, target, 'ledger-1', '1.0.1');
      assert.equal(result.outcome, 'promoted');
      assert.equal(errors.length, 0);
      assert.equal(target.active.isolate?.mode, mode);
      assert.equal(target.active.isolate?.state, 'ready');
      // The built-in exported {balance: 0}; 1.0.1 imported it. Then 1.0.2 gets 1.0.1's own state.
      await target.api.add(7);
      const second = await applyVersion(w, target, 'ledger-2', '1.0.2');
      assert.equal(second.result.outcome, 'promoted');
      const handed = (await target.api.echo('handed')) as { balance: number; seen: Map<string, string>; at: Date };
      assert.equal(handed.balance, 7);
      assert.ok(handed.seen instanceof Map && handed.seen.get('by') === '1.0.1');
      assert.ok(handed.at instanceof Date && handed.at.getTime() === 0);
      assert.deepEqual(await target.api.add(1), { version: '1.0.2', balance: 8 });
      const status = w.runtime.status()[0]!;
      assert.equal(status.isolation, mode);
      assert.equal(status.active.isolate?.mode, mode);
      assert.equal(status.previous?.isolate?.mode, mode);
    } finally {
      await w.close();
    }
  });

  test(`${mode}: the canary judges isolated candidates like inline ones: 10% errors and a 1 ms slowdown are each rolled back`, async () => {
    const { w, target } = await ledger(mode);
    try {
      await applyVersion(w, target, 'ledger-1', '1.0.1');
      const erring = await applyVersion(
        w,
        target,
        'ledger-err',
        '1.0.2',
        { returnErrorOnCanaryFail: false },
        'if (Math.random() < 0.1) throw new Error("bad");',
      );
      assert.equal(erring.result.outcome, 'rolled-back');
      assert.match(erring.result.reason, /candidate failed \d+ of \d+ calls/);
      // 1 ms of work inside the isolate, against a boundary of tens of µs: what the caller sees is ×10 and more.
      const slow = await applyVersion(
        w,
        target,
        'ledger-slow',
        '1.0.3',
        { returnErrorOnCanaryFail: false },
        'const until = performance.now() + 1; while (performance.now() < until) {}',
      );
      assert.equal(slow.result.outcome, 'rolled-back');
      assert.match(slow.result.reason, /latency ×[\d.]+ the baseline's/);
      assert.equal((await target.api.add(0)).version, '1.0.1');
    } finally {
      await w.close();
    }
  });

  test(`${mode}: operator rollback flips to the warm previous isolate; the retired version's isolate is ended once drained`, async () => {
    const { w, target } = await ledger(mode);
    try {
      await applyVersion(w, target, 'ledger-1', '1.0.1');
      const first = target.active;
      await applyVersion(w, target, 'ledger-2', '1.0.2');
      const second = target.active;
      const third = await applyVersion(w, target, 'ledger-3', '1.0.3');
      // Promoting 1.0.3 retired 1.0.1 (two back): its isolate is ended, its memory returned.
      await third.result.drain;
      assert.equal(first.isolate?.state, 'terminated');
      if (mode === 'process') await until(() => !running(first.isolate!.id), 15_000, 'the retired child exited');
      const back = await w.runtime.rollback(T, 'operator');
      assert.equal(back, second);
      assert.equal((await target.api.add(0)).version, '1.0.2');
      assert.equal(second.isolate?.state, 'ready');
    } finally {
      await w.close();
    }
  });

  test(`${mode}: re-applying a payload (A → B → A) gives A a fresh isolate of its own, and a sticky routingKey keeps each key on one side`, async () => {
    const { w, target } = await ledger(mode);
    try {
      await applyVersion(w, target, 'ledger-a', '1.0.1');
      const firstA = target.active;
      await applyVersion(w, target, 'ledger-b', '1.0.2');
      // A again, canaried with a routing key: the same key always lands on the same side.
      const { verified, payload } = signedPatch('ledger-a', T, '1.0.1', ledgerSource('1.0.1'));
      const apply = twoPhaseApply(w.installer, verified, payload, {
        ...FAST,
        steps: [0.5],
        probationMs: 0,
        routingKey: (args: readonly unknown[]) => String(args[0]),
        runtime: w.runtime,
      });
      const sides = new Map<number, Set<string>>();
      await drive(async (i) => {
        const key = i % 20;
        const route = target.canary;
        const { version } = await target.api.add(key);
        // Only calls made and answered within the same running canary count.
        if (route !== null && target.canary === route) (sides.get(key) ?? sides.set(key, new Set()).get(key)!).add(version);
      }, apply);
      const result = await apply;
      assert.equal(result.outcome, 'promoted', result.reason);
      assert.ok(
        [...sides.values()].every((s) => s.size === 1),
        'each key answered by one version during the canary',
      );
      assert.deepEqual(new Set([...sides.values()].flatMap((s) => [...s])), new Set(['1.0.1', '1.0.2']), 'both sides served some keys');
      assert.notEqual(target.active, firstA);
      assert.notEqual(target.active.isolate, firstA.isolate);
      assert.equal(target.active.isolate?.state, 'ready');
      // Promoting A again retired the first A (B's warm previous until then): its isolate is ended.
      await result.drain;
      assert.equal(firstA.isolate?.state, 'terminated');
      assert.equal((await target.api.add(0)).version, '1.0.1');
    } finally {
      await w.close();
    }
  });

  test(`${mode}: a call begun on the candidate finishes there after the canary is aborted; its isolate is ended only once drained`, async () => {
    const { w, target } = await ledger(mode);
    try {
      const { verified, payload } = signedPatch('ledger-slow', T, '1.0.1', ledgerSource('1.0.1'));
      const apply = twoPhaseApply(w.installer, verified, payload, { ...FAST, steps: [1], minCallsPerStep: 1_000_000, runtime: w.runtime });
      await until(() => target.canary !== null, 15_000, 'the canary started');
      const candidate = target.canary!.candidate;
      const inFlight = target.api.slow(300);
      target.abort('operator changed their mind');
      await assert.rejects(apply, isCode('ABORTED'));
      assert.equal(candidate.isolate?.state, 'ready', 'still serving its call in flight');
      assert.equal(await inFlight, '1.0.1');
      await until(() => candidate.isolate?.state === 'terminated', 15_000, 'the drained candidate was ended');
      assert.equal(await target.api.slow(1), '1.0.0');
    } finally {
      await w.close();
    }
  });

  test(`${mode}: the probation watch rolls back a promoted version whose isolate starts dying, back to the warm previous one`, async () => {
    const { w, target } = await ledger(mode, undefined, { maxRestartsPerMinute: 1000 });
    try {
      // Promoted healthy; after promotion, amounts ≥ 1000 make it exit (calls fail with CRASHED).
      const { result } = await applyVersion(
        w,
        target,
        'ledger-late',
        '1.0.1',
        { probationMs: 60_000, retryOnBaseline: false },
        'if (amount >= 1000) process.exit(9);',
      );
      assert.equal(result.outcome, 'promoted');
      let failures = 0;
      for (let i = 0; i < 200 && target.active.patchId !== null; i++) {
        try {
          await target.api.add(i % 2 === 0 ? 1000 : 0);
        } catch (error) {
          assert.ok(isCode('CRASHED')(error));
          failures += 1;
        }
      }
      await until(() => w.events.some((e) => e.type === 'RolledBack'), 15_000, 'the probation watch rolled back');
      assert.equal(target.active.patchId, null);
      assert.ok(failures > 0);
      assert.equal((await target.api.add(1000)).version, '1.0.0');
    } finally {
      await w.close();
    }
  });

  test(`${mode}: after a restart, restore() brings the active version back in a new isolate, and the previous one warm`, async () => {
    const { w, target } = await ledger(mode);
    try {
      await applyVersion(w, target, 'ledger-1', '1.0.1');
      await applyVersion(w, target, 'ledger-2', '1.0.2');
      const oldPid = target.active.isolate!.id;
      await w.runtime.shutdown();
      // A new runtime over the same state directory: the next process after a deploy.
      const runtime = new HotPatchRuntime({ stateDir: w.dir, installer: w.installer, bus: w.bus });
      try {
        const again = runtime.target(T, { version: '1.0.0', impl: builtin(), isolation: mode });
        const reports = await runtime.restore();
        assert.deepEqual(
          reports.map((r) => [r.version, r.patchId]),
          [['1.0.2', 'ledger-2']],
        );
        assert.equal(again.active.isolate?.mode, mode);
        if (mode === 'process') assert.notEqual(again.active.isolate?.id, oldPid);
        assert.equal((await again.api.add(1)).version, '1.0.2');
        assert.equal(again.previous?.version, '1.0.1');
        assert.equal(again.previous?.isolate?.state, 'ready');
        await runtime.rollback(T);
        assert.equal((await again.api.add(1)).version, '1.0.1');
      } finally {
        runtime.close();
      }
    } finally {
      await w.close();
    }
  });

  test(`${mode}: an active isolate that dies is started again on the next call, at most maxRestartsPerMinute times; then CRASHED`, async () => {
    const { w, target } = await ledger(mode, undefined, { maxRestartsPerMinute: 2 });
    try {
      await applyVersion(w, target, 'ledger-exit', '1.0.1', {}, 'if (amount === 13) process.exit(4);');
      const isolate = target.active.isolate!;
      for (let round = 1; round <= 2; round++) {
        await assert.rejects(target.api.add(13), isCode('CRASHED', /exited with code 4/));
        assert.equal(isolate.state, 'dead');
        assert.equal((await target.api.add(1)).version, '1.0.1');
        assert.equal(isolate.restarts, round);
      }
      await assert.rejects(target.api.add(13), isCode('CRASHED'));
      await assert.rejects(target.api.add(1), isCode('CRASHED', /after 2 restarts in the last minute/));
      // The metrics say so too: the version's isolate is dead and was restarted twice.
      const metrics = new HotPatchMetrics({ runtime: w.runtime, bus: w.bus });
      const text = await metrics.metrics();
      metrics.close();
      assert.match(text, new RegExp(`hotpatch_isolate_info\\{target="${T}",version="1.0.1",mode="${mode}",state="dead"\\} 1`));
      assert.match(text, new RegExp(`hotpatch_isolate_restarts_total\\{target="${T}",version="1.0.1"\\} 2`));
    } finally {
      await w.close();
    }
  });

  test(`${mode}: a call past callTimeoutMs fails with TIMEOUT while the isolate, still answering pings, keeps serving`, async () => {
    const { w, target } = await ledger(mode, undefined, { callTimeoutMs: 150 });
    try {
      await applyVersion(w, target, 'ledger-1', '1.0.1');
      await assert.rejects(target.api.slow(2_000), isCode('TIMEOUT', /did not answer within 150 ms/));
      assert.equal(await target.api.slow(1), '1.0.1');
      assert.equal(target.active.isolate?.state, 'ready');
      assert.equal(target.active.isolate?.restarts, 0);
    } finally {
      await w.close();
    }
  });

  test(`${mode}: arguments and results cross by structured clone; a function cannot cross either way and is a clear error`, async () => {
    const { w, target } = await ledger(mode);
    try {
      await applyVersion(w, target, 'ledger-1', '1.0.1');
      const value = { bytes: new Uint8Array([1, 2, 3]), when: new Date(5), tags: new Set(['a']), nested: [{ n: 1n }] };
      const back = (await target.api.echo(value)) as typeof value;
      assert.deepEqual(back, value);
      assert.notEqual(back, value, 'a copy, not the same object');
      await assert.rejects(
        target.api.echo(() => 1),
        isCode('INVALID', /an argument of this call cannot cross into/),
      );
      await assert.rejects(target.api.echo('give me a function'), /cannot cross the isolation boundary/);
      // The standard error classes come back as themselves.
      await assert.rejects(target.api.echo('throw a range error'), (error: unknown) => error instanceof RangeError && /out of range/.test(error.message));
      assert.equal((await target.api.add(1)).version, '1.0.1');
    } finally {
      await w.close();
    }
  });
}

test('isolation declarations are checked: an unknown mode, bad limits and a wasm adapter are INVALID', async () => {
  const w = await world();
  try {
    const impl = { f: () => 1 };
    assert.throws(() => w.runtime.target('xps.a.b', { version: '1.0.0', impl, isolation: 'thread' as never }), isCode('INVALID', /isolation must be/));
    assert.throws(
      () => w.runtime.target('xps.a.c', { version: '1.0.0', impl, isolation: 'worker', isolationLimits: { callTimeoutMs: 0 } }),
      isCode('INVALID', /callTimeoutMs/),
    );
    assert.throws(
      () => w.runtime.target('xps.a.d', { version: '1.0.0', impl, isolation: 'process', isolationLimits: { memoryMb: 64 } }),
      isCode('INVALID', /memoryMb must be an integer between 160/),
    );
    assert.throws(
      () => w.runtime.target('xps.a.e', { version: '1.0.0', impl, isolation: 'worker', adapter: { toApi: () => ({}) } }),
      isCode('INVALID', /wasm targets run inline/),
    );
    assert.throws(
      () => w.runtime.target('xps.a.f', { version: '1.0.0', impl, isolation: 'worker', isolationLimits: { callTimeoutMS: 5 } as never }),
      isCode('INVALID', /unknown field "callTimeoutMS"/),
    );
    assert.throws(
      () => w.runtime.target('xps.a.g', { version: '1.0.0', impl, isolationLimits: { callTimeoutMs: 5 } }),
      isCode('INVALID', /not to an inline target/),
    );
    assert.deepEqual(
      w.runtime.list().map((t) => t.name),
      [],
    );
  } finally {
    await w.close();
  }
});

test('an installer that ignores LoadOptions.isolation is refused (LOAD_FAILED): nothing runs uncontained behind an async interface', async () => {
  const w = await world();
  try {
    const target = w.runtime.target(T, { version: '1.0.0', impl: builtin(), isolation: 'worker' });
    const careless: PatchInstaller = {
      kind: 'careless',
      stage: (m, f, p, signal) => w.installer.stage(m, f, p, signal),
      verifyStaged: (sha, type) => w.installer.verifyStaged(sha, type),
      release: (t, sha) => w.installer.release(t, sha),
      load: (staged, { isolation: _ignored, ...inline }) => w.installer.load(staged, inline),
    };
    const { verified, payload } = signedPatch('careless-1', T, '1.0.1', ledgerSource('1.0.1'));
    await assert.rejects(twoPhaseApply(careless, verified, payload, { ...FAST, runtime: w.runtime }), isCode('LOAD_FAILED', /honours LoadOptions.isolation/));
    assert.equal((await target.api.add(1)).version, '1.0.0');
  } finally {
    await w.close();
  }
});

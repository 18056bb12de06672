/*
 * The target contract (docs/ARCHITECTURE.md "Data flow of one apply"): what `target.api` looks like,
 * how each call is routed to exactly one version, how `this` and arguments travel, and when
 * a version is disposed. Every patch here is really signed, verified, staged and imported.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { twoPhaseApply, type ApplyOptions, type ApplyResult, type Target } from '../../src/zero-downtime/index.js';
import { drive, signedPatch, world, type World } from './fixtures.js';
import { isCode } from '../support/assertions.js';
import { turns, until } from '../support/wait.js';

/** The fastest settings that still run a real canary step (one step at 100 %, one call needed). */
const FASTEST: ApplyOptions = { steps: [1], canaryInterval: 1, minCallsPerStep: 1, jitterRatio: 0 };

interface Gate {
  promise: Promise<void>;
  open: () => void;
}

/** A promise the test resolves when it chooses: holds an async call in flight. */
function gate(): Gate {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

/**
 * Awaits `p` while holding the event loop open: drain timers are unref'd (a drain must not keep
 * a process alive), so in a test with nothing else pending the process would exit first.
 */
async function held<T>(p: Promise<T>): Promise<T> {
  const timer = setInterval(() => {}, 1000);
  try {
    return await p;
  } finally {
    clearInterval(timer);
  }
}

/** A global list a patch's dispose() (or a host's) records into; unique per test. */
function record(key: string): string[] {
  const g = globalThis as unknown as Record<string, string[] | undefined>;
  return (g[key] ??= []);
}

/** Applies a patch with the fastest real canary, calling `poke` meanwhile so the candidate gets calls. */
async function promote(
  w: World,
  name: string,
  id: string,
  version: string,
  source: string,
  poke: () => unknown,
  extra: ApplyOptions = {},
): Promise<ApplyResult> {
  const { verified, payload } = signedPatch(id, name, version, source);
  const apply = twoPhaseApply(w.installer, verified, payload, { ...FASTEST, runtime: w.runtime, ...extra });
  const load = await drive(poke, apply);
  const result = await apply;
  assert.equal(result.outcome, 'promoted', result.reason);
  assert.equal(load.errors.length, 0, `calls failed during the apply: ${String(load.errors[0])}`);
  return result;
}

interface RunningCanary {
  apply: Promise<ApplyResult>;
  /** Aborts the canary (routing goes back to the baseline) and checks the apply ended ABORTED. */
  stop: () => Promise<void>;
}

/** Starts a canary that stays at its first step (long interval, never enough calls) until stopped. */
async function startCanary(w: World, name: string, id: string, version: string, source: string, extra: ApplyOptions = {}): Promise<RunningCanary> {
  const target = w.runtime.get(name);
  const controller = new AbortController();
  const { verified, payload } = signedPatch(id, name, version, source);
  const apply = twoPhaseApply(w.installer, verified, payload, {
    runtime: w.runtime,
    steps: [0.5, 1],
    canaryInterval: 60_000,
    jitterRatio: 0,
    minCallsPerStep: Number.MAX_SAFE_INTEGER,
    signal: controller.signal,
    ...extra,
  });
  // A failure before the canary starts (load, self-test) surfaces here instead of a timeout.
  await Promise.race([apply, until(() => target.canary !== null, 15_000, `the canary of ${id}`)]);
  return {
    apply,
    stop: async () => {
      controller.abort(new Error('test finished with the canary'));
      await assert.rejects(apply, isCode('ABORTED'));
      assert.equal(target.canary, null);
    },
  };
}

test('target.api has the implementation interface: own and prototype methods of a class instance, nothing else', async () => {
  const w = await world();
  try {
    class Base {
      inherited(): string {
        return 'inherited';
      }
      overridden(): string {
        return 'base';
      }
    }
    class Impl extends Base {
      data = 42;
      own = (): string => 'own';
      get computed(): number {
        return 1;
      }
      fromPrototype(): string {
        return 'prototype';
      }
      override overridden(): string {
        return 'impl';
      }
      async later(): Promise<string> {
        return 'later';
      }
    }
    const target = w.runtime.target('xps.test.shape', { version: '1.0.0', impl: new Impl() });
    const keys = ['fromPrototype', 'inherited', 'later', 'overridden', 'own'];
    assert.deepEqual(Object.keys(target.api).sort(), keys);
    assert.deepEqual([...target.keys].sort(), keys);
    assert.ok(Object.isFrozen(target.api));
    for (const k of keys) {
      const fn = (target.api as unknown as Record<string, unknown>)[k];
      assert.equal(typeof fn, 'function', k);
      assert.equal((fn as { name: string }).name, k);
    }
    // No data, accessor or constructor leaks into the interface.
    assert.equal('data' in target.api, false);
    assert.equal('computed' in target.api, false);
    assert.equal(Object.hasOwn(target.api, 'constructor'), false);
    assert.equal(target.api.own(), 'own');
    assert.equal(target.api.fromPrototype(), 'prototype');
    assert.equal(target.api.inherited(), 'inherited');
    assert.equal(target.api.overridden(), 'impl');
    assert.equal(await target.api.later(), 'later');
    assert.equal(w.runtime.get('xps.test.shape'), target);
  } finally {
    await w.close();
  }
});

test('sync methods return values and async methods return promises, steady and during a canary', async () => {
  const w = await world();
  try {
    const name = 'xps.test.sync-async';
    const target = w.runtime.target(name, {
      version: '1.0.0',
      impl: {
        inc: (x: number) => x + 1,
        async twice(x: number) {
          return 2 * x;
        },
      },
    });
    const check = async (): Promise<void> => {
      for (let i = 0; i < 50; i++) {
        const sync: unknown = target.api.inc(i);
        assert.equal(sync, i + 1, 'a sync method returns its value itself, not a promise');
        const pending: unknown = target.api.twice(i);
        assert.ok(pending instanceof Promise, 'an async method returns a promise');
        assert.equal(await pending, 2 * i);
      }
    };
    await check();
    const canary = await startCanary(w, name, 'sync-async-1', '1.0.1', 'export const api = { inc: (x) => x + 1, async twice(x) { return 2 * x; } };');
    try {
      await check();
      assert.ok(target.canary!.candidateStats.calls > 0 && target.canary!.baselineStats.calls > 0, 'both sides served calls');
    } finally {
      await canary.stop();
    }
    await check();
  } finally {
    await w.close();
  }
});

const SLOW_PATCH = (label: string) => `
export const api = {
  helper() { return '${label}'; },
  async slow(gate) {
    const before = this.helper();
    await gate;
    return { before, after: this.helper(), self: this };
  },
};`;

test("this is the active version's own object: nested this.helper() stays on the version the call began on across a promotion and a rollback", async () => {
  const w = await world();
  try {
    const name = 'xps.test.this';
    class V1 {
      helper(): string {
        return 'v1';
      }
      async slow(g: Promise<void>): Promise<{ before: string; after: string; self: unknown }> {
        const before = this.helper();
        await g;
        return { before, after: this.helper(), self: this };
      }
    }
    const impl = new V1();
    const target = w.runtime.target(name, { version: '1.0.0', impl });
    const builtin = target.active;

    // A call begins on v1 and waits; v2 is promoted meanwhile.
    const g1 = gate();
    const onV1 = target.api.slow(g1.promise);
    assert.equal(builtin.inflight, 1);
    await promote(w, name, 'this-v2', '2.0.0', SLOW_PATCH('v2'), () => target.api.helper());
    const v2 = target.active;
    assert.equal(v2.version, '2.0.0');
    assert.equal(target.api.helper(), 'v2');
    assert.equal(builtin.inflight, 1, 'the call begun on v1 is still counted on v1');
    g1.open();
    const r1 = await onV1;
    assert.equal(r1.before, 'v1');
    assert.equal(r1.after, 'v1', 'this.helper() after the promotion still ran v1');
    assert.equal(r1.self, impl, 'this was the built-in implementation object');
    assert.equal(builtin.inflight, 0);

    // A call begins on v2 and waits; an operator rolls back meanwhile.
    const g2 = gate();
    const onV2 = target.api.slow(g2.promise);
    assert.equal(v2.inflight, 1);
    await w.runtime.rollback(name, 'test rollback mid-call');
    assert.equal(target.active, builtin);
    assert.equal(target.api.helper(), 'v1');
    g2.open();
    const r2 = await onV2;
    assert.equal(r2.before, 'v2');
    assert.equal(r2.after, 'v2', 'this.helper() after the rollback still ran v2');
    assert.equal(r2.self, v2.impl, "this was the patch's own api object");
    assert.notEqual(r2.self, target.api, 'never the routed api (that would re-route nested calls)');
    assert.equal(v2.inflight, 0);
  } finally {
    await w.close();
  }
});

test('an explicit other this (target.api.m.call(obj)) is passed through untouched, steady and during a canary', async () => {
  const w = await world();
  try {
    const name = 'xps.test.explicit-this';
    const impl = {
      whoami(this: unknown): unknown {
        return this;
      },
      async whoamiLater(this: unknown): Promise<unknown> {
        await null;
        return this;
      },
    };
    const target = w.runtime.target(name, { version: '1.0.0', impl });
    const obj = { mine: true };
    const check = async (versionsSelf: readonly unknown[]): Promise<void> => {
      assert.equal(target.api.whoami.call(obj), obj);
      assert.equal(await target.api.whoamiLater.call(obj), obj);
      assert.equal(target.api.whoami.call(undefined), undefined, 'an undefined this stays undefined');
      const detached = target.api.whoami;
      assert.equal(detached(), undefined);
      assert.ok(versionsSelf.includes(target.api.whoami()), 'called as target.api.m(), this is a version object');
    };
    await check([impl]);
    const canary = await startCanary(
      w,
      name,
      'explicit-this-1',
      '1.0.1',
      'export const api = { whoami() { return this; }, async whoamiLater() { await null; return this; } };',
    );
    try {
      const candidateImpl = target.canary!.candidate.impl;
      for (let i = 0; i < 20; i++) await check([impl, candidateImpl]);
      assert.ok(target.canary!.candidateStats.calls > 0, 'the candidate served some of these calls');
    } finally {
      await canary.stop();
    }
  } finally {
    await w.close();
  }
});

test('arguments and return values travel untouched (same identity, same count), steady and during a canary', async () => {
  const w = await world();
  try {
    const name = 'xps.test.arguments';
    const target = w.runtime.target(name, {
      version: '1.0.0',
      impl: {
        echo: (...args: unknown[]) => args,
        async echoLater(...args: unknown[]) {
          await null;
          return args;
        },
      },
    });
    const obj = { id: 1 };
    const buf = Buffer.from('abc');
    const fn = (): void => {};
    const check = async (): Promise<void> => {
      const out = target.api.echo(obj, buf, undefined, fn);
      assert.equal(out.length, 4, 'a trailing undefined is still passed');
      assert.equal(out[0], obj);
      assert.equal(out[1], buf);
      assert.equal(out[2], undefined);
      assert.equal(out[3], fn);
      assert.deepEqual(target.api.echo(), []);
      const later = await target.api.echoLater(obj, buf);
      assert.equal(later[0], obj);
      assert.equal(later[1], buf);
      assert.equal(later.length, 2);
    };
    await check();
    const canary = await startCanary(
      w,
      name,
      'arguments-1',
      '1.0.1',
      'export const api = { echo: (...args) => args, async echoLater(...args) { await null; return args; } };',
    );
    try {
      for (let i = 0; i < 20; i++) await check();
    } finally {
      await canary.stop();
    }
  } finally {
    await w.close();
  }
});

test('a call begun on the canary candidate finishes there after the canary is aborted; the candidate is disposed only once drained', async () => {
  const w = await world();
  try {
    const name = 'xps.test.canary-drain';
    const log = record('__hotpatchRoutingCanaryDrain');
    const target = w.runtime.target(name, {
      version: '1.0.0',
      impl: {
        helper: () => 'A',
        async slow(g: Promise<void>) {
          await g;
          return 'A';
        },
      },
    });
    const source = `export const api = { helper() { return 'B'; }, async slow(gate) { const before = this.helper(); await gate; return before + this.helper(); } };
export function dispose() { globalThis.__hotpatchRoutingCanaryDrain.push('dispose B'); }`;
    // steps [1]: every call goes to the candidate while the canary runs.
    const canary = await startCanary(w, name, 'canary-drain-1', '1.0.1', source, { steps: [1] });
    const candidate = target.canary!.candidate;
    const g = gate();
    const pending: Promise<string> = target.api.slow(g.promise);
    assert.equal(candidate.inflight, 1);
    await canary.stop();
    assert.equal(target.api.helper(), 'A', 'after the abort every new call is on the baseline');
    await turns(); // whatever a premature disposal would do is queued by now: give it its turns
    assert.deepEqual(log, [], 'dispose() is not called while a call is in flight on the candidate');
    assert.equal(candidate.disposed, false);
    g.open();
    assert.equal(await pending, 'BB', 'the call finished on the candidate it began on');
    await until(() => candidate.disposed, 15_000, 'the drained candidate to be disposed');
    assert.deepEqual(log, ['dispose B']);
    assert.equal(candidate.inflight, 0);
  } finally {
    await w.close();
  }
});

test('a rolled-back version is not disposed while its async calls are in flight, and is disposed once drained', async () => {
  const w = await world();
  try {
    const name = 'xps.test.drain';
    const log = record('__hotpatchRoutingDrain');
    const target = w.runtime.target(name, {
      version: '1.0.0',
      impl: {
        helper: () => 'A',
        async slow(g: Promise<void>) {
          await g;
          return 'A';
        },
      },
      dispose: () => log.push('dispose A'),
    });
    const source = `export const api = { helper: () => 'B', async slow(gate) { await gate; return 'B'; } };
export function dispose() { globalThis.__hotpatchRoutingDrain.push('dispose B'); }`;
    await promote(w, name, 'drain-b', '1.0.1', source, () => target.api.helper());
    const b = target.active;
    const gates = [gate(), gate()];
    const pending = gates.map((g) => target.api.slow(g.promise));
    assert.equal(b.inflight, 2);
    await w.runtime.rollback(name, 'test');
    assert.equal(target.api.helper(), 'A');
    gates[0]!.open();
    assert.equal(await pending[0], 'B');
    await turns(); // whatever a premature disposal would do is queued by now: give it its turns
    assert.deepEqual(log, [], 'one call still in flight: not disposed');
    assert.equal(b.disposed, false);
    gates[1]!.open();
    assert.equal(await pending[1], 'B');
    await until(() => log.length > 0, 15_000, 'dispose() of the drained version');
    assert.deepEqual(log, ['dispose B'], 'only the drained version is disposed, never the active one');
    assert.equal(b.disposed, true);
    assert.equal(target.active.disposed, false);
  } finally {
    await w.close();
  }
});

test('a drain timeout emits a HOTPATCH_DRAIN_TIMEOUT warning and disposal waits until the call finishes', async () => {
  const w = await world();
  const warnings: Error[] = [];
  const onWarning = (warning: Error): void => {
    if ((warning as Error & { code?: string }).code === 'HOTPATCH_DRAIN_TIMEOUT') warnings.push(warning);
  };
  process.on('warning', onWarning);
  try {
    const name = 'xps.test.drain-timeout';
    const log = record('__hotpatchRoutingDrainTimeout');
    const target = w.runtime.target(name, {
      version: '1.0.0',
      impl: {
        helper: () => 'A',
        async slow(g: Promise<void>) {
          await g;
          return 'A';
        },
      },
      dispose: () => log.push('dispose A'),
    });
    const builtin = target.active;
    const g = gate();
    const pending = target.api.slow(g.promise);
    // A → B keeps A warm as previous; B → C retires A, which still has the call in flight.
    const patch = (label: string) => `export const api = { helper: () => '${label}', async slow(gate) { await gate; return '${label}'; } };`;
    await promote(w, name, 'timeout-b', '1.0.1', patch('B'), () => target.api.helper());
    assert.equal(target.previous, builtin);
    const result = await promote(w, name, 'timeout-c', '1.0.2', patch('C'), () => target.api.helper(), { drainTimeoutMs: 20 });
    assert.equal(target.api.helper(), 'C');
    assert.ok(result.drain !== undefined, 'the promotion retired the built-in version');
    const report = await held(result.drain!);
    assert.deepEqual(report, { version: '1.0.0', drained: false, inflight: 1 });
    await until(() => warnings.length > 0, 15_000, 'the HOTPATCH_DRAIN_TIMEOUT warning');
    assert.match(warnings[0]!.message, /xps\.test\.drain-timeout 1\.0\.0 \(built-in\): 1 calls still in flight after 20 ms/);
    await turns(); // whatever a premature disposal would do is queued by now: give it its turns
    assert.deepEqual(log, [], 'never force-disposed on timeout');
    assert.equal(builtin.disposed, false);
    g.open();
    assert.equal(await pending, 'A', 'the slow call finished on the version it began on');
    await until(() => log.length > 0, 15_000, 'dispose() once the late call finished');
    assert.deepEqual(log, ['dispose A']);
    assert.equal(builtin.disposed, true);
    assert.equal(warnings.length, 1);
  } finally {
    process.off('warning', onWarning);
    await w.close();
  }
});

test('sticky routingKey: during a canary the same key always lands on the same side, salted by the patch id', async () => {
  const w = await world();
  try {
    const name = 'xps.test.sticky';
    // Not deterministic: a deterministic target would hand out the baseline's answer on compared calls.
    const target = w.runtime.target(name, { version: '1.0.0', impl: { side: (key: string) => `baseline:${key}` } });
    const source = 'export const api = { side: (key) => `candidate:${key}` };';
    const keys = Array.from({ length: 200 }, (_, i) => `user-${i}`);
    const sides = async (id: string): Promise<Map<string, string>> => {
      const canary = await startCanary(w, name, id, '1.0.1', source, { routingKey: (args) => String(args[0]) });
      try {
        const seen = new Map<string, string>();
        for (let round = 0; round < 5; round++) {
          for (let i = 0; i < keys.length; i++) {
            const key = keys[(i * 7 + round * 13) % keys.length]!; // a different order each round
            const [side, echoed] = target.api.side(key).split(':');
            assert.equal(echoed, key);
            const before = seen.get(key);
            if (before === undefined) seen.set(key, side!);
            else assert.equal(side, before, `key ${key} moved from ${before} to ${side} (${id}, round ${round})`);
          }
        }
        return seen;
      } finally {
        await canary.stop();
      }
    };
    const first = await sides('sticky-1');
    const onCandidate = [...first.values()].filter((s) => s === 'candidate').length;
    assert.ok(onCandidate >= 60 && onCandidate <= 140, `about half of 200 keys should be on the candidate at ratio 0.5, got ${onCandidate}`);
    const second = await sides('sticky-2');
    const moved = keys.filter((k) => first.get(k) !== second.get(k)).length;
    assert.ok(moved > 0, 'another patch id buckets keys differently');
    assert.equal(target.api.side('x'), 'baseline:x');
  } finally {
    await w.close();
  }
});

test('asyncMethods: a plain function returning a promise is counted in flight only when declared', async () => {
  const w = await world();
  try {
    const declared = w.runtime.target('xps.test.async-declared', {
      version: '1.0.0',
      impl: { fetch: (g: Promise<void>) => g.then(() => 'done') },
      asyncMethods: ['fetch'],
    });
    const undeclared = w.runtime.target('xps.test.async-undeclared', {
      version: '1.0.0',
      impl: { fetch: (g: Promise<void>) => g.then(() => 'done') },
    });
    const g = gate();
    const a = declared.api.fetch(g.promise);
    const b = undeclared.api.fetch(g.promise);
    assert.ok(a instanceof Promise && b instanceof Promise);
    assert.equal(declared.active.inflight, 1, 'declared: the pending promise is a call in flight');
    assert.equal(undeclared.active.inflight, 0, 'undeclared: a sync function, nothing tracked');
    g.open();
    assert.equal(await a, 'done');
    assert.equal(await b, 'done');
    assert.equal(declared.active.inflight, 0);

    // A rejected promise leaves the count too.
    const failing = w.runtime.target('xps.test.async-rejects', {
      version: '1.0.0',
      impl: { fetch: () => Promise.reject(new Error('remote down')) },
      asyncMethods: ['fetch'],
    });
    const rejected = failing.api.fetch();
    assert.equal(failing.active.inflight, 1);
    await assert.rejects(rejected, /remote down/);
    assert.equal(failing.active.inflight, 0);
  } finally {
    await w.close();
  }
});

test('declaration errors are INVALID, an unknown target name is NOT_FOUND, and nothing half-declared is kept', async () => {
  const w = await world();
  try {
    const rt = w.runtime;
    const ok = rt.target('xps.test.decl', { version: '1.0.0', impl: { f: () => 1 } });
    const invalid = isCode('INVALID');
    assert.throws(() => rt.target('xps.test.v1', { version: 'one', impl: { f: () => 1 } }), invalid);
    assert.throws(() => rt.target('xps.test.v2', { version: '1.0', impl: { f: () => 1 } }), invalid);
    assert.throws(() => rt.target('xps.test.v3', { version: 1 as unknown as string, impl: { f: () => 1 } }), invalid);
    assert.throws(() => rt.target('xps.test.i1', { version: '1.0.0', impl: {} }), invalid);
    assert.throws(() => rt.target('xps.test.i2', { version: '1.0.0', impl: { a: 1, b: 'x' } }), invalid);
    assert.throws(() => rt.target('xps.test.i3', { version: '1.0.0', impl: null as unknown as object }), invalid);
    assert.throws(
      () => rt.target('xps.test.decl', { version: '2.0.0', impl: { g: () => 2 } }),
      (e: unknown) => invalid(e) && /already declared/.test((e as Error).message),
    );
    assert.throws(
      () => rt.target('xps.test.a1', { version: '1.0.0', impl: { f: () => 1 }, asyncMethods: ['nope' as 'f'] }),
      (e: unknown) => invalid(e) && /nope/.test((e as Error).message),
    );
    assert.throws(() => rt.target('bad name!', { version: '1.0.0', impl: { f: () => 1 } }), invalid);
    assert.throws(
      () => rt.get('xps.test.nowhere'),
      (e: unknown) => isCode('NOT_FOUND')(e) && /xps\.test\.decl/.test((e as Error).message),
    );
    assert.deepEqual(
      rt.list().map((t) => t.name),
      ['xps.test.decl'],
    );
    assert.equal(rt.get('xps.test.decl'), ok);
    assert.equal(ok.api.f(), 1, 'the first declaration is untouched by the refused duplicate');
  } finally {
    await w.close();
  }
});

/*
 * An esm payload is imported once per process and cached, so two RuntimeVersion objects of the
 * same payload share one module: retiring the old object must not call the shared module's
 * dispose() while another version of the same module is live.
 */
test('re-applying a payload that is still warm (A → B → A) must not dispose the module the active version runs on', async () => {
  const w = await world();
  try {
    const name = 'xps.test.shared-module';
    const target: Target<{ get(): string }> = w.runtime.target(name, { version: '1.0.0', impl: { get: () => 'builtin' } });
    const module = (label: string) => `let open = false;
export function init() { open = true; }
export function dispose() { open = false; }
export const api = { get() { if (!open) throw new Error('${label}: its module was disposed'); return '${label}'; } };`;
    await promote(w, name, 'shared-a', '1.1.0', module('A'), () => target.api.get());
    await promote(w, name, 'shared-b', '1.2.0', module('B'), () => target.api.get());
    const back = await promote(w, name, 'shared-a2', '1.3.0', module('A'), () => target.api.get());
    if (back.drain !== undefined) await held(back.drain);
    assert.equal(target.api.get(), 'A');
  } finally {
    await w.close();
  }
});

/*
 * The same shared module, seen from the other side: a candidate that is loaded (init has run)
 * but still in its self-tests is in no routing slot yet, and an old version of the same
 * payload that drains at that moment must not dispose the module under it.
 */
test('a payload re-applied while its previous version still drains keeps its module through load, self-test and canary', async () => {
  const w = await world();
  const keepAlive = setInterval(() => {}, 1000);
  try {
    const name = 'xps.test.shared-module-drain';
    let selfTestGate: Promise<void> | undefined;
    let inSelfTest = false;
    const target = w.runtime.target(name, {
      version: '1.0.0',
      impl: {
        get: () => 'builtin',
        async slow(g: Promise<void>) {
          await g;
          return 'builtin';
        },
      },
      selfTest: async () => {
        inSelfTest = true;
        await selfTestGate;
      },
    });
    const source = `let open = false;
export function init() { open = true; }
export function dispose() { open = false; }
export const api = { get() { if (!open) throw new Error('A: its module was disposed'); return 'A'; }, async slow(gate) { await gate; return 'A'; } };`;
    await promote(w, name, 'drain-share-a', '1.1.0', source, () => target.api.get());
    const old = target.active;
    const call = gate();
    const onOld = target.api.slow(call.promise);
    await w.runtime.rollback(name, 'test');
    // Re-apply the same payload; hold it in the host's self-test (after load and init).
    const selfTest = gate();
    selfTestGate = selfTest.promise;
    inSelfTest = false;
    const { verified, payload } = signedPatch('drain-share-a', name, '1.1.0', source);
    const apply = twoPhaseApply(w.installer, verified, payload, { ...FASTEST, runtime: w.runtime });
    apply.catch(() => undefined);
    await until(() => inSelfTest, 15_000, 'the candidate to reach its self-test');
    call.open();
    assert.equal(await onOld, 'A');
    await until(() => old.disposed, 15_000, 'the old version to drain and be disposed');
    selfTest.open();
    const load = await drive(() => target.api.get(), apply);
    const result = await apply;
    assert.equal(result.outcome, 'promoted', result.reason);
    assert.equal(load.errors.length, 0, String(load.errors[0]));
    assert.equal(target.api.get(), 'A');
  } finally {
    clearInterval(keepAlive);
    await w.close();
  }
});

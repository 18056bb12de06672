/*
 * Many async calls in flight during 200 promote/rollback cycles: every call completes on
 * exactly one version, and none fails for a reason other than its own code.
 *
 * ES modules cannot be unloaded and the installer caps distinct modules per target (16), so
 * three payloads take turns; applying one again reuses its cached module (content-addressed).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { twoPhaseApply, type ApplyOptions, type RuntimeVersion } from '../../src/zero-downtime/index.js';
import { signedPatch, world } from './fixtures.js';
import { until } from '../support/wait.js';

const T = 'xps.test.concurrency';
const CYCLES = 200;
const IN_FLIGHT = 50;
/** Inputs every version rejects by contract (its own deliberate error, about 1.6 % of calls). */
const REJECTED = (n: number): boolean => n % 61 === 0;
const rejection = (n: number): string => `rejected by contract: ${n}`;

interface WorkResult {
  /** this.version() when the call began, and after its await. */
  started: string;
  finished: string;
  /** The version constant of the module whose code ran. */
  module: string;
  n: number;
}

interface Shared {
  init: Record<string, number>;
  dispose: Record<string, number>;
  open: Record<string, boolean>;
  /** Calls that began or ended while their module was disposed: a shared module is disposed only once no version uses it. */
  ranDisposed: number;
}

const shared = ((globalThis as unknown as { __hotpatchConcurrency?: Shared }).__hotpatchConcurrency ??= {
  init: {},
  dispose: {},
  open: {},
  ranDisposed: 0,
});

/** A short random pause: a microtask, a macrotask, or a timer of 0-1 ms. */
function pause(): Promise<void> {
  const r = Math.random();
  if (r < 0.25) return Promise.resolve();
  if (r < 0.5) return new Promise((resolve) => setImmediate(resolve));
  return new Promise((resolve) => setTimeout(resolve, r < 0.75 ? 0 : 1));
}

/** The payloads: the same contract as the built-in, each with its own version constant. */
const payload = (label: string): string => `
const VERSION = '${label}';
const g = globalThis.__hotpatchConcurrency;
export function init() { g.init[VERSION] = (g.init[VERSION] ?? 0) + 1; g.open[VERSION] = true; }
export function dispose() { g.dispose[VERSION] = (g.dispose[VERSION] ?? 0) + 1; g.open[VERSION] = false; }
function pause() {
  const r = Math.random();
  if (r < 0.25) return Promise.resolve();
  if (r < 0.5) return new Promise((resolve) => setImmediate(resolve));
  return new Promise((resolve) => setTimeout(resolve, r < 0.75 ? 0 : 1));
}
export const api = {
  version() { return VERSION; },
  async work(n) {
    const started = this.version();
    if (g.open[VERSION] !== true) g.ranDisposed += 1;
    await pause();
    if (n % 61 === 0) throw new RangeError('rejected by contract: ' + n);
    if (g.open[VERSION] !== true) g.ranDisposed += 1;
    return { started, finished: this.version(), module: VERSION, n };
  },
};`;

/** The host's built-in implementation (a class instance: `this` is the instance). */
class HostService {
  version(): string {
    return 'builtin';
  }
  async work(n: number): Promise<WorkResult> {
    const started = this.version();
    await pause();
    if (REJECTED(n)) throw new RangeError(rejection(n));
    return { started, finished: this.version(), module: 'builtin', n };
  }
}

test(`${IN_FLIGHT} async calls in flight during ${CYCLES} promote/rollback cycles: each completes on exactly one version, none fails but by its own contract`, async (t) => {
  const w = await world();
  try {
    const target = w.runtime.target(T, { version: '1.0.0', impl: new HostService() });
    const patches = ['A', 'B', 'C'].map((label, i) => signedPatch(`concurrency-${label}`, T, `1.${i + 1}.0`, payload(label)));
    const versions = new Set<RuntimeVersion>([target.active]);

    const perVersion = new Map<string, number>();
    const unexpected: unknown[] = [];
    let completed = 0;
    let deliberate = 0;
    let next = 0;
    let stop = false;
    const worker = async (): Promise<void> => {
      while (!stop) {
        const n = next++;
        try {
          const r = await target.api.work(n);
          if (r.n !== n || r.started !== r.finished || r.started !== r.module) {
            unexpected.push(new Error(`call ${n} did not run on exactly one version: ${JSON.stringify(r)}`));
          }
          perVersion.set(r.module, (perVersion.get(r.module) ?? 0) + 1);
          completed += 1;
        } catch (error) {
          if (REJECTED(n) && error instanceof RangeError && error.message === rejection(n)) deliberate += 1;
          else unexpected.push(error);
        }
      }
    };
    const workers = Array.from({ length: IN_FLIGHT }, () => worker());

    const started = performance.now();
    const outcomes = new Map<string, number>();
    let maxInflight = 0;
    for (let cycle = 0; cycle < CYCLES; cycle++) {
      const { verified, payload: bytes } = patches[cycle % patches.length]!;
      const options: ApplyOptions = {
        runtime: w.runtime,
        steps: cycle % 2 === 0 ? [1] : [0.5, 1],
        canaryInterval: 1,
        minCallsPerStep: 1,
        minCalls: 0,
        jitterRatio: 0,
        // The payloads reject ~1.6 % of inputs by contract, and 0-1 ms random pauses are no
        // latency signal: this test is about routing, not about the canary's judgement.
        maxErrorRate: 0.5,
        maxLatencyRatio: 1000,
      };
      const result = await twoPhaseApply(w.installer, verified, bytes, options);
      outcomes.set(result.outcome, (outcomes.get(result.outcome) ?? 0) + 1);
      assert.equal(result.outcome, 'promoted', `cycle ${cycle}: ${result.reason}`);
      versions.add(target.active);
      maxInflight = Math.max(maxInflight, target.active.inflight + target.builtin.inflight);
      const restored = await w.runtime.rollback(T, `cycle ${cycle}`);
      assert.equal(restored, target.builtin);
      assert.equal(target.active, target.builtin);
    }
    const swapMs = performance.now() - started;

    stop = true;
    await Promise.all(workers);

    // Every version drained; every patch version was disposed once drained (never the built-in).
    const patchVersions = [...versions].filter((v) => v !== target.builtin);
    assert.equal(patchVersions.length, CYCLES, 'one version object per apply');
    await until(() => patchVersions.every((v) => v.disposed), 15_000, 'every patch version to be disposed').catch((error: Error) => {
      throw new Error(`${error.message}: ${patchVersions.filter((v) => !v.disposed).length} versions never disposed`);
    });
    for (const v of versions) assert.equal(v.inflight, 0, `${v.label} still counts ${v.inflight} calls in flight`);
    assert.equal(target.builtin.disposed, false);
    const disposeCalls = Object.values(shared.dispose).reduce((a, b) => a + b, 0);
    const initCalls = Object.values(shared.init).reduce((a, b) => a + b, 0);
    assert.equal(initCalls, CYCLES, 'init(ctx) ran once per load');
    assert.equal(disposeCalls, CYCLES, 'dispose() ran once per retired version');

    const counts = Object.fromEntries([...perVersion.entries()].sort());
    t.diagnostic(
      `${completed} calls completed (${deliberate} deliberate rejections) in ${(swapMs / 1000).toFixed(2)} s of ${CYCLES} cycles ` +
        `(${(swapMs / CYCLES).toFixed(1)} ms per promote+rollback), ${IN_FLIGHT} in flight; per version ${JSON.stringify(counts)}; ` +
        `up to ${maxInflight} in flight on a version at promotion; calls on a disposed module: ${shared.ranDisposed}`,
    );
    assert.deepEqual(unexpected.slice(0, 5), [], `${unexpected.length} calls failed for a reason other than their own contract`);
    assert.equal(shared.ranDisposed, 0, 'no call ran on a module after its dispose()');
    assert.equal(completed + deliberate, next, 'every call started was accounted for');
    for (const label of ['builtin', 'A', 'B', 'C']) assert.ok((perVersion.get(label) ?? 0) > 0, `version ${label} served calls`);
    assert.ok(deliberate > 0, 'the deliberate rejections happened (and were told apart)');
  } finally {
    await w.close();
  }
});

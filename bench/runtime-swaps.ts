/*
 * Benchmark 5 — live swaps: rollback latency and throughput while versions change.
 *
 * A runtime with a state directory (state.json written crash-safely, as in production), its
 * installer, and a target `bench.swaps` (sync `digest(buf)` = SHA-256 of 64 bytes, async
 * `digestLater(buf)` that yields one macrotask first, and `label()` naming the version).
 * Two really signed payloads, A and B, take turns (content-addressed: each is imported once
 * and reused, as ES modules cannot be unloaded). Promotion is a real twoPhaseApply with fast
 * settings (steps [1], canaryInterval 1 ms, minCallsPerStep 1, no jitter).
 *
 * 1. Rollback flip: 500 times, promote then `runtime.rollback()`. Measured: from rollback()
 *    returning (its promise, not yet settled: the routing flip happens synchronously inside)
 *    to the next call having run on the old version; the synchronous rollback() call itself;
 *    and rollback() settled (state.json written and fsynced). Reference: the same call timed
 *    the same way with no swap. Goal: the flip is sub-microsecond (p99 <= 1 µs).
 * 2. Throughput: calls per second of a load (batches of 100 sync digest calls between
 *    event-loop turns, plus 16 async digestLater calls kept in flight) sustained during 1,000
 *    promote + rollback cycles, against the same load with no swaps (measured before and after,
 *    averaged). Every result is checked against the expected digest; failed calls: goal 0.
 */
import { createHash } from 'node:crypto';
import { availableParallelism, loadavg } from 'node:os';
import {
  DynamicInstaller,
  EventBus,
  HotPatchRuntime,
  twoPhaseApply,
  type ApplyOptions,
} from '../src/index.js';
import { judge, median, withTempDir, type Row } from './harness.js';
import { patchSigner, type BenchPatch } from './runtime-calls.js';

const NAME = 'runtime-swaps';
const T = 'bench.swaps';
const FLIP_CYCLES = 500;
const SWAP_CYCLES = 1000;
const BASELINE_MS = 2000;
const BATCH = 100;
const ASYNC_IN_FLIGHT = 16;
const FLIP_GOAL = '<= 1';

const BUF64 = Buffer.alloc(64, 0x3c);
const EXPECTED = createHash('sha256').update(BUF64).digest();

const source = (label: string): string => `import { createHash } from 'node:crypto';
export const api = {
  label: () => '${label}',
  digest: (b) => createHash('sha256').update(b).digest(),
  async digestLater(b) {
    await new Promise((resolve) => setImmediate(resolve));
    return createHash('sha256').update(b).digest();
  },
};
`;

interface SwapApi {
  label(): string;
  digest(b: Buffer): Buffer;
  digestLater(b: Buffer): Promise<Buffer>;
}

const builtin: SwapApi = {
  label: () => 'builtin',
  digest: (b) => createHash('sha256').update(b).digest(),
  async digestLater(b) {
    await new Promise((resolve) => setImmediate(resolve));
    return createHash('sha256').update(b).digest();
  },
};

const now = (): number => Number(process.hrtime.bigint());
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

interface LoadFigures {
  calls: number;
  failed: number;
  ms: number;
  firstError: string | undefined;
}

/** The load: sync calls in batches between event-loop turns, and async calls kept in flight. */
function startLoad(api: SwapApi): { stop: () => Promise<LoadFigures> } {
  let running = true;
  const f: LoadFigures = { calls: 0, failed: 0, ms: 0, firstError: undefined };
  const fail = (why: unknown): void => {
    f.failed += 1;
    f.firstError ??= why instanceof Error ? why.message : String(why);
  };
  const started = performance.now();
  const syncLoop = async (): Promise<void> => {
    while (running) {
      for (let i = 0; i < BATCH; i++) {
        try {
          const out = api.digest(BUF64);
          if (out.equals(EXPECTED)) f.calls += 1;
          else fail(new Error(`wrong digest ${out.toString('hex')}`));
        } catch (error) {
          fail(error);
        }
      }
      await turn();
    }
  };
  const asyncLoop = async (): Promise<void> => {
    while (running) {
      try {
        const out = await api.digestLater(BUF64);
        if (out.equals(EXPECTED)) f.calls += 1;
        else fail(new Error(`wrong digest ${out.toString('hex')}`));
      } catch (error) {
        fail(error);
      }
    }
  };
  const loops = [syncLoop(), ...Array.from({ length: ASYNC_IN_FLIGHT }, () => asyncLoop())];
  return {
    stop: async () => {
      running = false;
      await Promise.all(loops);
      f.ms = performance.now() - started;
      return f;
    },
  };
}

async function loadFor(api: SwapApi, ms: number): Promise<LoadFigures> {
  const load = startLoad(api);
  await new Promise((resolve) => setTimeout(resolve, ms));
  return load.stop();
}

export async function run(): Promise<Row[]> {
  return withTempDir('xps-bench-swaps-', async (dir) => {
    const runtime = new HotPatchRuntime({ stateDir: dir, bus: new EventBus(), installer: new DynamicInstaller(dir) });
    const installer = runtime.installer!;
    const target = runtime.target<SwapApi>(T, { version: '1.0.0', impl: builtin });
    const api = target.api;
    const signPatch = patchSigner();
    const patches: BenchPatch[] = [signPatch('bench-swap-a', T, '1.1.0', source('A')), signPatch('bench-swap-b', T, '1.2.0', source('B'))];
    const fast: ApplyOptions = { runtime, steps: [1], canaryInterval: 1, minCallsPerStep: 1, jitterRatio: 0 };
    try {
      // --- 1. rollback flip latency ---
      const returnedToNext: number[] = [];
      const rollbackCall: number[] = [];
      const settledMs: number[] = [];
      const reference: number[] = [];
      let wrong = 0;
      let notPromoted = 0;
      for (let c = 0; c < FLIP_CYCLES; c++) {
        const patch = patches[c % patches.length]!;
        const apply = twoPhaseApply(installer, patch.verified, patch.payload, fast);
        let done = false;
        void apply.finally(() => (done = true)).catch(() => undefined);
        while (!done) {
          for (let i = 0; i < 20; i++) api.label();
          await turn();
        }
        if ((await apply).outcome !== 'promoted') notPromoted += 1;
        // A live service keeps calling the new version before the operator rolls back.
        for (let i = 0; i < 200; i++) api.label();
        // Reference: the same call timed the same way (right after a clock read), no swap.
        const r0 = now();
        const r1 = now();
        api.label();
        const r2 = now();
        reference.push(r2 - r1);
        if (r1 < r0) throw new Error('clock went backwards');
        const t0 = now();
        const rolledBack = runtime.rollback(T, 'benchmark');
        const t1 = now();
        const served = api.label();
        const t2 = now();
        if (served !== 'builtin') wrong += 1;
        await rolledBack;
        const t3 = now();
        rollbackCall.push(t1 - t0);
        returnedToNext.push(t2 - t1);
        settledMs.push((t3 - t0) / 1e6);
      }
      if (wrong > 0 || notPromoted > 0) throw new Error(`flip cycles: ${wrong} calls not on the old version, ${notPromoted} applies not promoted`);

      // --- 2. throughput during swaps, against no swaps ---
      const load0 = loadavg()[0]!;
      const before = await loadFor(api, BASELINE_MS);
      const load = startLoad(api);
      const cycleMs: number[] = [];
      const failedSwaps: string[] = [];
      for (let c = 0; c < SWAP_CYCLES; c++) {
        const patch = patches[c % patches.length]!;
        const t0 = performance.now();
        try {
          const result = await twoPhaseApply(installer, patch.verified, patch.payload, fast);
          if (result.outcome !== 'promoted') failedSwaps.push(`${result.outcome}: ${result.reason}`);
          await runtime.rollback(T, 'benchmark');
        } catch (error) {
          failedSwaps.push(error instanceof Error ? error.message : String(error));
          if (target.active !== target.builtin && target.previous !== undefined) await runtime.rollback(T, 'benchmark');
        }
        cycleMs.push(performance.now() - t0);
      }
      const during = await load.stop();
      const after = await loadFor(api, BASELINE_MS);

      const rate = (l: LoadFigures): number => l.calls / (l.ms / 1000);
      const baseRate = (rate(before) + rate(after)) / 2;
      const duringRate = rate(during);
      const total = during.calls + during.failed;
      const flipMedian = median(returnedToNext);
      const flipP99 = percentile(returnedToNext, 99);
      const flipNote = (ns: readonly number[]): string =>
        `median ${median(ns).toFixed(0)} ns, p99 ${percentile(ns, 99).toFixed(0)} ns, max ${Math.max(...ns).toFixed(0)} ns over ${ns.length} rollbacks`;
      const refMedian = median(reference);
      return [
        {
          benchmark: NAME,
          case: 'same call timed the same way, no swap (reference)',
          unit: 'ns',
          median: refMedian,
          best: Math.min(...reference),
          rounds: FLIP_CYCLES,
          status: 'info',
          note: `${flipNote(reference)}; includes process.hrtime.bigint() overhead`,
        },
        {
          benchmark: NAME,
          case: 'rollback() returned → next call ran on old version, median',
          unit: 'ns',
          median: flipMedian,
          best: Math.min(...returnedToNext),
          rounds: FLIP_CYCLES,
          ratio: flipMedian / 1000,
          baseline: '1 µs',
          goal: FLIP_GOAL,
          status: judge(flipMedian / 1000, FLIP_GOAL),
          note: `${flipNote(returnedToNext)}; ${(flipMedian - refMedian).toFixed(0)} ns more than the same call with no swap (median)`,
        },
        {
          benchmark: NAME,
          case: 'rollback() returned → next call ran on old version, p99',
          unit: 'ns',
          median: flipP99,
          best: Math.min(...returnedToNext),
          rounds: FLIP_CYCLES,
          ratio: flipP99 / 1000,
          baseline: '1 µs',
          goal: FLIP_GOAL,
          status: judge(flipP99 / 1000, FLIP_GOAL),
          note: 'the median column holds the 99th percentile of the flips',
        },
        {
          benchmark: NAME,
          case: 'rollback() call itself (routing flips inside, synchronously)',
          unit: 'ns',
          median: median(rollbackCall),
          best: Math.min(...rollbackCall),
          rounds: FLIP_CYCLES,
          status: 'info',
          note: flipNote(rollbackCall),
        },
        {
          benchmark: NAME,
          case: 'rollback() settled (state.json written, fsynced)',
          unit: 'ms',
          median: median(settledMs),
          best: Math.min(...settledMs),
          rounds: FLIP_CYCLES,
          status: 'info',
          note: `p99 ${percentile(settledMs, 99).toFixed(2)} ms; calls are already on the old version long before`,
        },
        {
          benchmark: NAME,
          case: 'calls/s, no swaps',
          unit: 'calls/s',
          median: baseRate,
          best: Math.max(rate(before), rate(after)),
          rounds: 2,
          status: 'baseline',
          note: `${BASELINE_MS} ms before (${rate(before).toFixed(0)}/s) and after (${rate(after).toFixed(0)}/s) the swaps, averaged; failed ${before.failed + after.failed}; 1-min load average ${load0.toFixed(2)} → ${loadavg()[0]!.toFixed(2)} on ${availableParallelism()} CPUs`,
        },
        {
          benchmark: NAME,
          case: `calls/s during ${SWAP_CYCLES} promote+rollback cycles`,
          unit: 'calls/s',
          median: duringRate,
          best: duringRate,
          rounds: 1,
          ratio: duringRate / baseRate,
          baseline: 'calls/s, no swaps',
          status: 'info',
          note:
            `${total} calls in ${(during.ms / 1000).toFixed(1)} s; the swaps run on the same thread (stage check, ` +
            `re-hash + import of the cached module, canary interval, state.json writes)`,
        },
        {
          benchmark: NAME,
          case: `failed calls during ${SWAP_CYCLES} swap cycles`,
          unit: 'calls',
          median: during.failed,
          best: during.failed,
          rounds: 1,
          ratio: during.failed / total,
          baseline: 'calls made',
          goal: '<= 0',
          status: judge(during.failed / total, '<= 0'),
          note: `${during.failed} of ${total} calls failed${during.firstError === undefined ? '' : ` (first: ${during.firstError})`}; ${failedSwaps.length} of ${SWAP_CYCLES} swaps not promoted${failedSwaps[0] === undefined ? '' : ` (first: ${failedSwaps[0]})`}`,
        },
        {
          benchmark: NAME,
          case: 'one promote+rollback cycle under load',
          unit: 'ms',
          median: median(cycleMs),
          best: Math.min(...cycleMs),
          rounds: SWAP_CYCLES,
          status: 'info',
          note: `p99 ${percentile(cycleMs, 99).toFixed(2)} ms; ${(SWAP_CYCLES / (cycleMs.reduce((a, b) => a + b, 0) / 1000)).toFixed(0)} cycles/s`,
        },
      ];
    } finally {
      runtime.close();
    }
  });
}

/*
 * Benchmark 5 — live swaps: how soon calls are back on the old version, and throughput while
 * versions change.
 *
 * A runtime with a state directory (state.json written crash-safely, as in production), its
 * installer, and a target `bench.swaps` (sync `digest(buf)` = SHA-256 of 64 bytes, async
 * `digestLater(buf)` that yields one macrotask first, and `label()` naming the version).
 * Two really signed payloads, A and B, take turns (content-addressed: each is imported once
 * and reused, as ES modules cannot be unloaded). Promotion is a real twoPhaseApply with fast
 * settings (steps [1], canaryInterval 1 ms, minCallsPerStep 1, no jitter).
 *
 * 1. Automatic canary failure: a deterministic target `bench.swaps.canary` (`label()`) and a
 *    signed candidate whose label() is wrong; twoPhaseApply at 100 % with half the candidate's
 *    calls shadowed (differentialSampleRate 0.5), so the judge sees an output mismatch at its
 *    first look and fails the canary: the Failed verdict drops the canary route with a field
 *    write (target.setCanary(null)) at once — before the built-ins check, the CanaryStep event
 *    or anything written. Measured: from that drop to the next call, which must have run on
 *    the old version only (checked: the built-in's answer, the candidate's call count
 *    unchanged). Reference: the same call timed the same way with no swap. Informational: the
 *    check of the shared built-ins (RealmSnapshot.check) that fail() makes, timed alone; a
 *    call made in a RolledBack listener; the service's next call (the load loop's, at the
 *    next event-loop turn). Goal: <= 10 µs.
 * 2. Operator rollback: promote, then `await runtime.rollback()`, which persists state.json
 *    (temp file, fsync, rename, fsync of the directory) first and flips the routing after. From
 *    calling rollback() to the next call having run on the old version (right after the await).
 *    Baseline, interleaved cycle by cycle in the same run: one fsync of a freshly written small
 *    file of state.json's size in the same directory. Also timed, once per cycle: a state.json
 *    update alone (runtime.store.update changing nothing: temp file, fsync, rename, fsync of
 *    the directory). Goal: <= one fsync + 1 ms (on a quiet machine).
 * 3. Throughput: calls per second of a load (batches of 100 sync digest calls between
 *    event-loop turns, plus 16 async digestLater calls kept in flight) sustained during 1,000
 *    promote + rollback cycles, against the same load with no swaps. Interleaved: 10 segments
 *    of 100 cycles, each after a 1 s window of the load alone, and one more window after the
 *    last (so the machine's other work weighs on both alike). Every result is checked against
 *    the expected digest; failed calls: goal 0.
 *
 * --quick: 20 cycles of 1 and 2; 30 swap cycles in 3 segments with 200 ms windows in 3.
 */
import { createHash } from 'node:crypto';
import { open, stat, unlink } from 'node:fs/promises';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import { EventBus } from '../src/index.js';
import { DynamicInstaller, HotPatchRuntime, twoPhaseApply, type ApplyOptions, type RuntimeVersion } from '../src/index-runtime.js';
import { RealmSnapshot } from '../src/installer/index.js';
import { judge, median, withTempDir, type Row } from './harness.js';
import { patchSigner, type BenchPatch } from './runtime-calls.js';

const NAME = 'runtime-swaps';
const T = 'bench.swaps';
const CT = 'bench.swaps.canary';
/** Section 3 runs its swap cycles in `segments` parts, with a no-swap window of `baselineMs` before each and after the last. */
const FULL = { canaryCycles: 500, operatorCycles: 500, swapCycles: 1000, segments: 10, baselineMs: 1000 };
const QUICK = { canaryCycles: 20, operatorCycles: 20, swapCycles: 30, segments: 3, baselineMs: 200 };
const BATCH = 100;
const ASYNC_IN_FLIGHT = 16;
/** Automatic canary failure: decision → next call on the old version, in µs. */
const CANARY_FLIP_GOAL_US = 10;
/** Operator rollback: rollback() → next call on the old version, over one fsync, in ms. */
const OPERATOR_EXTRA_MS = 1;

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

/** The faulty candidate of the canary target: its answer differs from the built-in's. */
const BAD_SOURCE = `export const api = { label: () => 'bad' };\n`;

interface SwapApi {
  label(): string;
  digest(b: Buffer): Buffer;
  digestLater(b: Buffer): Promise<Buffer>;
}

interface LabelApi {
  label(): string;
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

/** ns of one fsync of a freshly created and written file of `bytes` bytes in `dir`. */
async function fsyncProbe(dir: string, bytes: number): Promise<number> {
  const file = join(dir, 'fsync-probe.tmp');
  const handle = await open(file, 'wx', 0o600);
  try {
    await handle.write(Buffer.alloc(bytes, 0x20));
    const t0 = now();
    await handle.sync();
    return now() - t0;
  } finally {
    await handle.close();
    await unlink(file);
  }
}

/** Where, after the canary's failure is decided, a call is made and timed. */
type Probe = 'flip' | 'listener' | 'nextTurn';
const PROBES: readonly Probe[] = ['flip', 'listener', 'nextTurn'];

/** One cycle of the automatic canary failure: the decision, and a call at each probe point. */
interface CanaryCycle {
  candidate?: RuntimeVersion;
  candidateCallsAtDecision?: number;
  decidedAt?: number;
  /** ns from the decision to the end of the probe's call, and whether it ran on the built-in only. */
  calls: Partial<Record<Probe, { ns: number; ok: boolean }>>;
}

/** A call through the canary target, timed from the decision (once per probe point and cycle). */
function probeCall(c: CanaryCycle | undefined, probe: Probe, api: LabelApi): void {
  if (c?.decidedAt === undefined || c.calls[probe] !== undefined) return;
  const before = c.candidate?.calls;
  const served = api.label();
  const t = now();
  c.calls[probe] = { ns: t - c.decidedAt, ok: served === 'builtin' && c.candidate !== undefined && c.candidate.calls === before };
}

const spread = (ns: readonly number[], unit: 'ns' | 'µs' | 'ms'): string => {
  const div = unit === 'ns' ? 1 : unit === 'µs' ? 1e3 : 1e6;
  const digits = unit === 'ms' ? 2 : unit === 'µs' ? 1 : 0;
  const f = (v: number): string => `${(v / div).toFixed(digits)} ${unit}`;
  return `median ${f(median(ns))}, p99 ${f(percentile(ns, 99))}, max ${f(Math.max(...ns))} over ${ns.length}`;
};

export async function run(options: { quick?: boolean } = {}): Promise<Row[]> {
  const size = options.quick === true ? QUICK : FULL;
  return withTempDir('xps-bench-swaps-', async (dir) => {
    const bus = new EventBus();
    const runtime = new HotPatchRuntime({ stateDir: dir, bus, installer: new DynamicInstaller(dir) });
    const installer = runtime.installer!;
    const target = runtime.target<SwapApi>(T, { version: '1.0.0', impl: builtin });
    const api = target.api;
    const canaryTarget = runtime.target<LabelApi>(CT, { version: '1.0.0', impl: { label: () => 'builtin' }, deterministic: true });
    const capi = canaryTarget.api;
    const signPatch = patchSigner();
    const patches: BenchPatch[] = [signPatch('bench-swap-a', T, '1.1.0', source('A')), signPatch('bench-swap-b', T, '1.2.0', source('B'))];
    const badPatch = signPatch('bench-swap-bad', CT, '1.1.0', BAD_SOURCE);
    const fast: ApplyOptions = { runtime, steps: [1], canaryInterval: 1, minCallsPerStep: 1, jitterRatio: 0 };
    const failing: ApplyOptions = { ...fast, differentialSampleRate: 0.5, returnErrorOnCanaryFail: false };
    try {
      // --- 1. automatic canary failure: decision → next call on the old version ---
      let cycle: CanaryCycle | undefined;
      // The judge's Failed verdict drops the route at once (before the CanaryStep event is even
      // published): the clock starts where the verdict is acted on — setCanary(null), wrapped on
      // this instance only — and stops at the next call, which must run on the old version.
      const setCanary = canaryTarget.setCanary.bind(canaryTarget);
      canaryTarget.setCanary = (route) => {
        const c = cycle;
        if (route === null && c !== undefined && c.decidedAt === undefined) {
          c.candidateCallsAtDecision = c.candidate?.calls;
          c.decidedAt = now();
        }
        setCanary(route);
        if (route === null) probeCall(cycle, 'flip', capi);
      };
      const unsubscribe = bus.subscribe(
        (e) => {
          const c = cycle;
          if (c === undefined) return;
          if (e.type === 'CanaryStarted') c.candidate = canaryTarget.canary?.candidate;
          else if (e.type === 'RolledBack') probeCall(c, 'listener', capi);
        },
        { target: CT },
      );
      const probeNs: Record<Probe, number[]> = { flip: [], listener: [], nextTurn: [] };
      const canaryReference: number[] = [];
      const canaryProblems: string[] = [];
      try {
        for (let k = 0; k < size.canaryCycles; k++) {
          const c: CanaryCycle = { calls: {} };
          cycle = c;
          // Reference: the same call timed the same way (right after a clock read), no swap.
          const r0 = now();
          const r1 = now();
          capi.label();
          const r2 = now();
          if (r1 < r0) throw new Error('clock went backwards');
          canaryReference.push(r2 - r1);
          const apply = twoPhaseApply(installer, badPatch.verified, badPatch.payload, failing);
          let done = false;
          void apply.finally(() => (done = true)).catch(() => undefined);
          while (!done) {
            // A service's calls, between event-loop turns; the first after the decision is probed.
            probeCall(c, 'nextTurn', capi);
            for (let i = 0; i < 50; i++) capi.label();
            await turn();
          }
          const result = await apply;
          cycle = undefined;
          const rule = result.steps[result.steps.length - 1]?.figures.rule;
          const missing = PROBES.filter((p) => c.calls[p] === undefined);
          const wrong = PROBES.filter((p) => c.calls[p]?.ok === false);
          const problem =
            result.outcome !== 'rolled-back' || rule !== 'output-mismatch'
              ? `outcome ${result.outcome} (rule ${String(rule)}): ${result.reason}`
              : c.decidedAt === undefined || missing.length > 0
                ? `no decision seen, or no call at: ${missing.join(', ')}`
                : wrong.length > 0
                  ? `a call after the decision was not on the old version only (at: ${wrong.join(', ')})`
                  : !(c.candidateCallsAtDecision !== undefined && c.candidateCallsAtDecision > 0)
                    ? 'the candidate took no call before the decision'
                    : undefined;
          if (problem !== undefined) {
            canaryProblems.push(problem);
            continue;
          }
          for (const p of PROBES) probeNs[p].push(c.calls[p]!.ns);
        }
      } finally {
        unsubscribe();
      }
      // For comparison, alone: the check fail() makes that the payload left the shared built-ins alone.
      const realm = RealmSnapshot.capture();
      const realmCheckNs: number[] = [];
      for (let i = 0; i < Math.max(20, probeNs.flip.length); i++) {
        const t0 = now();
        const changes = realm.check().changes.length;
        realmCheckNs.push(now() - t0);
        if (changes > 0) throw new Error('the shared built-ins changed during the benchmark');
      }
      if (canaryProblems.length > 0) {
        throw new Error(`canary-failure cycles: ${canaryProblems.length} of ${size.canaryCycles} did not go as planned (first: ${canaryProblems[0]})`);
      }

      // --- 2. operator rollback: await rollback() → next call on the old version, against one fsync ---
      const operatorNs: number[] = [];
      const fsyncNs: number[] = [];
      const storeNs: number[] = [];
      const store = runtime.store!;
      let wrong = 0;
      let notPromoted = 0;
      let stateBytes = 0;
      for (let c = 0; c < size.operatorCycles; c++) {
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
        stateBytes = (await stat(join(dir, 'state.json'))).size;
        // The baseline, alternately before and after the rollback (a burst of load hits both alike).
        if (c % 2 === 0) fsyncNs.push(await fsyncProbe(dir, stateBytes));
        if (api.label() === 'builtin') notPromoted += 1;
        const t0 = now();
        await runtime.rollback(T, 'benchmark');
        const served = api.label();
        const t1 = now();
        if (served !== 'builtin') wrong += 1;
        operatorNs.push(t1 - t0);
        if (c % 2 === 1) fsyncNs.push(await fsyncProbe(dir, stateBytes));
        // The persistence part alone: a state.json update that changes nothing (but updated_at).
        const s0 = now();
        await store.update(() => undefined);
        storeNs.push(now() - s0);
      }
      if (wrong > 0 || notPromoted > 0)
        throw new Error(`operator-rollback cycles: ${wrong} calls after the rollback not on the old version, ${notPromoted} applies not promoted`);

      // --- 3. throughput during swaps, against no swaps (interleaved windows) ---
      const load0 = loadavg()[0]!;
      const idle: LoadFigures[] = [];
      const busy: LoadFigures[] = [];
      const cycleMs: number[] = [];
      const failedSwaps: string[] = [];
      const perSegment = Math.ceil(size.swapCycles / size.segments);
      for (let c = 0; c < size.swapCycles;) {
        idle.push(await loadFor(api, size.baselineMs));
        const load = startLoad(api);
        for (const end = Math.min(size.swapCycles, c + perSegment); c < end; c++) {
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
        busy.push(await load.stop());
      }
      idle.push(await loadFor(api, size.baselineMs));

      const sum = (ls: readonly LoadFigures[]): LoadFigures => ({
        calls: ls.reduce((a, l) => a + l.calls, 0),
        failed: ls.reduce((a, l) => a + l.failed, 0),
        ms: ls.reduce((a, l) => a + l.ms, 0),
        firstError: ls.find((l) => l.firstError !== undefined)?.firstError,
      });
      const rate = (l: LoadFigures): number => l.calls / (l.ms / 1000);
      const idleAll = sum(idle);
      const during = sum(busy);
      const baseRate = rate(idleAll);
      const duringRate = rate(during);
      const idleRates = idle.map(rate);
      const total = during.calls + during.failed;
      const refMedian = median(canaryReference);
      const flipNs = probeNs.flip;
      const flipMedianUs = median(flipNs) / 1e3;
      const flipP99Us = percentile(flipNs, 99) / 1e3;
      const canaryGoal = '<= 1';
      const fsyncMs = median(fsyncNs) / 1e6;
      const operatorMs = operatorNs.map((ns) => ns / 1e6);
      const operatorMedian = median(operatorMs);
      const operatorRatio = operatorMedian / (fsyncMs + OPERATOR_EXTRA_MS);
      return [
        {
          benchmark: NAME,
          case: 'same call timed the same way, no swap (reference)',
          unit: 'ns',
          median: refMedian,
          best: Math.min(...canaryReference),
          rounds: canaryReference.length,
          status: 'info',
          note: `${spread(canaryReference, 'ns')}; includes process.hrtime.bigint() overhead`,
        },
        {
          benchmark: NAME,
          case: 'canary failed by the judge: decision → next call on old version, median',
          unit: 'µs',
          median: flipMedianUs,
          best: Math.min(...flipNs) / 1e3,
          rounds: flipNs.length,
          ratio: flipMedianUs / CANARY_FLIP_GOAL_US,
          baseline: `${CANARY_FLIP_GOAL_US} µs`,
          goal: canaryGoal,
          status: judge(flipMedianUs / CANARY_FLIP_GOAL_US, canaryGoal),
          note:
            `${spread(flipNs, 'µs')} automatic canary failures (output mismatch at the first look); from the Failed verdict's ` +
            `target.setCanary(null) (before the built-ins check, the CanaryStep event or any write) to the next call, which ran on the built-in only`,
        },
        {
          benchmark: NAME,
          case: 'canary failed by the judge: decision → next call on old version, p99',
          unit: 'µs',
          median: flipP99Us,
          best: Math.min(...flipNs) / 1e3,
          rounds: flipNs.length,
          ratio: flipP99Us / CANARY_FLIP_GOAL_US,
          baseline: `${CANARY_FLIP_GOAL_US} µs`,
          goal: canaryGoal,
          status: judge(flipP99Us / CANARY_FLIP_GOAL_US, canaryGoal),
          note: 'the median column holds the 99th percentile',
        },
        {
          benchmark: NAME,
          case: "for comparison: fail()'s check of the shared built-ins (RealmSnapshot.check), alone",
          unit: 'µs',
          median: median(realmCheckNs) / 1e3,
          best: Math.min(...realmCheckNs) / 1e3,
          rounds: realmCheckNs.length,
          status: 'info',
          note: `${spread(realmCheckNs, 'µs')}; fail() runs one when a canary fails (when it runs before the flip, it is part of the figure above)`,
        },
        {
          benchmark: NAME,
          case: 'canary failed by the judge: decision → a call in a RolledBack listener',
          unit: 'µs',
          median: median(probeNs.listener) / 1e3,
          best: Math.min(...probeNs.listener) / 1e3,
          rounds: probeNs.listener.length,
          status: 'info',
          note: `${spread(probeNs.listener, 'µs')}; on the built-in only`,
        },
        {
          benchmark: NAME,
          case: "canary failed by the judge: decision → the service's next call (next event-loop turn)",
          unit: 'µs',
          median: median(probeNs.nextTurn) / 1e3,
          best: Math.min(...probeNs.nextTurn) / 1e3,
          rounds: probeNs.nextTurn.length,
          status: 'info',
          note:
            `${spread(probeNs.nextTurn, 'µs')}; on the built-in only; one thread: no call from another task can run between the ` +
            `decision and fail() yielding (its state.json write), so none reaches the candidate in between`,
        },
        {
          benchmark: NAME,
          case: `one fsync of a new ${stateBytes}-byte file (state.json's size), same directory`,
          unit: 'ms',
          median: fsyncMs,
          best: Math.min(...fsyncNs) / 1e6,
          rounds: fsyncNs.length,
          status: 'baseline',
          note: `${spread(fsyncNs, 'ms')}; one per operator rollback, alternately before and after it`,
        },
        {
          benchmark: NAME,
          case: 'operator rollback: await rollback() → next call on old version',
          unit: 'ms',
          median: operatorMedian,
          best: Math.min(...operatorMs),
          rounds: operatorMs.length,
          ratio: operatorRatio,
          baseline: `one fsync + ${OPERATOR_EXTRA_MS} ms`,
          goal: '<= 1',
          status: judge(operatorRatio, '<= 1'),
          note:
            `${spread(operatorNs, 'ms')} rollbacks; ${(operatorMedian - fsyncMs).toFixed(2)} ms over one fsync (median); ` +
            `state.json is persisted (temp file, fsync, rename, fsync of the directory) before the routing flips; goal stated for a quiet machine`,
        },
        {
          benchmark: NAME,
          case: 'of which: a state.json update alone (runtime.store.update, no change)',
          unit: 'ms',
          median: median(storeNs) / 1e6,
          best: Math.min(...storeNs) / 1e6,
          rounds: storeNs.length,
          ratio: median(storeNs) / 1e6 / fsyncMs,
          baseline: 'one fsync',
          status: 'info',
          note: `${spread(storeNs, 'ms')}; one after each operator rollback (temp file, chmod, write, fsync, close, rename, fsync of the directory: two fsyncs)`,
        },
        {
          benchmark: NAME,
          case: 'calls/s, no swaps',
          unit: 'calls/s',
          median: baseRate,
          best: Math.max(...idleRates),
          rounds: idle.length,
          status: 'baseline',
          note: `${idle.length} windows of ${size.baselineMs} ms of the load alone, one before each of ${busy.length} segments of swaps and one after (${Math.min(...idleRates).toFixed(0)} to ${Math.max(...idleRates).toFixed(0)} calls/s); failed ${idleAll.failed}; 1-min load average ${load0.toFixed(2)} → ${loadavg()[0]!.toFixed(2)} on ${availableParallelism()} CPUs`,
        },
        {
          benchmark: NAME,
          case: `calls/s during ${size.swapCycles} promote+rollback cycles`,
          unit: 'calls/s',
          median: duringRate,
          best: Math.max(...busy.map(rate)),
          rounds: busy.length,
          ratio: duringRate / baseRate,
          baseline: 'calls/s, no swaps',
          status: 'info',
          note:
            `${total} calls in ${(during.ms / 1000).toFixed(1)} s (${busy.length} segments); the swaps run on the same thread (stage check, ` +
            `re-hash + import of the cached module, canary interval, state.json writes)`,
        },
        {
          benchmark: NAME,
          case: `failed calls during ${size.swapCycles} swap cycles`,
          unit: 'calls',
          median: during.failed,
          best: during.failed,
          rounds: 1,
          ratio: during.failed / total,
          baseline: 'calls made',
          goal: '<= 0',
          status: judge(during.failed / total, '<= 0'),
          note: `${during.failed} of ${total} calls failed${during.firstError === undefined ? '' : ` (first: ${during.firstError})`}; ${failedSwaps.length} of ${size.swapCycles} swaps not promoted${failedSwaps[0] === undefined ? '' : ` (first: ${failedSwaps[0]})`}`,
        },
        {
          benchmark: NAME,
          case: 'one promote+rollback cycle under load',
          unit: 'ms',
          median: median(cycleMs),
          best: Math.min(...cycleMs),
          rounds: size.swapCycles,
          status: 'info',
          note: `p99 ${percentile(cycleMs, 99).toFixed(2)} ms; ${(size.swapCycles / (cycleMs.reduce((a, b) => a + b, 0) / 1000)).toFixed(0)} cycles/s`,
        },
      ];
    } finally {
      runtime.close();
    }
  });
}

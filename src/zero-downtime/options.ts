import { HotPatchError } from '../core/index.js';

/** Options of `twoPhaseApply` (seed: ZdtOptions). Every field has a safe default. */
export interface ZdtOptions {
  /** Share of calls sent to the candidate in the first step (default 0.004: exposure stays under 0.5 %). */
  canaryRatio?: number;
  /** Length of the first interval in ms (default 150); later intervals grow by `backoffFactor`. */
  canaryInterval?: number;
  /** Each interval lasts `backoffFactor` times the previous one (default 1.5). */
  backoffFactor?: number;
  /** Each interval is jittered by ±`jitterRatio` of itself (default 0.10). */
  jitterRatio?: number;
  /**
   * Ratios of the canary steps (default `[canaryRatio, 0.05, 0.25, 0.5]`, then promotion);
   * increasing, in (0, 1]. A step of 1 has no same-moment baseline of its own (see README).
   */
  steps?: number[];
  /** One-sided confidence of every Failed verdict (default 0.99): the false-alarm rate is at most 1 − confidence per canary. */
  confidence?: number;
  /** Tolerated candidate error rate above the baseline's, as a fraction of calls (default 0: none beyond noise). */
  maxErrorExcess?: number;
  /** Tolerated slowdown: the candidate fails only if its latency is significantly above (1 + shift) × the baseline's (default 0.3). */
  maxLatencyShift?: number;
  /** A step with fewer candidate calls is Inconclusive: it waits longer, never advances (default 200). */
  minCallsPerStep?: number;
  /** Candidate calls the whole canary must have seen before promotion (default 1000). */
  minCalls?: number;
  /** Inconclusive extensions allowed per step before the canary fails for lack of data (default 20). */
  maxInconclusiveExtensions?: number;
  /** Absolute ceiling: a candidate error rate significantly above it fails whatever the baseline does (default 1: off). */
  maxErrorRate?: number;
  /** @deprecated Use `maxLatencyShift` (`maxLatencyRatio` r means shift r − 1). */
  maxLatencyRatio?: number;
  /** Latency samples needed on each side (or pairs, for shadowed targets) before latency is judged (default 50). */
  minLatencySamples?: number;
  /**
   * Absolute slack added to the tolerated latency (ms, default 0.00002 = 20 ns): the clock's
   * own cost and granularity, so a method of a few ns is not "2× slower" by a few ns. (The
   * cold code of a rarely-run candidate needs no slack: latency is timed only from a share
   * where both sides run about as often — see `latencyShare` in canary-route-options.ts.)
   */
  latencyNoiseFloorMs?: number;
  /** The candidate's first calls, excluded from latency while V8 optimises it (default 1000). */
  warmupCalls?: number;
  /**
   * Deadline of one async candidate call during the canary, in ms: past it the call counts
   * as an error (and, with `retryOnBaseline`, the caller is answered by the baseline).
   * Default: derived from the baseline's latency before and during the canary (20 × its p99, at least 250 ms, at most 5 s; 5 s until measured).
   */
  canaryCallTimeoutMs?: number;
  /**
   * For deterministic targets: share of candidate calls also run on the baseline, outputs
   * compared; the caller gets the baseline's answer on those calls (default 1: every
   * candidate call is checked, so wrong bytes never reach a caller during the canary).
   */
  differentialSampleRate?: number;
  /** On abort (signal or `abort()`), route back to the baseline (default true); false pauses the canary where it is. */
  rollbackOnCancel?: boolean;
  /** A failed canary rejects with CANARY_FAILED (default true); false resolves with outcome "rolled-back". */
  returnErrorOnCanaryFail?: boolean;
  /** For idempotent targets: a candidate call that throws (or misses its deadline) is re-run on the baseline (default false). */
  retryOnBaseline?: boolean;
  /** Sticky routing: the same key always lands on the same side (hash of key + patch id). */
  routingKey?: (args: readonly unknown[]) => string;
  /** Cancels the apply (ABORTED). */
  signal?: AbortSignal;
  /**
   * A promoted version is "good" only after running this long (default 60 s). During it the
   * promoted version is still compared with the previous one (`probationWatch`), and a restart
   * before it ends reverts.
   */
  probationMs?: number;
  /** Keep judging after promotion: a clear regression during probation routes back to the warm previous version (default true). */
  probationWatch?: boolean;
  /** How long to wait for in-flight calls before disposing an old version (default 30 s; reported, never forced). */
  drainTimeoutMs?: number;
  /**
   * Loading a candidate (import, `init()`, `selfTest()`) must settle within this many ms
   * (default 30 s); past it the apply fails with LOAD_FAILED and the candidate never serves.
   * A top-level await or an `init()` that never settles cannot hold the target busy forever.
   */
  loadTimeoutMs?: number;
  /** Random source in [0, 1) for jitter and routing (tests make it deterministic). */
  random?: () => number;
}

export type ResolvedZdtOptions = Required<Omit<ZdtOptions, 'routingKey' | 'signal' | 'maxLatencyRatio' | 'canaryCallTimeoutMs'>> &
  Pick<ZdtOptions, 'routingKey' | 'signal' | 'canaryCallTimeoutMs'>;

/** Longest delay a Node timer keeps (2^31 − 1 ms); a longer one would fire after 1 ms. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

export function resolveZdtOptions(options: ZdtOptions = {}): ResolvedZdtOptions {
  const canaryRatio = ratio(options.canaryRatio ?? 0.004, 'canaryRatio');
  const steps = options.steps ?? [canaryRatio, 0.05, 0.25, 0.5].filter((r, i) => i === 0 || r > canaryRatio);
  if (!Array.isArray(steps) || steps.length === 0) throw new HotPatchError('INVALID', 'steps must be a non-empty array of ratios');
  steps.forEach((s, i) => {
    ratio(s, `steps[${i}]`);
    if (i > 0 && s <= steps[i - 1]!) throw new HotPatchError('INVALID', `steps must increase: steps[${i}] = ${s} after ${steps[i - 1]}`);
  });
  if (options.maxLatencyShift !== undefined && options.maxLatencyRatio !== undefined) {
    throw new HotPatchError('INVALID', 'give maxLatencyShift or the older maxLatencyRatio, not both');
  }
  const shift =
    options.maxLatencyRatio !== undefined
      ? atLeast(options.maxLatencyRatio, 1, 'maxLatencyRatio') - 1
      : nonNegative(options.maxLatencyShift ?? 0.3, 'maxLatencyShift');
  const resolved: ResolvedZdtOptions = {
    canaryRatio,
    canaryInterval: timerMs(options.canaryInterval ?? 150, 'canaryInterval'),
    backoffFactor: atLeast(options.backoffFactor ?? 1.5, 1, 'backoffFactor'),
    jitterRatio: between(options.jitterRatio ?? 0.1, 0, 0.9, 'jitterRatio'),
    steps: [...steps],
    confidence: openUnit(options.confidence ?? 0.99, 'confidence'),
    maxErrorExcess: between(options.maxErrorExcess ?? 0, 0, 1, 'maxErrorExcess'),
    maxLatencyShift: shift,
    minCallsPerStep: integer(options.minCallsPerStep ?? 200, 1, 'minCallsPerStep'),
    minCalls: integer(options.minCalls ?? 1000, 0, 'minCalls'),
    maxInconclusiveExtensions: integer(options.maxInconclusiveExtensions ?? 20, 0, 'maxInconclusiveExtensions'),
    maxErrorRate: between(options.maxErrorRate ?? 1, 0, 1, 'maxErrorRate'),
    minLatencySamples: integer(options.minLatencySamples ?? 50, 1, 'minLatencySamples'),
    latencyNoiseFloorMs: nonNegative(options.latencyNoiseFloorMs ?? 0.00002, 'latencyNoiseFloorMs'),
    warmupCalls: integer(options.warmupCalls ?? 1000, 0, 'warmupCalls'),
    differentialSampleRate: between(options.differentialSampleRate ?? 1, 0, 1, 'differentialSampleRate'),
    rollbackOnCancel: bool(options.rollbackOnCancel ?? true, 'rollbackOnCancel'),
    returnErrorOnCanaryFail: bool(options.returnErrorOnCanaryFail ?? true, 'returnErrorOnCanaryFail'),
    retryOnBaseline: bool(options.retryOnBaseline ?? false, 'retryOnBaseline'),
    probationMs: timerMs(options.probationMs ?? 60_000, 'probationMs'),
    probationWatch: bool(options.probationWatch ?? true, 'probationWatch'),
    drainTimeoutMs: timerMs(options.drainTimeoutMs ?? 30_000, 'drainTimeoutMs'),
    loadTimeoutMs: positiveTimerMs(options.loadTimeoutMs ?? 30_000, 'loadTimeoutMs'),
    random: options.random ?? Math.random,
  };
  if (options.canaryCallTimeoutMs !== undefined) resolved.canaryCallTimeoutMs = positiveTimerMs(options.canaryCallTimeoutMs, 'canaryCallTimeoutMs');
  if (options.routingKey !== undefined) {
    if (typeof options.routingKey !== 'function') throw new HotPatchError('INVALID', 'routingKey must be a function');
    resolved.routingKey = options.routingKey;
  }
  if (options.signal !== undefined) resolved.signal = options.signal;
  return resolved;
}

function ratio(value: unknown, name: string): number {
  if (typeof value !== 'number' || !(value > 0 && value <= 1)) throw new HotPatchError('INVALID', `${name} must be a number in (0, 1], got ${String(value)}`);
  return value;
}
function nonNegative(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0)
    throw new HotPatchError('INVALID', `${name} must be a finite number >= 0, got ${String(value)}`);
  return value;
}
function atLeast(value: unknown, min: number, name: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min)
    throw new HotPatchError('INVALID', `${name} must be a number >= ${min}, got ${String(value)}`);
  return value;
}
function between(value: unknown, min: number, max: number, name: string): number {
  if (typeof value !== 'number' || !(value >= min && value <= max))
    throw new HotPatchError('INVALID', `${name} must be a number in [${min}, ${max}], got ${String(value)}`);
  return value;
}
function integer(value: unknown, min: number, name: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min)
    throw new HotPatchError('INVALID', `${name} must be an integer >= ${min}, got ${String(value)}`);
  return value;
}
function openUnit(value: unknown, name: string): number {
  if (typeof value !== 'number' || !(value > 0 && value < 1)) throw new HotPatchError('INVALID', `${name} must be a number in (0, 1), got ${String(value)}`);
  return value;
}
function bool(value: unknown, name: string): boolean {
  if (typeof value !== 'boolean') throw new HotPatchError('INVALID', `${name} must be a boolean, got ${String(value)}`);
  return value;
}
/** A delay handed to a Node timer: finite, >= 0 and at most 2^31 − 1 ms (longer ones would fire at once). */
function timerMs(value: unknown, name: string): number {
  const ms = nonNegative(value, name);
  if (ms > MAX_TIMER_MS) throw new HotPatchError('INVALID', `${name} must be at most ${MAX_TIMER_MS} ms (about 24.8 days), got ${ms}`);
  return ms;
}
function positiveTimerMs(value: unknown, name: string): number {
  const ms = timerMs(value, name);
  if (ms <= 0) throw new HotPatchError('INVALID', `${name} must be > 0, got ${ms}`);
  return ms;
}

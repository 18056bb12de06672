import { HotPatchError } from '../core/index.js';

/** Options of `twoPhaseApply` (seed: ZdtOptions). Every field has a safe default. */
export interface ZdtOptions {
  /** Share of calls sent to the candidate in the first step (default 0.05). */
  canaryRatio?: number;
  /** Length of the first step in ms (default 150); later steps grow by `backoffFactor`. */
  canaryInterval?: number;
  /** Each step lasts `backoffFactor` times the previous one (default 1.5). */
  backoffFactor?: number;
  /** Each interval is jittered by ±`jitterRatio` of itself (default 0.10). */
  jitterRatio?: number;
  /** Ratios of the canary steps (default `[canaryRatio, 0.25, 0.5, 1]`); increasing, in (0, 1]. */
  steps?: number[];
  /** A step with fewer candidate calls is Inconclusive: it waits longer, never promotes (default 20). */
  minCallsPerStep?: number;
  /** Inconclusive extensions allowed per step before the canary fails for lack of data (default 20). */
  maxInconclusiveExtensions?: number;
  /** Largest candidate error rate that still passes a step (default 0.01). */
  maxErrorRate?: number;
  /** Largest candidate p99 / baseline p99 that still passes a step (default 2). */
  maxLatencyRatio?: number;
  /** Latency samples needed on each side before the latency ratio is judged (default 20). */
  minLatencySamples?: number;
  /**
   * Added to both p99s before dividing (default 0.05 ms), so timer and GC jitter on
   * microsecond calls is not read as a slowdown; a slowdown far above it still is.
   */
  latencyNoiseFloorMs?: number;
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
  /** For idempotent targets: a candidate call that throws is re-run on the baseline (default false). */
  retryOnBaseline?: boolean;
  /** Sticky routing: the same key always lands on the same side (hash of key + patch id). */
  routingKey?: (args: readonly unknown[]) => string;
  /** Cancels the apply (ABORTED). */
  signal?: AbortSignal;
  /** A promoted version is "good" only after running this long; a restart before that reverts (default 60 s). */
  probationMs?: number;
  /** How long to wait for in-flight calls before disposing an old version (default 30 s; reported, never forced). */
  drainTimeoutMs?: number;
  /** Random source in [0, 1) for jitter and routing (tests make it deterministic). */
  random?: () => number;
}

export type ResolvedZdtOptions = Required<Omit<ZdtOptions, 'routingKey' | 'signal'>> & Pick<ZdtOptions, 'routingKey' | 'signal'>;

export function resolveZdtOptions(options: ZdtOptions = {}): ResolvedZdtOptions {
  const canaryRatio = ratio(options.canaryRatio ?? 0.05, 'canaryRatio');
  const steps = options.steps ?? [canaryRatio, 0.25, 0.5, 1].filter((r, i) => i === 0 || r > canaryRatio);
  if (!Array.isArray(steps) || steps.length === 0) throw new HotPatchError('INVALID', 'steps must be a non-empty array of ratios');
  steps.forEach((s, i) => {
    ratio(s, `steps[${i}]`);
    if (i > 0 && s <= steps[i - 1]!) throw new HotPatchError('INVALID', `steps must increase: steps[${i}] = ${s} after ${steps[i - 1]}`);
  });
  const resolved: ResolvedZdtOptions = {
    canaryRatio,
    canaryInterval: nonNegative(options.canaryInterval ?? 150, 'canaryInterval'),
    backoffFactor: atLeast(options.backoffFactor ?? 1.5, 1, 'backoffFactor'),
    jitterRatio: between(options.jitterRatio ?? 0.1, 0, 0.9, 'jitterRatio'),
    steps: [...steps],
    minCallsPerStep: integer(options.minCallsPerStep ?? 20, 1, 'minCallsPerStep'),
    maxInconclusiveExtensions: integer(options.maxInconclusiveExtensions ?? 20, 0, 'maxInconclusiveExtensions'),
    maxErrorRate: between(options.maxErrorRate ?? 0.01, 0, 1, 'maxErrorRate'),
    maxLatencyRatio: atLeast(options.maxLatencyRatio ?? 2, 1, 'maxLatencyRatio'),
    minLatencySamples: integer(options.minLatencySamples ?? 20, 1, 'minLatencySamples'),
    latencyNoiseFloorMs: nonNegative(options.latencyNoiseFloorMs ?? 0.05, 'latencyNoiseFloorMs'),
    differentialSampleRate: between(options.differentialSampleRate ?? 1, 0, 1, 'differentialSampleRate'),
    rollbackOnCancel: options.rollbackOnCancel ?? true,
    returnErrorOnCanaryFail: options.returnErrorOnCanaryFail ?? true,
    retryOnBaseline: options.retryOnBaseline ?? false,
    probationMs: nonNegative(options.probationMs ?? 60_000, 'probationMs'),
    drainTimeoutMs: nonNegative(options.drainTimeoutMs ?? 30_000, 'drainTimeoutMs'),
    random: options.random ?? Math.random,
  };
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
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) throw new HotPatchError('INVALID', `${name} must be a finite number >= 0, got ${String(value)}`);
  return value;
}
function atLeast(value: unknown, min: number, name: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min) throw new HotPatchError('INVALID', `${name} must be a number >= ${min}, got ${String(value)}`);
  return value;
}
function between(value: unknown, min: number, max: number, name: string): number {
  if (typeof value !== 'number' || !(value >= min && value <= max)) throw new HotPatchError('INVALID', `${name} must be a number in [${min}, ${max}], got ${String(value)}`);
  return value;
}
function integer(value: unknown, min: number, name: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) throw new HotPatchError('INVALID', `${name} must be an integer >= ${min}, got ${String(value)}`);
  return value;
}

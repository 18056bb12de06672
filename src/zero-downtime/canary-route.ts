import { isDeepStrictEqual } from 'node:util';
import { CallStats } from './call-stats.js';
import type { RuntimeVersion } from './runtime-version.js';

export interface CanaryRouteOptions {
  /** Salt of sticky routing: the same key buckets differently for each patch (as CodePush). */
  patchId: string;
  deterministic: boolean;
  differentialSampleRate: number;
  retryOnBaseline: boolean;
  routingKey: ((args: readonly unknown[]) => string) | undefined;
  random: () => number;
}

const TWO_32 = 2 ** 32;

export function isThenable(value: unknown): value is PromiseLike<unknown> {
  return value !== null && (typeof value === 'object' || typeof value === 'function') && typeof (value as { then?: unknown }).then === 'function';
}

/** FNV-1a, 32 bits: cheap and well spread for bucketing routing keys. */
export function fnv1a32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/**
 * Routing while a candidate is canaried: each call picks a side at entry and runs wholly on
 * it. The ratio split uses a xorshift generator (no Math.random per call); sticky routing
 * hashes the routing key with the patch id. Health figures go to the current step's stats.
 */
export class CanaryRoute {
  readonly baseline: RuntimeVersion;
  readonly candidate: RuntimeVersion;
  ratio = 0;
  candidateStats = new CallStats();
  baselineStats = new CallStats();
  /** Baseline latency of all steps so far: the last step (ratio 1) has no baseline calls of its own. */
  readonly baselineHistory = new CallStats();
  readonly #options: CanaryRouteOptions;
  #threshold = 0;
  #differentialThreshold: number;
  /** No differential check, sticky routing or retry: the short path applies. */
  readonly #plain: boolean;
  #state: number;

  constructor(baseline: RuntimeVersion, candidate: RuntimeVersion, options: CanaryRouteOptions) {
    this.baseline = baseline;
    this.candidate = candidate;
    this.#options = options;
    this.#differentialThreshold = options.deterministic ? Math.min(TWO_32, Math.floor(options.differentialSampleRate * TWO_32)) : 0;
    this.#plain = this.#differentialThreshold === 0 && options.routingKey === undefined && !options.retryOnBaseline;
    this.#state = (Math.floor(options.random() * 0xffffffff) | 1) >>> 0;
  }

  setRatio(ratio: number): void {
    this.ratio = ratio;
    this.#threshold = ratio >= 1 ? TWO_32 : Math.floor(ratio * TWO_32);
  }

  /** Starts a new step's figures; the finished step's baseline joins the history. */
  newStep(): void {
    this.baselineHistory.merge(this.baselineStats);
    this.candidateStats = new CallStats();
    this.baselineStats = new CallStats();
  }

  /** Baseline figures to judge against: this step's, plus earlier steps' latency. */
  baselineForAnalysis(): CallStats {
    const merged = new CallStats();
    merged.merge(this.baselineHistory);
    merged.merge(this.baselineStats);
    return merged;
  }

  #next(): number {
    let x = this.#state;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#state = x >>> 0;
    return this.#state;
  }

  #pickCandidate(args: readonly unknown[]): boolean {
    const key = this.#options.routingKey;
    if (key !== undefined) return fnv1a32(`${key(args)}\u0000${this.#options.patchId}`) < this.#threshold;
    return this.#next() < this.#threshold;
  }

  /** An async (or promise-returning) method: in-flight calls are counted for draining. */
  callAsync(index: number, api: object, thisArg: unknown, args: unknown[]): unknown {
    const toCandidate = this.#pickCandidate(args);
    if (toCandidate && this.#differentialThreshold > 0 && this.#next() < this.#differentialThreshold) {
      return this.#callDifferential(index, api, thisArg, args, false);
    }
    return toCandidate
      ? this.#runOn(this.candidate, this.candidateStats, index, api, thisArg, args, this.#options.retryOnBaseline)
      : this.#runOn(this.baseline, this.baselineStats, index, api, thisArg, args, false);
  }

  /**
   * A synchronous method: nothing can be in flight across a swap, so the common case is a
   * pick, two counters and the call; only sampled calls are timed.
   */
  callSync(index: number, api: object, thisArg: unknown, args: unknown[]): unknown {
    // Kept small enough for V8 to inline into the routed wrapper (so the argument array
    // need not be built): anything unusual takes #callSyncFull.
    if (this.#plain) {
      const toCandidate = this.#next() < this.#threshold;
      const stats = toCandidate ? this.candidateStats : this.baselineStats;
      if (!stats.shouldTime()) {
        const version = toCandidate ? this.candidate : this.baseline;
        version.calls += 1;
        stats.calls += 1;
        let result: unknown;
        try {
          result = version.functions[index]!.apply(thisArg === api ? version.impl : thisArg, args);
        } catch (error) {
          version.errors += 1;
          stats.errors += 1;
          throw error;
        }
        if (toCandidate && isThenable(result)) return this.#brokenSync(version, stats);
        return result;
      }
      return this.#callSyncOn(toCandidate, index, api, thisArg, args, true);
    }
    return this.#callSyncFull(index, api, thisArg, args);
  }

  /** The interface is synchronous: a candidate returning a promise is broken, and no caller gets one. */
  #brokenSync(version: RuntimeVersion, stats: CallStats): never {
    version.errors += 1;
    stats.errors += 1;
    throw new TypeError(`version ${version.version} returned a promise from a synchronous method`);
  }

  #callSyncFull(index: number, api: object, thisArg: unknown, args: unknown[]): unknown {
    const toCandidate = this.#pickCandidate(args);
    if (toCandidate && this.#differentialThreshold > 0 && this.#next() < this.#differentialThreshold) {
      return this.#callDifferential(index, api, thisArg, args, true);
    }
    return this.#callSyncOn(toCandidate, index, api, thisArg, args, undefined);
  }

  #callSyncOn(toCandidate: boolean, index: number, api: object, thisArg: unknown, args: unknown[], timedAlready: boolean | undefined): unknown {
    const version = toCandidate ? this.candidate : this.baseline;
    const stats = toCandidate ? this.candidateStats : this.baselineStats;
    const timed = timedAlready ?? stats.shouldTime();
    const started = timed ? performance.now() : 0;
    version.calls += 1;
    stats.calls += 1;
    let result: unknown;
    try {
      result = version.functions[index]!.apply(thisArg === api ? version.impl : thisArg, args);
    } catch (error) {
      version.errors += 1;
      stats.errors += 1;
      if (toCandidate && this.#options.retryOnBaseline) return this.#runOn(this.baseline, this.baselineStats, index, api, thisArg, args, false);
      throw error;
    }
    if (toCandidate && isThenable(result)) {
      if (this.#options.retryOnBaseline) {
        version.errors += 1;
        stats.errors += 1;
        return this.#runOn(this.baseline, this.baselineStats, index, api, thisArg, args, false);
      }
      return this.#brokenSync(version, stats);
    }
    if (timed) this.#recordLatency(version, stats, started);
    return result;
  }

  /**
   * One call on one side, counted in that side's step figures and the version's counters.
   * `retryOnBaseline`: a throw is re-run on the baseline (idempotent targets only), so the
   * caller gets the baseline's answer while the candidate's failure still counts.
   */
  #runOn(
    version: RuntimeVersion,
    stats: CallStats,
    index: number,
    api: object,
    thisArg: unknown,
    args: unknown[],
    retryOnBaseline: boolean,
  ): unknown {
    const timed = stats.shouldTime();
    const started = timed ? performance.now() : 0;
    version.inflight += 1;
    version.calls += 1;
    let result: unknown;
    try {
      result = version.functions[index]!.apply(thisArg === api ? version.impl : thisArg, args);
    } catch (error) {
      return this.#failed(version, stats, error, retryOnBaseline, index, api, thisArg, args);
    }
    if (isThenable(result)) {
      return Promise.resolve(result).then(
        (value) => this.#succeeded(version, stats, timed, started, value),
        (error: unknown) => this.#failed(version, stats, error, retryOnBaseline, index, api, thisArg, args),
      );
    }
    return this.#succeeded(version, stats, timed, started, result);
  }

  /** A timed call's duration goes to the step's figures and to the version's histogram samples. */
  #recordLatency(version: RuntimeVersion, stats: CallStats, started: number): void {
    const ms = performance.now() - started;
    stats.addLatency(ms, this.#options.random);
    version.addLatency(ms / 1000);
  }

  // Methods, not per-call closures: a settled async call allocates nothing more.
  #succeeded(version: RuntimeVersion, stats: CallStats, timed: boolean, started: number, value: unknown): unknown {
    version.leave();
    stats.calls += 1;
    if (timed) this.#recordLatency(version, stats, started);
    return value;
  }

  #failed(
    version: RuntimeVersion,
    stats: CallStats,
    error: unknown,
    retryOnBaseline: boolean,
    index: number,
    api: object,
    thisArg: unknown,
    args: unknown[],
  ): unknown {
    version.leave();
    version.errors += 1;
    stats.calls += 1;
    stats.errors += 1;
    if (retryOnBaseline) return this.#runOn(this.baseline, this.baselineStats, index, api, thisArg, args, false);
    throw error;
  }

  /**
   * Runs the call on both sides and compares the outcomes; the caller always gets the
   * baseline's. So for a deterministic target, wrong bytes from the candidate are caught
   * and never handed out. Only the candidate's own call is timed.
   */
  #callDifferential(index: number, api: object, thisArg: unknown, args: unknown[], sync: boolean): unknown {
    const b = this.baseline;
    const c = this.candidate;
    const cs = this.candidateStats;
    const bs = this.baselineStats;
    b.inflight += 1;
    c.inflight += 1;
    let baseValue: unknown;
    let baseError: unknown;
    let baseThrew = false;
    try {
      baseValue = b.functions[index]!.apply(thisArg === api ? b.impl : thisArg, args);
    } catch (error) {
      baseThrew = true;
      baseError = error;
    }
    const timed = cs.shouldTime();
    const started = performance.now();
    let candValue: unknown;
    let candThrew = false;
    try {
      candValue = c.functions[index]!.apply(thisArg === api ? c.impl : thisArg, args);
    } catch {
      // The candidate's exception is counted (below) and never reaches the caller: the
      // baseline's outcome is what this call returns.
      candThrew = true;
    }
    const recordBaseline = (threw: boolean): void => {
      b.leave();
      b.calls += 1;
      bs.calls += 1;
      if (threw) {
        b.errors += 1;
        bs.errors += 1;
      }
    };
    const recordCandidate = (threw: boolean, mismatch: boolean, ms: number): void => {
      c.leave();
      c.calls += 1;
      cs.calls += 1;
      if (threw) {
        c.errors += 1;
        cs.errors += 1;
      }
      if (timed) cs.addLatency(ms, this.#options.random);
      cs.differentialSamples += 1;
      if (mismatch) cs.differentialMismatches += 1;
    };
    const differs = (bThrew: boolean, bValue: unknown, cThrew: boolean, cValue: unknown): boolean =>
      bThrew !== cThrew || (!bThrew && !isDeepStrictEqual(bValue, cValue));

    if (sync) {
      // A synchronous method compares raw values: a candidate that returns a promise where
      // the interface returns a value is a mismatch (and an error), never awaited into a match.
      const candBroke = !candThrew && isThenable(candValue);
      recordBaseline(baseThrew);
      recordCandidate(candThrew || candBroke, candBroke || differs(baseThrew, baseValue, candThrew, candValue), performance.now() - started);
      if (baseThrew) throw baseError;
      return baseValue;
    }
    // Asynchronous: the caller gets the baseline's answer as soon as it is ready; the
    // candidate is judged whenever it settles (one that never does leaves the step without
    // data, which is never promoted).
    const baseDone = Promise.resolve(baseThrew ? Promise.reject(baseError) : baseValue).then(
      (value) => ({ threw: false, value, error: undefined as unknown }),
      (error: unknown) => ({ threw: true, value: undefined as unknown, error }),
    );
    const candDone = Promise.resolve(candThrew ? Promise.reject(new Error('candidate threw')) : candValue).then(
      (value) => ({ threw: false, value, ms: performance.now() - started }),
      () => ({ threw: true, value: undefined as unknown, ms: performance.now() - started }),
    );
    void Promise.all([baseDone, candDone]).then(([bb, cc]) => recordCandidate(cc.threw, differs(bb.threw, bb.value, cc.threw, cc.value), cc.ms));
    return baseDone.then((bb) => {
      recordBaseline(bb.threw);
      if (bb.threw) throw bb.error;
      return bb.value;
    });
  }

}

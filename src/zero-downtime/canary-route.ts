import { HotPatchError } from '../core/index.js';
import { CallDeadlines, type DeadlineHandle } from './call-deadlines.js';
import { CanaryEvidence, type SideCounts } from './canary-evidence.js';
import { overwhelmingErrors } from './canary-judge.js';
import { runDifferential } from './differential-call.js';
import type { CanaryRouteOptions } from './canary-route-options.js';
import type { RuntimeVersion } from './runtime-version.js';
import { elapsedMs, isThenable } from './thenable.js';

// Re-exported (as planner.ts does its options): the route's importers take it and its options from one place.
export { latencyShare, type CanaryRouteOptions, type OutputValidator } from './canary-route-options.js';

const TWO_32 = 2 ** 32;

/** Baseline timings owed to timed candidate calls, at most (so both sides are sampled at the same moments). */
const MAX_ARMED = 8;

/** FNV-1a, 32 bits: cheap and well spread for bucketing routing keys. */
export function fnv1a32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** Settles a caller's promise with `produce()`'s outcome, a synchronous throw included. */
function answer(resolve: (value: unknown) => void, reject: (error: unknown) => void, produce: () => unknown): void {
  try {
    resolve(produce());
  } catch (error) {
    reject(error);
  }
}

/**
 * Routing while a candidate is canaried: each call picks a side at entry and runs wholly on
 * it. The ratio split uses a xorshift generator (no Math.random per call); sticky routing
 * hashes the routing key with the patch id. Every call feeds the canary's evidence; a run of
 * candidate errors no healthy version could produce trips the route at once (every call back
 * on the baseline, mid-interval) and wakes the judge.
 */
export class CanaryRoute {
  readonly baseline: RuntimeVersion;
  readonly candidate: RuntimeVersion;
  ratio = 0;
  readonly evidence: CanaryEvidence;
  readonly deadlines: CallDeadlines;
  /** Why the route tripped (every call on the baseline since), if it did. */
  tripped: string | undefined;
  /** Called once when the route trips. */
  onTrip: (reason: string) => void = () => {};
  readonly #options: CanaryRouteOptions;
  #threshold = 0;
  readonly #differentialThreshold: number;
  /** No differential check, sticky routing, retry or validation: the short path applies. */
  readonly #plain: boolean;
  #state: number;
  #armed = 0;
  /** Candidate calls until the next timed one, once sampling is sparse (a random gap). */
  #untilTimed = 1;
  /** This step's share is at least `latencyShare`: timings count for the latency test. */
  #latencyTimed = false;
  #nextTripCheck = 3;

  constructor(baseline: RuntimeVersion, candidate: RuntimeVersion, options: CanaryRouteOptions, firstRatio: number) {
    this.baseline = baseline;
    this.candidate = candidate;
    this.#options = options;
    this.#differentialThreshold = options.deterministic ? Math.min(TWO_32, Math.floor(options.differentialSampleRate * TWO_32)) : 0;
    this.#plain = this.#differentialThreshold === 0 && options.routingKey === undefined && !options.retryOnBaseline && options.validate === undefined;
    this.#state = (Math.floor(options.random() * 0xffffffff) | 1) >>> 0;
    this.evidence = new CanaryEvidence(firstRatio, { calls: baseline.calls, errors: baseline.errors });
    this.deadlines = new CallDeadlines(options.deadlineMs);
    this.#setThreshold(firstRatio);
  }

  /** Canary-wide counts of each side (kept for status and tests). */
  get candidateStats(): SideCounts {
    return this.evidence.candidate;
  }
  get baselineStats(): SideCounts {
    return this.evidence.baseline;
  }

  /** Moves to the next step: a new ratio and a new stratum of counts (evidence accumulates). */
  nextStep(ratio: number): void {
    if (this.tripped !== undefined) return;
    this.evidence.newStep(ratio);
    this.#nextTripCheck = 3;
    this.#setThreshold(ratio);
  }

  #setThreshold(ratio: number): void {
    this.ratio = ratio;
    this.#latencyTimed = ratio >= this.#options.latencyShare;
    this.#threshold = ratio >= 1 ? TWO_32 : Math.floor(ratio * TWO_32);
  }

  /** Every call back on the baseline now; the judge is woken to record the failure. */
  trip(reason: string): void {
    if (this.tripped !== undefined) return;
    this.tripped = reason;
    this.#threshold = 0;
    this.onTrip(reason);
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

  /**
   * Whether to time this candidate call: never during warm-up or below the latency share,
   * densely at first, then one in 64.
   */
  #timeCandidate(): boolean {
    const ev = this.evidence;
    // Checked before this call is counted: calls 1 … warmupCalls are the warm-up.
    if (!this.#latencyTimed || ev.candidate.calls < this.#options.warmupCalls) {
      ev.warmupExcluded += 1;
      // The baseline is still timed meanwhile (kept apart): async deadlines need its latency
      // early — densely until the reservoir is full, then one in 64.
      if (this.#armed < MAX_ARMED && (ev.baselineDuringWarmup.length < 256 || (this.#next() & 63) === 0)) this.#armed += 1;
      return false;
    }
    // Densely until 1,024 samples (or pairs, for shadow calls) are kept, then one call in 64
    // on average (each timing reads the clock twice on each side: about 35 ns a read), at
    // random gaps of 1 to 128 calls: a fixed period (every 64th call) would alias with a
    // patch's own — one that allocates every 16th call had every timed call be an allocating
    // one. A countdown keeps the common call to one decrement.
    if (Math.max(ev.candidateLatency.length, ev.pairs.length) < 1024) return true;
    if (--this.#untilTimed > 0) return false;
    this.#untilTimed = 1 + (this.#next() & 127);
    return true;
  }

  /** A timed candidate call's duration; the baseline is owed a timing at the same moment. */
  #candidateLatency(started: number, result?: unknown): void {
    const ms = elapsedMs(started, result);
    this.evidence.candidateLatency.add(ms, this.#options.random);
    this.candidate.addLatency(ms / 1000);
    if (this.#armed < MAX_ARMED) this.#armed += 1;
  }

  #candidateFailed(): void {
    this.candidate.errors += 1;
    const ev = this.evidence;
    ev.candidateError();
    // Only on the error path, and at geometrically spaced counts: healthy calls pay nothing.
    if (ev.current.candidateErrors >= this.#nextTripCheck && this.tripped === undefined) {
      this.#nextTripCheck = Math.ceil(this.#nextTripCheck * 1.4) + 1;
      const overwhelming = overwhelmingErrors(ev, this.#options.confidence);
      if (overwhelming !== undefined) this.trip(overwhelming.reason);
    }
  }

  /** A synchronous method: the common case is a pick, two counters and the call. */
  callSync(index: number, api: object, thisArg: unknown, args: unknown[]): unknown {
    if (this.#plain) {
      if (this.#next() < this.#threshold) return this.#candidateSync(index, api, thisArg, args);
      if (this.#armed === 0) {
        const v = this.baseline;
        v.calls += 1;
        this.evidence.baselineCall();
        try {
          return v.functions[index]!.apply(thisArg === api ? v.impl : thisArg, args);
        } catch (error) {
          v.errors += 1;
          this.evidence.baselineError();
          throw error;
        }
      }
      return this.#baselineSync(index, api, thisArg, args);
    }
    const toCandidate = this.#pickCandidate(args);
    if (!toCandidate) return this.#baselineSync(index, api, thisArg, args);
    if (this.#differentialThreshold > 0 && this.#next() < this.#differentialThreshold) return this.#differential(index, api, thisArg, args, true);
    return this.#candidateSync(index, api, thisArg, args);
  }

  /** An async (or promise-returning) method: in-flight calls are counted for draining. */
  callAsync(index: number, api: object, thisArg: unknown, args: unknown[]): unknown {
    const toCandidate = this.#pickCandidate(args);
    if (!toCandidate) return this.#baselineAsync(index, api, thisArg, args);
    if (this.#differentialThreshold > 0 && this.#next() < this.#differentialThreshold) return this.#differential(index, api, thisArg, args, false);
    return this.#candidateAsync(index, api, thisArg, args);
  }

  /**
   * A call on the baseline. `retry`: it re-answers a failed candidate call, so it is not
   * evidence (it would be a baseline sample drawn only from the inputs the candidate failed on).
   */
  #baselineSync(index: number, api: object, thisArg: unknown, args: unknown[], retry = false): unknown {
    const v = this.baseline;
    const timed = !retry && this.#armed > 0;
    if (timed) this.#armed -= 1;
    const started = timed ? performance.now() : 0;
    v.calls += 1;
    if (!retry) this.evidence.baselineCall();
    let result: unknown;
    try {
      result = v.functions[index]!.apply(thisArg === api ? v.impl : thisArg, args);
    } catch (error) {
      v.errors += 1;
      if (!retry) this.evidence.baselineError();
      throw error;
    }
    if (timed) this.#baselineLatency(started);
    return result;
  }

  #baselineLatency(started: number, result?: unknown): void {
    const ms = elapsedMs(started, result);
    const ev = this.evidence;
    (!this.#latencyTimed || ev.candidate.calls <= this.#options.warmupCalls ? ev.baselineDuringWarmup : ev.baselineLatency).add(ms, this.#options.random);
    this.baseline.addLatency(ms / 1000);
  }

  #candidateSync(index: number, api: object, thisArg: unknown, args: unknown[]): unknown {
    const v = this.candidate;
    const timed = this.#timeCandidate();
    const started = timed ? performance.now() : 0;
    v.calls += 1;
    this.evidence.candidateCall();
    let result: unknown;
    try {
      result = v.functions[index]!.apply(thisArg === api ? v.impl : thisArg, args);
    } catch (error) {
      this.#candidateFailed();
      if (this.#options.retryOnBaseline) return this.#baselineSync(index, api, thisArg, args, true);
      throw error;
    }
    if (isThenable(result)) {
      // The interface is synchronous: a candidate returning a promise is broken, and no caller gets one.
      this.#candidateFailed();
      if (this.#options.retryOnBaseline) return this.#baselineSync(index, api, thisArg, args, true);
      throw new TypeError(`version ${v.version} returned a promise from a synchronous method`);
    }
    if (timed) this.#candidateLatency(started);
    if (this.#options.validate !== undefined && !this.#valid(index, result, args)) {
      return this.#invalidOutput(() => this.#baselineSync(index, api, thisArg, args, true), index);
    }
    return result;
  }

  #valid(index: number, output: unknown, args: readonly unknown[]): boolean {
    try {
      return this.#options.validate!(output, args, this.#options.methodNames[index]!) !== false;
    } catch {
      // A validator that throws refuses the output; the refusal is what is recorded.
      return false;
    }
  }

  #invalidOutput<R>(onBaseline: () => R, index: number): R {
    this.evidence.candidate.invalid += 1;
    this.#candidateFailed();
    if (this.#options.retryOnBaseline) return onBaseline();
    throw new HotPatchError(
      'CANARY_FAILED',
      `candidate ${this.candidate.version} returned an output the target's validate hook refused (${this.#options.methodNames[index]})`,
    );
  }

  #baselineAsync(index: number, api: object, thisArg: unknown, args: unknown[], retry = false): unknown {
    const v = this.baseline;
    const timed = !retry && this.#armed > 0;
    if (timed) this.#armed -= 1;
    const started = timed ? performance.now() : 0;
    v.inflight += 1;
    v.calls += 1;
    if (!retry) this.evidence.baselineCall();
    let result: unknown;
    try {
      result = v.functions[index]!.apply(thisArg === api ? v.impl : thisArg, args);
    } catch (error) {
      v.leave();
      v.errors += 1;
      if (!retry) this.evidence.baselineError();
      throw error;
    }
    if (!isThenable(result)) {
      v.leave();
      if (timed) this.#baselineLatency(started);
      return result;
    }
    return Promise.resolve(result).then(
      (value) => {
        v.leave();
        if (timed) this.#baselineLatency(started, result);
        return value;
      },
      (error: unknown) => {
        v.leave();
        v.errors += 1;
        if (!retry) this.evidence.baselineError();
        throw error;
      },
    );
  }

  #candidateAsync(index: number, api: object, thisArg: unknown, args: unknown[]): unknown {
    const v = this.candidate;
    const timed = this.#timeCandidate();
    const started = timed ? performance.now() : 0;
    v.inflight += 1;
    v.calls += 1;
    this.evidence.candidateCall();
    const onBaseline = (): unknown => this.#baselineAsync(index, api, thisArg, args, true);
    let result: unknown;
    try {
      result = v.functions[index]!.apply(thisArg === api ? v.impl : thisArg, args);
    } catch (error) {
      v.leave();
      this.#candidateFailed();
      if (this.#options.retryOnBaseline) return onBaseline();
      throw error;
    }
    if (!isThenable(result)) {
      v.leave();
      return this.#candidateValue(result, index, args, timed, started, onBaseline);
    }
    return new Promise((resolve, reject) => {
      const handle: DeadlineHandle = this.deadlines.watch(() => {
        // Past its deadline: an error for the judge; the caller is answered now.
        this.evidence.candidate.timeouts += 1;
        this.#candidateFailed();
        if (this.#options.retryOnBaseline) {
          answer(resolve, reject, onBaseline);
          return;
        }
        reject(
          new HotPatchError('CANARY_FAILED', `candidate ${v.version} did not answer within its ${Math.round(this.deadlines.deadlineMs)} ms canary deadline`),
        );
      });
      Promise.resolve(result).then(
        (value) => {
          v.leave();
          if (!this.deadlines.settle(handle)) return;
          try {
            resolve(this.#candidateValue(value, index, args, timed, started, onBaseline, result));
          } catch (error) {
            reject(error);
          }
        },
        (error: unknown) => {
          v.leave();
          if (!this.deadlines.settle(handle)) return;
          this.#candidateFailed();
          if (this.#options.retryOnBaseline) answer(resolve, reject, onBaseline);
          else reject(error);
        },
      );
    });
  }

  #candidateValue(
    value: unknown,
    index: number,
    args: readonly unknown[],
    timed: boolean,
    started: number,
    onBaseline: () => unknown,
    result?: unknown,
  ): unknown {
    if (timed) this.#candidateLatency(started, result);
    if (this.#options.validate !== undefined && !this.#valid(index, value, args)) return this.#invalidOutput(onBaseline, index);
    return value;
  }

  /**
   * Runs the call on both sides and compares the outcomes; the caller always gets the
   * baseline's. So for a deterministic target, wrong bytes from the candidate are caught
   * and never handed out, and the two timings form a pair taken at the same moment.
   */
  #differential(index: number, api: object, thisArg: unknown, args: unknown[], sync: boolean): unknown {
    const timed = this.#timeCandidate();
    return runDifferential(
      {
        baseline: this.baseline,
        candidate: this.candidate,
        index,
        api,
        thisArg,
        args,
        sync,
        // Alternate which side runs first, so cache warmth favours neither in the pairs.
        candidateFirst: (this.#next() & 1) === 1,
        deadlines: this.deadlines,
        timed,
      },
      {
        baseline: (threw) => {
          this.evidence.baselineCall();
          if (threw) this.evidence.baselineError();
        },
        candidate: (outcome) => {
          this.evidence.candidateCall();
          this.evidence.differentialSamples += 1;
          if (outcome.timedOut) this.evidence.candidate.timeouts += 1;
          if (outcome.failed) this.#candidateFailed();
          if (outcome.mismatch) this.evidence.differentialMismatches += 1;
          if (outcome.candidateMs !== undefined && outcome.baselineMs !== undefined) {
            this.evidence.pairs.add(outcome.baselineMs, outcome.candidateMs, this.#options.random);
            this.candidate.addLatency(outcome.candidateMs / 1000);
          }
        },
      },
    );
  }
}

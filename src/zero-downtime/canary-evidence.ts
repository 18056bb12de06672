/** Latency samples kept per side for the whole canary; beyond this, reservoir sampling keeps it bounded. */
const MAX_SAMPLES = 4096;

/** Calls and failures one side served during the canary (all steps so far). */
export class SideCounts {
  calls = 0;
  /** Throws, rejections, missed deadlines and failed validations: everything a caller would call a failure. */
  errors = 0;
  /** Async calls that missed their deadline (also counted in `errors`). */
  timeouts = 0;
  /** Outputs the host's `validate` hook refused (also counted in `errors`). */
  invalid = 0;
}

/**
 * A bounded, uniform sample of latencies (ms) over the whole canary: once full, each new
 * value replaces a random slot with probability capacity/seen (reservoir sampling), so early
 * and late moments are represented alike.
 */
export class LatencyReservoir {
  readonly values: Float64Array;
  length = 0;
  seen = 0;

  constructor(capacity = MAX_SAMPLES) {
    this.values = new Float64Array(capacity);
  }

  /** Returns the slot written, or -1 when the value was not kept. */
  add(ms: number, random: () => number): number {
    this.seen += 1;
    if (this.length < this.values.length) {
      this.values[this.length] = ms;
      return this.length++;
    }
    const slot = Math.floor(random() * this.seen);
    if (slot >= this.values.length) return -1;
    this.values[slot] = ms;
    return slot;
  }

  view(): Float64Array {
    return this.values.subarray(0, this.length);
  }
}

/** Paired timings of shadow calls: both versions ran the same input at the same moment. */
export class PairReservoir {
  readonly baseline = new LatencyReservoir();
  readonly candidate = new Float64Array(MAX_SAMPLES);

  add(baselineMs: number, candidateMs: number, random: () => number): void {
    const slot = this.baseline.add(baselineMs, random);
    if (slot >= 0) this.candidate[slot] = candidateMs;
  }

  get length(): number {
    return this.baseline.length;
  }

  /**
   * Candidate over baseline after the tolerance, on the log scale: log(candidate) −
   * log(factor × baseline + floor); positive exactly when the candidate is beyond it. On this
   * scale a stall of either side (preemption, a GC pause) weighs the same: on the plain
   * difference a stall of the baseline counts `factor` times one of the candidate, so a noisy
   * neighbour's spikes would pull the signed-rank test towards "not slower".
   */
  excess(factor: number, floorMs: number): Float64Array {
    const n = this.baseline.length;
    const out = new Float64Array(n);
    const b = this.baseline.values;
    // A zero-length timing (timer resolution) must not make the logarithm infinite.
    for (let i = 0; i < n; i++) out[i] = Math.log(Math.max(this.candidate[i]!, 1e-6)) - Math.log(Math.max(factor * b[i]! + floorMs, 1e-6));
    return out;
  }

  ratios(): Float64Array {
    const n = this.baseline.length;
    const out = new Float64Array(n);
    const b = this.baseline.values;
    // A zero-length baseline timing (timer resolution) must not make the ratio infinite.
    for (let i = 0; i < n; i++) out[i] = this.candidate[i]! / Math.max(b[i]!, 1e-6);
    return out;
  }
}

/** One step's share of the figures, kept apart so the error test can be stratified by step. */
export interface StepCounts {
  ratio: number;
  candidateCalls: number;
  candidateErrors: number;
  baselineCalls: number;
  baselineErrors: number;
}

/**
 * Everything the judge weighs, accumulated across intervals and steps (sequential evidence):
 * counts per side and per step, time-interleaved latency samples of both sides (a baseline
 * call is timed right after each timed candidate call, so both sides are sampled at the same
 * moments and machine noise hits them alike), paired timings of shadow calls, and the
 * outcome comparisons of deterministic targets.
 */
export class CanaryEvidence {
  readonly candidate = new SideCounts();
  readonly baseline = new SideCounts();
  readonly steps: StepCounts[] = [];
  readonly candidateLatency = new LatencyReservoir();
  readonly baselineLatency = new LatencyReservoir();
  /** Baseline timings taken while the candidate warms up: not compared with it, only used for deadlines. */
  readonly baselineDuringWarmup = new LatencyReservoir(256);
  readonly pairs = new PairReservoir();
  /** Candidate calls not timed because V8 had not yet optimised the candidate. */
  warmupExcluded = 0;
  differentialSamples = 0;
  differentialMismatches = 0;
  /**
   * The baseline's own record before the canary began (its lifetime calls and errors): the
   * reference for a step with no baseline calls of its own (a ratio of 1), not the same moment.
   */
  readonly baselineBefore: { calls: number; errors: number };

  constructor(firstRatio: number, baselineBefore: { calls: number; errors: number } = { calls: 0, errors: 0 }) {
    this.baselineBefore = { calls: baselineBefore.calls, errors: baselineBefore.errors };
    this.newStep(firstRatio);
  }

  newStep(ratio: number): void {
    this.steps.push({ ratio, candidateCalls: 0, candidateErrors: 0, baselineCalls: 0, baselineErrors: 0 });
  }

  get current(): StepCounts {
    return this.steps[this.steps.length - 1]!;
  }

  candidateCall(): void {
    this.candidate.calls += 1;
    this.current.candidateCalls += 1;
  }

  candidateError(): void {
    this.candidate.errors += 1;
    this.current.candidateErrors += 1;
  }

  baselineCall(): void {
    this.baseline.calls += 1;
    this.current.baselineCalls += 1;
  }

  baselineError(): void {
    this.baseline.errors += 1;
    this.current.baselineErrors += 1;
  }
}

/** Latency samples kept per side and step; beyond this, reservoir sampling keeps it bounded. */
const MAX_SAMPLES = 8192;
/** Every call is timed until this many samples exist, then one call in 32. */
const DENSE_SAMPLES = 256;

/**
 * Health figures of one version during one canary step. Timing every call would cost more
 * than the call itself for small functions, so latency is sampled: densely at first, then
 * one call in thirty-two.
 */
export class CallStats {
  calls = 0;
  errors = 0;
  differentialSamples = 0;
  differentialMismatches = 0;
  readonly latenciesMs: number[] = [];
  #tick = 0;
  #seen = 0;

  shouldTime(): boolean {
    return (++this.#tick & 31) === 0 || this.latenciesMs.length < DENSE_SAMPLES;
  }

  addLatency(ms: number, random: () => number): void {
    this.#seen += 1;
    if (this.latenciesMs.length < MAX_SAMPLES) {
      this.latenciesMs.push(ms);
      return;
    }
    const slot = Math.floor(random() * this.#seen);
    if (slot < MAX_SAMPLES) this.latenciesMs[slot] = ms;
  }

  merge(other: CallStats): void {
    this.calls += other.calls;
    this.errors += other.errors;
    this.differentialSamples += other.differentialSamples;
    this.differentialMismatches += other.differentialMismatches;
    for (const l of other.latenciesMs) if (this.latenciesMs.length < MAX_SAMPLES) this.latenciesMs.push(l);
  }
}

/** Nearest-rank percentile; undefined without samples. */
export function percentile(samples: readonly number[], p: number): number | undefined {
  if (samples.length === 0) return undefined;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank];
}

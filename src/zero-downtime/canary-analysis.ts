import { percentile, type CallStats } from './call-stats.js';

export type StepVerdict = 'Successful' | 'Failed' | 'Inconclusive';

export interface StepFigures {
  ratio: number;
  candidateCalls: number;
  candidateErrors: number;
  errorRate: number;
  baselineCalls: number;
  /** The percentile compared: 99, or lower while the candidate has under 200 samples. */
  latencyPercentile: number;
  candidateP99Ms: number | undefined;
  baselineP99Ms: number | undefined;
  latencyRatio: number | undefined;
  differentialSamples: number;
  differentialMismatches: number;
}

export interface StepAnalysis {
  verdict: StepVerdict;
  reason: string;
  figures: StepFigures;
}

export interface AnalysisThresholds {
  minCallsPerStep: number;
  maxErrorRate: number;
  maxLatencyRatio: number;
  minLatencySamples: number;
  latencyNoiseFloorMs: number;
}

/**
 * One canary step's verdict, from figures alone (pure). Order: enough data? → wrong outputs
 * (any mismatch fails: a deterministic target has exactly one right answer) → error rate →
 * latency ratio. The reason always carries the figures that decided it.
 */
export function analyzeStep(ratio: number, candidate: CallStats, baseline: CallStats, t: AnalysisThresholds): StepAnalysis {
  // With few candidate samples the 99th percentile is just the maximum, where one GC pause
  // decides; so the percentile tolerates two outliers until there are 200 samples, and the
  // baseline is read at the same percentile for a like-for-like ratio.
  const n = candidate.latenciesMs.length;
  const p = n === 0 ? 99 : Math.min(99, 100 * (1 - 2 / n));
  const candidateP99 = percentile(candidate.latenciesMs, p);
  const baselineP99 = percentile(baseline.latenciesMs, p);
  const latencyJudged =
    candidate.latenciesMs.length >= t.minLatencySamples &&
    baseline.latenciesMs.length >= t.minLatencySamples &&
    candidateP99 !== undefined &&
    baselineP99 !== undefined;
  // The noise floor is added to both sides: microsecond jitter (timer resolution, a GC
  // pause) must not read as "2x slower", while a real slowdown well above it still does.
  const latencyRatio = latencyJudged ? (candidateP99! + t.latencyNoiseFloorMs) / (baselineP99! + t.latencyNoiseFloorMs) : undefined;
  const errorRate = candidate.calls === 0 ? 0 : candidate.errors / candidate.calls;
  const figures: StepFigures = {
    ratio,
    candidateCalls: candidate.calls,
    candidateErrors: candidate.errors,
    errorRate,
    baselineCalls: baseline.calls,
    latencyPercentile: Math.max(0, Math.round(p * 10) / 10),
    candidateP99Ms: candidateP99,
    baselineP99Ms: baselineP99,
    latencyRatio,
    differentialSamples: candidate.differentialSamples,
    differentialMismatches: candidate.differentialMismatches,
  };
  if (candidate.differentialMismatches > 0) {
    return {
      verdict: 'Failed',
      reason: `candidate output differed from the baseline in ${candidate.differentialMismatches} of ${candidate.differentialSamples} compared calls`,
      figures,
    };
  }
  if (candidate.calls < t.minCallsPerStep) {
    return { verdict: 'Inconclusive', reason: `only ${candidate.calls} of ${t.minCallsPerStep} candidate calls needed to judge`, figures };
  }
  if (errorRate > t.maxErrorRate) {
    return {
      verdict: 'Failed',
      reason: `candidate error rate ${pct(errorRate)} (${candidate.errors} of ${candidate.calls} calls) is above the ${pct(t.maxErrorRate)} limit`,
      figures,
    };
  }
  if (latencyRatio !== undefined && latencyRatio > t.maxLatencyRatio) {
    return {
      verdict: 'Failed',
      reason: `candidate p99 ${ms(candidateP99!)} against baseline p99 ${ms(baselineP99!)}: ratio ${latencyRatio.toFixed(2)}x with the ${ms(t.latencyNoiseFloorMs)} noise floor (limit ${t.maxLatencyRatio}x)`,
      figures,
    };
  }
  return {
    verdict: 'Successful',
    reason:
      `${candidate.calls} candidate calls, error rate ${pct(errorRate)}` +
      (latencyRatio === undefined ? ', latency not yet judged' : `, p99 ratio ${latencyRatio.toFixed(2)}x`) +
      (candidate.differentialSamples > 0 ? `, ${candidate.differentialSamples} outputs matched the baseline` : ''),
    figures,
  };
}

function pct(x: number): string {
  return `${(x * 100).toFixed(2)}%`;
}
function ms(x: number): string {
  return `${x.toFixed(3)}ms`;
}

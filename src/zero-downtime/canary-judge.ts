import {
  binomialUpperTail,
  clopperPearsonUpper,
  fisherExactGreater,
  mannWhitneyGreater,
  median,
  stratifiedFisherGreater,
  wilcoxonSignedRankGreater,
} from '../stats/index.js';
import type { CanaryEvidence } from './canary-evidence.js';

export type StepVerdict = 'Successful' | 'Failed' | 'Inconclusive';

/** Which rule decided a verdict. */
export type JudgeRule = 'output-mismatch' | 'overwhelming-errors' | 'error-excess' | 'error-ceiling' | 'latency-shift' | 'insufficient-data' | 'no-regression';

/** Every figure a verdict rests on: published in `CanaryStep` events, the CLI line and the audit log. */
export interface JudgeFigures {
  /** Share of calls the candidate had in the step judged. */
  ratio: number;
  /** Which look this is (1 for the first analysis); the significance level shrinks with it. */
  look: number;
  /** Significance level each failing test used at this look (errors and latency each). */
  alpha: number;
  confidence: number;
  rule: JudgeRule;
  candidateCalls: number;
  candidateErrors: number;
  /** The candidate's error rate (errors / calls). */
  errorRate: number;
  baselineCalls: number;
  baselineErrors: number;
  baselineErrorRate: number;
  /** Candidate calls this step (the step needs `minCallsPerStep`). */
  stepCandidateCalls: number;
  timeouts: number;
  invalidOutputs: number;
  errorTest: 'fisher-exact' | 'fisher-exact-stratified' | 'fisher-exact-vs-history' | 'binomial-vs-baseline-bound';
  /** One-sided p-value of "the candidate fails more often than the baseline (plus the tolerated excess)". */
  errorP: number;
  latencyTest: 'wilcoxon-paired' | 'mann-whitney' | 'none';
  /** One-sided p-value of "the candidate is slower than (1 + maxLatencyShift) × the baseline". */
  latencyP: number | undefined;
  /** Effect size: median of paired candidate/baseline ratios, or the ratio of medians. */
  latencyRatio: number | undefined;
  /** Latency samples (pairs, for shadowed calls) the latency test used. */
  latencySamples: number;
  warmupExcluded: number;
  differentialSamples: number;
  differentialMismatches: number;
}

export interface JudgeVerdict {
  verdict: StepVerdict;
  reason: string;
  figures: JudgeFigures;
}

export interface JudgeOptions {
  confidence: number;
  maxErrorExcess: number;
  maxErrorRate: number;
  maxLatencyShift: number;
  latencyNoiseFloorMs: number;
  minCallsPerStep: number;
  minCalls: number;
  minLatencySamples: number;
}

/**
 * Share of the false-alarm budget spent at look k: 6/(π²k²), which sums to 1 over all looks,
 * so judging after every interval never raises the false-alarm rate above 1 − confidence
 * (a Bonferroni-style alpha-spending rule; later looks, with more data, need less luck).
 */
export function lookAlpha(confidence: number, look: number): number {
  // Half the budget for errors, half for latency.
  return ((1 - confidence) / 2) * (6 / (Math.PI * Math.PI * look * look));
}

/**
 * A run of errors no healthy version could produce is judged at once, mid-interval, with a
 * far smaller significance level than the interval looks: it is checked at most ~40 times a
 * canary, so its share of false alarms stays under 1 % of the budget.
 */
export function tripAlpha(confidence: number): number {
  return (1 - confidence) / 4000;
}

/**
 * Errors against a reference with a tolerance: H0 "rate ≤ factor × reference rate + slack".
 * The reference rate is bounded above (Clopper–Pearson at 1 − α/2), then k of n is tested
 * against factor × that bound + slack (exact binomial at α/2); a union bound keeps the level
 * α, so the returned p (doubled) is compared with α.
 */
export function boundedExcessTest(
  k: number,
  n: number,
  refK: number,
  refN: number,
  alpha: number,
  factor: number,
  slack: number,
): { p: number; bound: number } {
  const bound = Math.min(1, factor * clopperPearsonUpper(refK, refN, 1 - alpha / 2) + slack);
  return { p: Math.min(1, 2 * binomialUpperTail(k, n, bound)), bound };
}

/** The error test: candidate vs baseline, stratified by step (the ratio changes between steps). */
export function errorTest(evidence: CanaryEvidence, maxErrorExcess: number, alpha: number): { test: JudgeFigures['errorTest']; p: number } {
  const c = evidence.candidate;
  const b = evidence.baseline;
  if (c.errors === 0) return { test: maxErrorExcess > 0 ? 'binomial-vs-baseline-bound' : 'fisher-exact', p: 1 };
  if (maxErrorExcess > 0) {
    // H0: p_c <= p_b + δ.
    return { test: 'binomial-vs-baseline-bound', p: boundedExcessTest(c.errors, c.calls, b.errors, b.calls, alpha, 1, maxErrorExcess).p };
  }
  if (evidence.steps.some((s) => s.ratio >= 1 && s.candidateCalls > 0)) {
    // A step with no baseline calls of its own (ratio 1): the baseline's record before the
    // canary joins the reference — not the same moment, which the figures say.
    const h = evidence.baselineBefore;
    return { test: 'fisher-exact-vs-history', p: fisherExactGreater(c.errors, c.calls, b.errors + h.errors, b.calls + h.calls) };
  }
  // Conditional on each step's margins a step without errors carries no information, and
  // pooling it in would mix ratios (Simpson's paradox): only steps with errors are compared.
  const strata = evidence.steps.filter((s) => s.candidateErrors + s.baselineErrors > 0);
  if (strata.length === 1) {
    const s = strata[0]!;
    return { test: 'fisher-exact', p: fisherExactGreater(s.candidateErrors, s.candidateCalls, s.baselineErrors, s.baselineCalls) };
  }
  return {
    test: 'fisher-exact-stratified',
    p: stratifiedFisherGreater(evidence.steps.map((s) => ({ k1: s.candidateErrors, n1: s.candidateCalls, k2: s.baselineErrors, n2: s.baselineCalls }))),
  };
}

/**
 * The latency test: paired Wilcoxon signed-rank on shadow calls (same input, same moment:
 * machine noise cancels) when there are enough pairs, else Mann–Whitney U on time-interleaved
 * samples. Both test H0 "candidate ≤ (1 + shift) × baseline + floor" one-sided, so a good patch
 * within the tolerance is not failed however many samples there are.
 */
export function latencyTest(
  evidence: CanaryEvidence,
  options: Pick<JudgeOptions, 'maxLatencyShift' | 'latencyNoiseFloorMs' | 'minLatencySamples'>,
): { test: JudgeFigures['latencyTest']; p: number | undefined; ratio: number | undefined; samples: number; beyond: boolean } {
  const factor = 1 + options.maxLatencyShift;
  const floor = options.latencyNoiseFloorMs;
  if (evidence.pairs.length >= options.minLatencySamples) {
    const excess = evidence.pairs.excess(factor, floor);
    const result = wilcoxonSignedRankGreater(excess);
    return { test: 'wilcoxon-paired', p: result.p, ratio: median(evidence.pairs.ratios()), samples: evidence.pairs.length, beyond: median(excess) > 0 };
  }
  const c = evidence.candidateLatency.view();
  const b = evidence.baselineLatency.view();
  if (c.length < options.minLatencySamples || b.length < options.minLatencySamples) {
    return { test: 'none', p: undefined, ratio: undefined, samples: Math.min(c.length, b.length), beyond: false };
  }
  const scaled = new Float64Array(b.length);
  for (let i = 0; i < b.length; i++) scaled[i] = factor * b[i]! + floor;
  const result = mannWhitneyGreater(c, scaled);
  const bm = median(b);
  const cm = median(c);
  return { test: 'mann-whitney', p: result.p, ratio: cm / Math.max(bm, 1e-6), samples: Math.min(c.length, b.length), beyond: cm > factor * bm + floor };
}

/**
 * One look at the canary's accumulated evidence (pure). Rules in order: a deterministic
 * target's wrong output (any mismatch: there is one right answer) → errors above the
 * baseline's (significant at this look's level) → an absolute error ceiling → latency above
 * the tolerance (significant AND the effect above the tolerance) → enough data to move on
 * (`minCallsPerStep`; before promotion also `minCalls` and a latency verdict) → Successful.
 */
export function judge(evidence: CanaryEvidence, look: number, isLastStep: boolean, o: JudgeOptions): JudgeVerdict {
  const alpha = lookAlpha(o.confidence, look);
  const c = evidence.candidate;
  const b = evidence.baseline;
  const step = evidence.current;
  const errors = errorTest(evidence, o.maxErrorExcess, alpha);
  const latency = latencyTest(evidence, o);
  const figures: JudgeFigures = {
    ratio: step.ratio,
    look,
    alpha,
    confidence: o.confidence,
    rule: 'no-regression',
    candidateCalls: c.calls,
    candidateErrors: c.errors,
    errorRate: rate(c.errors, c.calls),
    baselineCalls: b.calls,
    baselineErrors: b.errors,
    baselineErrorRate: rate(b.errors, b.calls),
    stepCandidateCalls: step.candidateCalls,
    timeouts: c.timeouts,
    invalidOutputs: c.invalid,
    errorTest: errors.test,
    errorP: errors.p,
    latencyTest: latency.test,
    latencyP: latency.p,
    latencyRatio: latency.ratio,
    latencySamples: latency.samples,
    warmupExcluded: evidence.warmupExcluded,
    differentialSamples: evidence.differentialSamples,
    differentialMismatches: evidence.differentialMismatches,
  };
  const decide = (verdict: StepVerdict, rule: JudgeRule, reason: string): JudgeVerdict => ({ verdict, reason, figures: { ...figures, rule } });

  if (evidence.differentialMismatches > 0) {
    return decide(
      'Failed',
      'output-mismatch',
      `candidate output differed from the baseline in ${evidence.differentialMismatches} of ${evidence.differentialSamples} compared calls`,
    );
  }
  if (errors.p < alpha) return decide('Failed', 'error-excess', errorSentence(figures, o, alpha));
  if (o.maxErrorRate < 1 && c.errors > 0) {
    const p = binomialUpperTail(c.errors, c.calls, o.maxErrorRate);
    if (p < alpha) {
      return decide(
        'Failed',
        'error-ceiling',
        `candidate failed ${count(c.errors)} of ${count(c.calls)} calls (${pct(figures.errorRate)}): above the ${pct(o.maxErrorRate)} ceiling, exact binomial p=${p3(p)} < α=${p3(alpha)}`,
      );
    }
  }
  // Significant AND the effect beyond the tolerance (the median past (1 + shift) × baseline + floor).
  if (latency.p !== undefined && latency.ratio !== undefined && latency.p < alpha && latency.beyond) {
    return decide('Failed', 'latency-shift', latencySentence(figures, o, alpha));
  }
  if (step.candidateCalls < o.minCallsPerStep) {
    return decide('Inconclusive', 'insufficient-data', `only ${count(step.candidateCalls)} of ${count(o.minCallsPerStep)} candidate calls needed in this step`);
  }
  if (isLastStep && c.calls < o.minCalls) {
    return decide('Inconclusive', 'insufficient-data', `only ${count(c.calls)} of ${count(o.minCalls)} candidate calls needed before promotion`);
  }
  // Latency must be judged before promotion whenever the last step has baseline calls at the
  // same moment to compare with (a last step of 100 % has none: its figures say so).
  if (isLastStep && latency.test === 'none' && o.minCalls > 0 && step.ratio < 1) {
    return decide(
      'Inconclusive',
      'insufficient-data',
      `only ${latency.samples} of ${o.minLatencySamples} latency samples needed on each side before promotion`,
    );
  }
  return decide('Successful', 'no-regression', summarySentence(figures));
}

/** The mid-interval check on the current step's counts alone (one ratio: no confounding). */
export function overwhelmingErrors(evidence: CanaryEvidence, confidence: number): { p: number; reason: string } | undefined {
  const s = evidence.current;
  const h = s.ratio >= 1 ? evidence.baselineBefore : { calls: 0, errors: 0 };
  const p = fisherExactGreater(s.candidateErrors, s.candidateCalls, s.baselineErrors + h.errors, s.baselineCalls + h.calls);
  const alpha = tripAlpha(confidence);
  if (!(p < alpha)) return undefined;
  const timeouts = evidence.candidate.timeouts;
  return {
    p,
    reason:
      `candidate failed ${count(s.candidateErrors)} of ${count(s.candidateCalls)} calls in this step${timeouts > 0 ? ` (${count(timeouts)} past their deadline)` : ''} ` +
      `against the baseline's ${count(s.baselineErrors + h.errors)} of ${count(s.baselineCalls + h.calls)}${h.calls > 0 ? ' (its record before the canary)' : ''}: ` +
      `Fisher exact one-sided p=${p3(p)} < α=${p3(alpha)}, judged at once`,
  };
}

export function errorSentence(f: JudgeFigures, o: Pick<JudgeOptions, 'maxErrorExcess'>, alpha: number): string {
  const tolerated = o.maxErrorExcess > 0 ? ` + ${pct(o.maxErrorExcess)} tolerated` : '';
  const failures = f.timeouts > 0 ? ` (${count(f.timeouts)} past their deadline)` : '';
  return (
    `candidate failed ${count(f.candidateErrors)} of ${count(f.candidateCalls)} calls (${pct(f.errorRate)})${failures} against the baseline's ` +
    `${count(f.baselineErrors)} of ${count(f.baselineCalls)} (${pct(f.baselineErrorRate)}${tolerated}): ${testName(f.errorTest)} one-sided p=${p3(f.errorP)} < α=${p3(alpha)}`
  );
}

export function latencySentence(f: JudgeFigures, o: Pick<JudgeOptions, 'maxLatencyShift'>, alpha: number): string {
  return (
    `candidate latency ×${f.latencyRatio!.toFixed(2)} the baseline's (tolerated ×${(1 + o.maxLatencyShift).toFixed(2)}): ` +
    `${testName(f.latencyTest)} one-sided p=${p3(f.latencyP!)} < α=${p3(alpha)} over ${count(f.latencySamples)} ${f.latencyTest === 'wilcoxon-paired' ? 'pairs' : 'samples per side'}` +
    ` (${count(f.warmupExcluded)} warm-up calls excluded)`
  );
}

export function summarySentence(f: JudgeFigures): string {
  const latency =
    f.latencyRatio === undefined || f.latencyP === undefined
      ? 'latency not yet judged'
      : `latency ×${f.latencyRatio.toFixed(2)} (${testName(f.latencyTest)} p=${p3(f.latencyP)}, ${count(f.latencySamples)} ${f.latencyTest === 'wilcoxon-paired' ? 'pairs' : 'samples'})`;
  const outputs = f.differentialSamples > 0 ? `, ${count(f.differentialSamples)} outputs matched the baseline` : '';
  return (
    `${count(f.candidateCalls)} candidate calls, ${count(f.candidateErrors)} errors (${pct(f.errorRate)}) against the baseline's ` +
    `${count(f.baselineErrors)} of ${count(f.baselineCalls)} (${testName(f.errorTest)} p=${p3(f.errorP)}); ${latency}${outputs}`
  );
}

function testName(test: string): string {
  switch (test) {
    case 'fisher-exact':
      return 'Fisher exact';
    case 'fisher-exact-stratified':
      return 'Fisher exact (stratified by step)';
    case 'fisher-exact-vs-history':
      return "Fisher exact (against the baseline's record before the canary too)";
    case 'binomial-vs-baseline-bound':
      return 'exact binomial against the baseline bound';
    case 'wilcoxon-paired':
      return 'Wilcoxon signed-rank (paired)';
    case 'mann-whitney':
      return 'Mann–Whitney U';
    default:
      return test;
  }
}

function rate(k: number, n: number): number {
  return n === 0 ? 0 : k / n;
}
export function pct(x: number): string {
  return `${(x * 100).toFixed(x > 0 && x < 0.001 ? 3 : 2)}%`;
}
export function count(n: number): string {
  return n.toLocaleString('en-US');
}
/** A p-value or level: 3 significant digits, exponent form when small. */
export function p3(x: number): string {
  if (x === 0) return '0';
  if (x >= 0.001) return String(Number(x.toPrecision(3)));
  return x.toExponential(2);
}

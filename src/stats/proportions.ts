/**
 * Tests and bounds on counts: Fisher's exact test (one-sided), the binomial upper tail and
 * the Clopper–Pearson upper bound.
 *
 * Tails are summed without looping over n: the log pmf at the first term comes from
 * Loader's saddle-point form (densities.ts), and the following terms from the exact ratio
 * of consecutive pmf values, walking away from the mode until a term falls below 1e-17 of
 * the running sum. The tail on the far side of the mean is summed directly (full relative
 * accuracy, down to the smallest double); the near tail is one minus the far one.
 */
import { logBinomialPmf, logHypergeometricPmf } from './densities.js';
import { requireOpenUnit, requireProbability, requireSuccesses } from './validate.js';

const TAIL_EPSILON = 1e-17;

function clamp01(p: number): number {
  return p < 0 ? 0 : p > 1 ? 1 : p;
}

// ---------------------------------------------------------------------------------------
// Hypergeometric

/**
 * X = errors in group 1 given the margins: n1 calls in group 1, n2 in group 2, K errors in
 * all. Σ_{x >= from} P(X = x) / P(X = from), x up to hi. Ratios are monotone in x
 * (log-concave pmf), so once a ratio is below 1 the terms only shrink.
 */
function hyperSumUp(from: number, hi: number, n1: number, n2: number, K: number): number {
  let term = 1;
  let sum = 1;
  for (let x = from; x < hi; x++) {
    const r = ((n1 - x) * (K - x)) / ((x + 1) * (n2 - K + x + 1));
    term *= r;
    sum += term;
    if (r < 1 && term < TAIL_EPSILON * sum) break;
  }
  return sum;
}

/** Σ_{x <= from} P(X = x) / P(X = from), x down to lo. */
function hyperSumDown(from: number, lo: number, n1: number, n2: number, K: number): number {
  let term = 1;
  let sum = 1;
  for (let x = from; x > lo; x--) {
    const r = (x * (n2 - K + x)) / ((n1 - x + 1) * (K - x + 1));
    term *= r;
    sum += term;
    if (r < 1 && term < TAIL_EPSILON * sum) break;
  }
  return sum;
}

/**
 * One-sided Fisher exact test, H1: the first group's rate is greater. k1 errors in n1
 * calls vs k2 in n2. Returns P(X >= k1) under the hypergeometric with fixed margins.
 */
export function fisherExactGreater(k1: number, n1: number, k2: number, n2: number): number {
  const fn = 'fisherExactGreater';
  requireSuccesses(fn, 'k1', k1, 'n1', n1);
  requireSuccesses(fn, 'k2', k2, 'n2', n2);
  const K = k1 + k2;
  const N = n1 + n2;
  const lo = Math.max(0, K - n2);
  const hi = Math.min(K, n1);
  if (k1 <= lo) return 1;
  const mean = (n1 / N) * K;
  if (k1 > mean) {
    const logFirst = logHypergeometricPmf(k1, n1, n2, K);
    return clamp01(Math.exp(logFirst) * hyperSumUp(k1, hi, n1, n2, K));
  }
  const logFirst = logHypergeometricPmf(k1 - 1, n1, n2, K);
  return clamp01(1 - Math.exp(logFirst) * hyperSumDown(k1 - 1, lo, n1, n2, K));
}

// ---------------------------------------------------------------------------------------
// Binomial

/** P(X < k) and P(X >= k) for X ~ Binomial(n, p); the smaller one summed directly. */
function binomialSplit(k: number, n: number, p: number): { lower: number; upper: number } {
  if (k <= 0) return { lower: 0, upper: 1 };
  if (k > n || p === 0) return { lower: 1, upper: 0 };
  if (p === 1) return { lower: 0, upper: 1 };
  const q = 1 - p;
  if (k > n * p) {
    // Upper tail from k upward: ratio P(x+1)/P(x) = (n − x)/(x + 1) · p/q.
    const odds = p / q;
    let term = 1;
    let sum = 1;
    for (let x = k; x < n; x++) {
      const r = ((n - x) / (x + 1)) * odds;
      term *= r;
      sum += term;
      if (r < 1 && term < TAIL_EPSILON * sum) break;
    }
    const upper = clamp01(Math.exp(logBinomialPmf(k, n, p, q)) * sum);
    return { lower: 1 - upper, upper };
  }
  // Lower tail from k − 1 downward: ratio P(x−1)/P(x) = x/(n − x + 1) · q/p.
  const odds = q / p;
  let term = 1;
  let sum = 1;
  for (let x = k - 1; x > 0; x--) {
    const r = (x / (n - x + 1)) * odds;
    term *= r;
    sum += term;
    if (r < 1 && term < TAIL_EPSILON * sum) break;
  }
  const lower = clamp01(Math.exp(logBinomialPmf(k - 1, n, p, q)) * sum);
  return { lower, upper: 1 - lower };
}

/** P(X >= k) for X ~ Binomial(n, p). Exact (log-space start, early stop), p in [0, 1]. */
export function binomialUpperTail(k: number, n: number, p: number): number {
  const fn = 'binomialUpperTail';
  requireSuccesses(fn, 'k', k, 'n', n);
  requireProbability(fn, 'p', p);
  return binomialSplit(k, n, p).upper;
}

/**
 * One-sided Clopper–Pearson upper confidence bound for a binomial rate: k successes in n
 * trials, at the given confidence (e.g. 0.99). The bound is the p at which
 * P(X <= k; n, p) = 1 − confidence, found by bisection (the CDF falls as p grows) until
 * the bracket is narrower than 1e-15 of the bound; the upper end of the bracket is returned,
 * so the bound never undercovers. n = 0 or k = n → 1; k = 0 has the closed form
 * 1 − (1 − confidence)^{1/n}.
 */
export function clopperPearsonUpper(k: number, n: number, confidence: number): number {
  const fn = 'clopperPearsonUpper';
  requireSuccesses(fn, 'k', k, 'n', n);
  requireOpenUnit(fn, 'confidence', confidence);
  if (k === n) return 1;
  const alpha = 1 - confidence;
  if (k === 0) return -Math.expm1(Math.log(alpha) / n);
  let lo = 0;
  let hi = 1;
  for (let i = 0; i < 200 && hi - lo > 1e-15 * hi; i++) {
    const mid = 0.5 * (lo + hi);
    if (binomialSplit(k + 1, n, mid).lower > alpha) lo = mid;
    else hi = mid;
  }
  return hi;
}

/**
 * Log probability mass functions of the binomial and hypergeometric distributions,
 * accurate for counts up to 2^53 (C. Loader, "Fast and Accurate Computation of Binomial
 * Probabilities", 2000; the method of R's dbinom_raw and dhyper).
 *
 * Writing log C(n, x) as differences of log-gamma values loses absolute accuracy as n grows
 * (log Γ(1e9) ≈ 2e10 carries an absolute error near 1e-6). Loader's form splits the log
 * pmf into Stirling-series remainders (tiny, exact to 1e-16 absolute) and deviance terms
 * bd0 that are computed with relative accuracy, so the absolute error of the log pmf is of
 * the order of 1e-16 × |log pmf|, whatever n is.
 */
import { logFactorial } from './special.js';

const LN_2PI = Math.log(2 * Math.PI);
const LN_SQRT_2PI = 0.5 * LN_2PI;

// stirlerr(n) = log(n!) − log(√(2πn) (n/e)^n) for n = 1..15 from exact factorials.
const STIRLERR_SMALL = (() => {
  const table = new Float64Array(16);
  for (let n = 1; n < table.length; n++) {
    table[n] = logFactorial(n) - (n + 0.5) * Math.log(n) + n - LN_SQRT_2PI;
  }
  return table;
})();

const S0 = 1 / 12;
const S1 = 1 / 360;
const S2 = 1 / 1260;
const S3 = 1 / 1680;
const S4 = 1 / 1188;

/** Stirling-series remainder for an integer n >= 1: log(n!) − log(√(2πn) (n/e)^n). */
export function stirlerr(n: number): number {
  if (n <= 15) return STIRLERR_SMALL[n] ?? 0;
  const nn = n * n;
  if (n > 500) return (S0 - S1 / nn) / n;
  if (n > 80) return (S0 - (S1 - S2 / nn) / nn) / n;
  if (n > 35) return (S0 - (S1 - (S2 - S3 / nn) / nn) / nn) / n;
  return (S0 - (S1 - (S2 - (S3 - S4 / nn) / nn) / nn) / nn) / n;
}

/** Deviance term x log(x/np) + np − x, by its Taylor series when x is near np. */
export function bd0(x: number, np: number): number {
  if (Math.abs(x - np) < 0.1 * (x + np)) {
    let v = (x - np) / (x + np);
    let s = (x - np) * v;
    if (Math.abs(s) < Number.MIN_VALUE) return s;
    let ej = 2 * x * v;
    v *= v;
    for (let j = 1; j < 1000; j++) {
      ej *= v;
      const s1 = s + ej / (2 * j + 1);
      if (s1 === s) return s1;
      s = s1;
    }
  }
  return x * Math.log(x / np) + np - x;
}

/** log P(X = x) for X ~ Binomial(n, p), q = 1 − p passed separately to keep its precision. */
export function logBinomialPmf(x: number, n: number, p: number, q: number): number {
  if (p === 0) return x === 0 ? 0 : -Infinity;
  if (q === 0) return x === n ? 0 : -Infinity;
  if (x < 0 || x > n) return -Infinity;
  if (x === 0) {
    if (n === 0) return 0;
    return p < 0.1 ? -bd0(n, n * q) - n * p : n * Math.log(q);
  }
  if (x === n) return q < 0.1 ? -bd0(n, n * p) - n * q : n * Math.log(p);
  const lc = stirlerr(n) - stirlerr(x) - stirlerr(n - x) - bd0(x, n * p) - bd0(n - x, n * q);
  const lf = LN_2PI + Math.log(x) + Math.log1p(-x / n);
  return lc - 0.5 * lf;
}

/**
 * log P(X = x) for X ~ Hypergeometric: `draws` balls drawn without replacement from an
 * urn of `white` white and `black` black balls, X = white balls drawn.
 */
export function logHypergeometricPmf(x: number, white: number, black: number, draws: number): number {
  if (x < 0 || x > white || draws - x < 0 || draws - x > black) return -Infinity;
  const total = white + black;
  const p = draws / total;
  const q = (total - draws) / total;
  return logBinomialPmf(x, white, p, q) + logBinomialPmf(draws - x, black, p, q) - logBinomialPmf(draws, total, p, q);
}

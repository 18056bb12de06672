/**
 * One-sided rank tests: Mann–Whitney U (two samples) and Wilcoxon signed-rank (paired
 * differences). Both follow R's wilcox.test(..., alternative = "greater", correct = TRUE):
 * average ranks for ties, normal approximation with tie and continuity correction, and the
 * exact null distribution for small samples without ties.
 *
 * Ranking is done by sorting copies (typed-array sorts, O(n log n)) and walking the sorted
 * values in one merge pass, which yields the statistic and the tie groups together.
 */
import { normalSf } from './special.js';
import { finiteCopy, sortedFiniteCopy } from './validate.js';

export interface RankTestResult {
  statistic: number;
  z: number;
  p: number;
  n1: number;
  n2: number;
}

export interface SignedRankResult {
  statistic: number;
  z: number;
  p: number;
  n: number;
}

/** Exact Mann–Whitney tests are used up to this many observations per side (and no ties). */
const MW_EXACT_MAX = 20;
/** Exact signed-rank tests are used up to this many nonzero differences (and no ties). */
const SR_EXACT_MAX = 30;

/**
 * Counts of arrangements by U for sample sizes m and n, no ties: the coefficients of the
 * Gaussian binomial [m + n choose m]_q = Π_{i=1..m} (1 − q^{n+i}) / (1 − q^i). All values
 * stay below C(40, 20) · 2 < 2^53, so the counts are exact.
 */
function mannWhitneyCounts(m: number, n: number): Float64Array {
  const counts = new Float64Array(m * n + 1);
  counts[0] = 1;
  let degree = 0;
  for (let i = 1; i <= m; i++) {
    const shift = n + i;
    // Coefficients past m·n are zero in the result and never feed lower ones: skip them.
    const top = Math.min(degree + shift, counts.length - 1);
    for (let u = top; u >= shift; u--) counts[u]! -= counts[u - shift]!;
    for (let u = i; u <= top; u++) counts[u]! += counts[u - i]!;
    degree += n;
  }
  return counts;
}

function upperTailFraction(counts: Float64Array, from: number): number {
  let tail = 0;
  let total = 0;
  for (let u = 0; u < counts.length; u++) {
    total += counts[u]!;
    if (u >= from) tail += counts[u]!;
  }
  return tail / total;
}

/**
 * Mann–Whitney U, one-sided, H1: x is stochastically greater than y. statistic = U of x
 * (pairs with x_i > y_j, ties counting ½). z is the normal-approximation score (with tie
 * and continuity correction) even when p comes from the exact distribution. Empty input →
 * p = 1, z = 0. Non-finite sample values throw INVALID.
 */
export function mannWhitneyGreater(x: ArrayLike<number>, y: ArrayLike<number>): RankTestResult {
  const fn = 'mannWhitneyGreater';
  const xs = sortedFiniteCopy(fn, 'x', x);
  const ys = sortedFiniteCopy(fn, 'y', y);
  const n1 = xs.length;
  const n2 = ys.length;
  if (n1 === 0 || n2 === 0) return { statistic: 0, z: 0, p: 1, n1, n2 };

  // One merge pass over both sorted samples, one group of equal values at a time.
  let i = 0;
  let j = 0;
  let u = 0;
  let tieTerm = 0;
  while (i < n1 || j < n2) {
    const xv = i < n1 ? xs[i]! : Infinity;
    const yv = j < n2 ? ys[j]! : Infinity;
    const v = xv < yv ? xv : yv;
    const yBelow = j;
    let cx = 0;
    let cy = 0;
    while (i < n1 && xs[i] === v) {
      i++;
      cx++;
    }
    while (j < n2 && ys[j] === v) {
      j++;
      cy++;
    }
    u += cx * (yBelow + cy / 2);
    const t = cx + cy;
    if (t > 1) tieTerm += t * t * t - t;
  }

  const N = n1 + n2;
  const variance = ((n1 * n2) / 12) * (N + 1 - tieTerm / (N * (N - 1)));
  if (!(variance > 0)) return { statistic: u, z: 0, p: 1, n1, n2 };
  const z = (u - (n1 * n2) / 2 - 0.5) / Math.sqrt(variance);
  const exact = tieTerm === 0 && n1 <= MW_EXACT_MAX && n2 <= MW_EXACT_MAX;
  const p = exact ? upperTailFraction(mannWhitneyCounts(n1, n2), u) : normalSf(z);
  return { statistic: u, z, p, n1, n2 };
}

/** Counts of subsets of {1..n} by their sum (the signed-rank null distribution × 2^n). */
function signedRankCounts(n: number): Float64Array {
  const max = (n * (n + 1)) / 2;
  const counts = new Float64Array(max + 1);
  counts[0] = 1;
  let reach = 0;
  for (let r = 1; r <= n; r++) {
    reach += r;
    for (let s = reach; s >= r; s--) counts[s]! += counts[s - r]!;
  }
  return counts;
}

/**
 * Wilcoxon signed-rank, one-sided, H1: the differences' distribution is shifted above 0.
 * Zeros are dropped (n = count of nonzero), |d| ties get average ranks, statistic = W+
 * (sum of ranks of positive differences). z is the normal-approximation score (tie and
 * continuity correction) even when p is exact. n = 0 → p = 1, z = 0.
 */
export function wilcoxonSignedRankGreater(d: ArrayLike<number>): SignedRankResult {
  const fn = 'wilcoxonSignedRankGreater';
  const all = finiteCopy(fn, 'd', d);
  let nPos = 0;
  let nNeg = 0;
  for (let k = 0; k < all.length; k++) {
    const v = all[k]!;
    if (v > 0) nPos++;
    else if (v < 0) nNeg++;
  }
  const pos = new Float64Array(nPos);
  const neg = new Float64Array(nNeg);
  nPos = 0;
  nNeg = 0;
  for (let k = 0; k < all.length; k++) {
    const v = all[k]!;
    if (v > 0) pos[nPos++] = v;
    else if (v < 0) neg[nNeg++] = -v;
  }
  pos.sort();
  neg.sort();
  const n = nPos + nNeg;
  if (n === 0) return { statistic: 0, z: 0, p: 1, n: 0 };

  // Merge the positive values and the absolute negative values, one |d| group at a time.
  let i = 0;
  let j = 0;
  let ranked = 0;
  let wPlus = 0;
  let tieTerm = 0;
  while (i < nPos || j < nNeg) {
    const pv = i < nPos ? pos[i]! : Infinity;
    const nv = j < nNeg ? neg[j]! : Infinity;
    const v = pv < nv ? pv : nv;
    let cp = 0;
    let cn = 0;
    while (i < nPos && pos[i] === v) {
      i++;
      cp++;
    }
    while (j < nNeg && neg[j] === v) {
      j++;
      cn++;
    }
    const t = cp + cn;
    wPlus += cp * (ranked + (t + 1) / 2);
    ranked += t;
    if (t > 1) tieTerm += t * t * t - t;
  }

  const variance = (n * (n + 1) * (2 * n + 1)) / 24 - tieTerm / 48;
  const z = (wPlus - (n * (n + 1)) / 4 - 0.5) / Math.sqrt(variance);
  const exact = tieTerm === 0 && n <= SR_EXACT_MAX;
  const p = exact ? upperTailFraction(signedRankCounts(n), wPlus) : normalSf(z);
  return { statistic: wPlus, z, p, n };
}

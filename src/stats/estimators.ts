/**
 * Robust location estimators: median, quantile (R type 7) and the Hodges–Lehmann
 * two-sample shift. None mutates its arguments.
 */
import { invalid, sortedFiniteCopy } from './validate.js';

/** Type-7 quantile of an ascending, non-empty array (R's `quantile(x, q, type = 7)`). */
function sortedQuantile(sorted: Float64Array, q: number): number {
  const h = (sorted.length - 1) * q;
  const lo = Math.floor(h);
  const low = sorted[lo]!;
  const frac = h - lo;
  if (frac === 0) return low;
  const high = sorted[lo + 1]!;
  return high === low ? low : (1 - frac) * low + frac * high;
}

/** Median (average of the two middle values for even length); NaN for empty input. */
export function median(xs: ArrayLike<number>): number {
  const sorted = sortedFiniteCopy('median', 'xs', xs);
  const n = sorted.length;
  if (n === 0) return NaN;
  const mid = n >> 1;
  return n % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Quantile q in [0, 1] with linear interpolation (R type 7); NaN for empty input. */
export function quantile(xs: ArrayLike<number>, q: number): number {
  if (typeof q !== 'number' || !(q >= 0 && q <= 1)) invalid('quantile', 'q', 'must be a number in [0, 1]', q);
  const sorted = sortedFiniteCopy('quantile', 'xs', xs);
  return sorted.length === 0 ? NaN : sortedQuantile(sorted, q);
}

// ---------------------------------------------------------------------------------------
// Hodges–Lehmann

/** Elements ⌊(j + ½)·n/m⌋, j = 0..m−1, of an ascending array: m evenly spaced order statistics. */
function strided(sorted: Float64Array, m: number): Float64Array {
  const n = sorted.length;
  if (m >= n) return sorted;
  const out = new Float64Array(m);
  for (let j = 0; j < m; j++) out[j] = sorted[Math.floor(((j + 0.5) * n) / m)]!;
  return out;
}

/**
 * Number of pairs with a_i − b_j <= t (a, b ascending). For fixed i the difference falls as
 * j grows, and the first qualifying j never moves back as i grows: one two-pointer pass.
 * (Rounded subtraction is monotone in each argument, so this holds for computed values.)
 */
function countAtMost(a: Float64Array, b: Float64Array, t: number): number {
  const m2 = b.length;
  let j = 0;
  let count = 0;
  for (let i = 0; i < a.length; i++) {
    const ai = a[i]!;
    while (j < m2 && ai - b[j]! > t) j++;
    count += m2 - j;
  }
  return count;
}

/** The rank-th smallest (1-based) difference a_i − b_j with lo < a_i − b_j <= hi. */
function selectBetween(a: Float64Array, b: Float64Array, lo: number, hi: number, size: number, rank: number): number {
  const m2 = b.length;
  const buffer = new Float64Array(size);
  let filled = 0;
  let jHi = 0;
  let jLo = 0;
  for (let i = 0; i < a.length; i++) {
    const ai = a[i]!;
    while (jHi < m2 && ai - b[jHi]! > hi) jHi++;
    while (jLo < m2 && ai - b[jLo]! > lo) jLo++;
    for (let j = jHi; j < jLo; j++) buffer[filled++] = ai - b[j]!;
  }
  return buffer.sort()[rank - 1]!;
}

/**
 * The k-th smallest (1-based) of the m1·m2 differences a_i − b_j without forming them:
 * bisection on the value keeps count(<= lo) < k <= count(<= hi), each count one O(m1 + m2)
 * pass; once few enough differences lie in (lo, hi] they are gathered and sorted. If lo and
 * hi become adjacent doubles (many equal differences), hi is the answer.
 */
function kthDifference(a: Float64Array, b: Float64Array, k: number): number {
  let lo = a[0]! - b[b.length - 1]!;
  let countLo = countAtMost(a, b, lo);
  if (countLo >= k) return lo;
  let hi = a[a.length - 1]! - b[0]!;
  let countHi = a.length * b.length;
  const gatherLimit = Math.max(1024, a.length + b.length);
  for (;;) {
    if (countHi - countLo <= gatherLimit) return selectBetween(a, b, lo, hi, countHi - countLo, k - countLo);
    let mid = lo + (hi - lo) / 2;
    if (!Number.isFinite(mid)) mid = lo / 2 + hi / 2;
    if (!(mid > lo && mid < hi)) return hi;
    const count = countAtMost(a, b, mid);
    if (count >= k) {
      hi = mid;
      countHi = count;
    } else {
      lo = mid;
      countLo = count;
    }
  }
}

/**
 * Hodges–Lehmann two-sample shift: median of x_i − y_j over all pairs. When n1·n2 >
 * maxPairs (default 250_000), over a deterministic evenly strided subsample of each side
 * (sorted first, then the order statistics ⌊(j + ½)·n/m⌋), with sizes m1·m2 <= maxPairs
 * chosen as balanced as the sides allow: the smaller side keeps min(n, ⌊√maxPairs⌋) values
 * and the other ⌊maxPairs / that⌋. NaN if either side is empty.
 *
 * The pairwise differences are never materialised (selection by value bisection, O((m1 +
 * m2) log) time, O(m1 + m2) memory), so maxPairs = Infinity gives the exact estimator at
 * modest cost even for 8,000 × 8,000 samples.
 */
export function hodgesLehmannShift(x: ArrayLike<number>, y: ArrayLike<number>, maxPairs = 250_000): number {
  const fn = 'hodgesLehmannShift';
  if (typeof maxPairs !== 'number' || !(maxPairs >= 1)) invalid(fn, 'maxPairs', 'must be a number >= 1', maxPairs);
  let a = sortedFiniteCopy(fn, 'x', x);
  let b = sortedFiniteCopy(fn, 'y', y);
  const n1 = a.length;
  const n2 = b.length;
  if (n1 === 0 || n2 === 0) return NaN;
  if (n1 * n2 > maxPairs) {
    const side = Math.max(1, Math.floor(Math.sqrt(maxPairs)));
    let m1: number;
    let m2: number;
    if (n1 <= n2) {
      m1 = Math.min(n1, side);
      m2 = Math.min(n2, Math.max(1, Math.floor(maxPairs / m1)));
    } else {
      m2 = Math.min(n2, side);
      m1 = Math.min(n1, Math.max(1, Math.floor(maxPairs / m2)));
    }
    a = strided(a, m1);
    b = strided(b, m2);
  }
  const total = a.length * b.length;
  const half = Math.floor(total / 2);
  if (total % 2 === 1) return kthDifference(a, b, half + 1);
  return (kthDifference(a, b, half) + kthDifference(a, b, half + 1)) / 2;
}

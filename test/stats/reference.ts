/**
 * Independent references for the statistics tests: a seeded PRNG, exact BigInt
 * arithmetic, and brute-force enumerations. Nothing here imports src/stats.
 */

/** mulberry32: a small seeded generator of uniforms in [0, 1) (test/support/random.ts). */
export { mulberry32 as prng } from '../support/random.js';

/** Standard normal draws by Box–Muller. */
export function normals(rand: () => number, n: number): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const u = 1 - rand();
    const v = rand();
    out[i] = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
  return out;
}

/** Lognormal(mu, sigma) draws, e.g. latencies in milliseconds. */
export function lognormals(rand: () => number, n: number, mu = 3, sigma = 0.6): Float64Array {
  return normals(rand, n).map((z) => Math.exp(mu + sigma * z));
}

/** Binomial(n, p) draw by n Bernoulli trials. */
export function binomialDraw(rand: () => number, n: number, p: number): number {
  let k = 0;
  for (let i = 0; i < n; i++) if (rand() < p) k++;
  return k;
}

/** C(n, 0..kMax) exactly, by the multiplicative recurrence. */
export function binomialRow(n: number, kMax: number): bigint[] {
  const row = [1n];
  const N = BigInt(n);
  for (let k = 1; k <= Math.min(kMax, n); k++) row.push((row[k - 1]! * (N - BigInt(k) + 1n)) / BigInt(k));
  return row;
}

export function choose(n: number, k: number): bigint {
  return k < 0 || k > n ? 0n : binomialRow(n, k)[k]!;
}

/** num / den correctly rounded to a double (via a 25-digit decimal quotient and parseFloat). */
export function ratio(num: bigint, den: bigint): number {
  if (num === 0n) return 0;
  const shift = den.toString().length - num.toString().length + 25;
  const q = shift >= 0 ? (num * 10n ** BigInt(shift)) / den : num / (den * 10n ** BigInt(-shift));
  return Number.parseFloat(`${q}e${-shift}`);
}

/** P(X >= k1) for the hypergeometric of Fisher's test, exactly (cost grows with k1 + k2, not n). */
export function exactFisherGreater(k1: number, n1: number, k2: number, n2: number): number {
  const K = k1 + k2;
  const a = binomialRow(n1, K);
  const b = binomialRow(n2, K);
  let tail = 0n;
  let all = 0n;
  for (let x = 0; x <= K; x++) {
    const term = (a[x] ?? 0n) * (b[K - x] ?? 0n);
    all += term;
    if (x >= k1) tail += term;
  }
  return ratio(tail, all);
}

/** P(X >= k) for X ~ Binomial(n, num/den), exactly. */
export function exactBinomialUpper(k: number, n: number, num: number, den: number): number {
  const row = binomialRow(n, n);
  const p = BigInt(num);
  const q = BigInt(den - num);
  let tail = 0n;
  for (let x = k; x <= n; x++) tail += row[x]! * p ** BigInt(x) * q ** BigInt(n - x);
  return ratio(tail, BigInt(den) ** BigInt(n));
}

/** P(X <= k) for X ~ Binomial(n, p), summed in double precision (small n). */
export function naiveBinomialCdf(k: number, n: number, p: number): number {
  let sum = 0;
  for (let x = 0; x <= k; x++) sum += Number(choose(n, x)) * p ** x * (1 - p) ** (n - x);
  return sum;
}

/** Average ranks (1-based) of values, by brute force, O(n²). */
export function averageRanks(values: ArrayLike<number>): number[] {
  const out: number[] = [];
  for (let i = 0; i < values.length; i++) {
    let below = 0;
    let equal = 0;
    for (let j = 0; j < values.length; j++) {
      if (values[j]! < values[i]!) below++;
      else if (values[j] === values[i]) equal++;
    }
    out.push(below + (equal + 1) / 2);
  }
  return out;
}

/** Sizes of groups of equal values. */
export function tieSizes(values: ArrayLike<number>): number[] {
  const counts = new Map<number, number>();
  for (let i = 0; i < values.length; i++) counts.set(values[i]!, (counts.get(values[i]!) ?? 0) + 1);
  return [...counts.values()];
}

/** Relative difference, 0 when both are 0. */
export function relErr(actual: number, expected: number): number {
  if (actual === expected) return 0;
  return Math.abs(actual - expected) / Math.abs(expected);
}

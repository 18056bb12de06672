import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { HotPatchError } from '../../src/core/index.js';
import { binomialUpperTail, clopperPearsonUpper, fisherExactGreater, normalSf } from '../../src/stats/index.js';
import { binomialDraw, choose, exactBinomialUpper, exactFisherGreater, naiveBinomialCdf, prng, ratio, relErr } from './reference.js';
import { cpuTimeOf } from '../support/cpu-time.js';

const isInvalid = (e: unknown): boolean => e instanceof HotPatchError && e.code === 'INVALID';

test('fisher exact one-sided matches R fisher.test for a 2x2 table', () => {
  // fisher.test(matrix(c(3, 1, 1, 3), 2), alternative = 'greater')$p.value = 17/70
  assert.ok(Math.abs(fisherExactGreater(3, 4, 1, 4) - 0.2428571) < 1e-7);
  assert.ok(relErr(fisherExactGreater(3, 4, 1, 4), 17 / 70) < 1e-12);
  // 10/100 vs 2/100 against the exact BigInt tail.
  assert.ok(relErr(fisherExactGreater(10, 100, 2, 100), exactFisherGreater(10, 100, 2, 100)) < 1e-12);
  assert.equal(fisherExactGreater(0, 100, 5, 100), 1);
  assert.equal(fisherExactGreater(0, 0, 0, 0), 1);
});

test('fisher exact equals C(1000, 5) / C(200000, 5) when all five errors are in the small group', () => {
  const expected = ratio(choose(1000, 5), choose(200_000, 5));
  const p = fisherExactGreater(5, 1000, 0, 199_000);
  assert.ok(relErr(p, expected) < 1e-12, `${p} vs ${expected}`);
  assert.ok(p > 3e-12 && p < 3.2e-12);
});

test('fisher exact matches a BigInt hypergeometric on random tables up to 60 calls per group', () => {
  fc.assert(
    fc.property(
      fc
        .integer({ min: 0, max: 60 })
        .chain((n1) =>
          fc
            .integer({ min: 0, max: 60 })
            .chain((n2) => fc.tuple(fc.constant(n1), fc.constant(n2), fc.integer({ min: 0, max: n1 }), fc.integer({ min: 0, max: n2 }))),
        ),
      ([n1, n2, k1, k2]) => {
        const p = fisherExactGreater(k1, n1, k2, n2);
        const expected = exactFisherGreater(k1, n1, k2, n2);
        assert.ok(relErr(p, expected) < 1e-9, `(${k1}/${n1} vs ${k2}/${n2}): ${p} vs ${expected}`);
      },
    ),
    { seed: 20, numRuns: 400 },
  );
});

test('fisher exact stays exact with a billion calls per group, in both tails and down to 1e-301', () => {
  for (const k1 of [430, 480, 500, 515, 560, 700, 1000]) {
    const p = fisherExactGreater(k1, 1e9, 1000 - k1, 1e9);
    const expected = exactFisherGreater(k1, 1e9, 1000 - k1, 1e9);
    assert.ok(relErr(p, expected) < 1e-9, `k1 = ${k1}: ${p} vs ${expected}`);
  }
  // Unequal groups, few errors: a rare-error canary against a huge baseline.
  for (const [k1, n1, k2, n2] of [
    [7, 50_000, 3, 999_950_000],
    [30, 1e9, 2, 5e8],
    [3, 20_000, 120, 2e9],
  ] as const) {
    const p = fisherExactGreater(k1, n1, k2, n2);
    const expected = exactFisherGreater(k1, n1, k2, n2);
    assert.ok(relErr(p, expected) < 1e-9, `(${k1}/${n1} vs ${k2}/${n2}): ${p} vs ${expected}`);
  }
});

test('fisher exact with a million errors over two billion calls is fast and agrees with the normal approximation', () => {
  // mean 500,000 errors in group 1, sd ≈ 500: 1,000 over is 2 sd, 3,000 over is 6 sd.
  // CPU time, not wall-clock: a busy machine cannot stretch it.
  const {
    result: [near, far, below],
    cpuMs,
  } = cpuTimeOf(
    () =>
      [fisherExactGreater(501_000, 1e9, 499_000, 1e9), fisherExactGreater(503_000, 1e9, 497_000, 1e9), fisherExactGreater(499_000, 1e9, 501_000, 1e9)] as const,
  );
  const sd = Math.sqrt((1e6 * 0.25 * (2e9 - 1e6)) / (2e9 - 1));
  assert.ok(relErr(near, normalSf(999.5 / sd)) < 0.02, `near ${near}`);
  assert.ok(relErr(far, normalSf(2999.5 / sd)) < 0.05, `far ${far}`);
  assert.ok(relErr(below, normalSf(-1000.5 / sd)) < 0.001, `below ${below}`);
  assert.ok(cpuMs < 250, `took ${cpuMs} ms of CPU time`);
});

test('fisher exact rejects equal-rate samples at most alpha of the time (it is conservative)', () => {
  const rand = prng(2024);
  let rejections = 0;
  for (let i = 0; i < 400; i++) {
    const k1 = binomialDraw(rand, 2000, 0.01);
    const k2 = binomialDraw(rand, 2000, 0.01);
    if (fisherExactGreater(k1, 2000, k2, 2000) < 0.05) rejections++;
  }
  assert.ok(rejections <= 0.05 * 400 + 3 * Math.sqrt(400 * 0.05 * 0.95), `${rejections} of 400`);
  // It still has power against a doubled rate.
  let detected = 0;
  for (let i = 0; i < 100; i++) {
    if (fisherExactGreater(binomialDraw(rand, 2000, 0.02), 2000, binomialDraw(rand, 2000, 0.01), 2000) < 0.05) detected++;
  }
  assert.ok(detected > 60, `${detected} of 100`);
});

test('binomial upper tail matches an exact BigInt sum for n up to 60 and p of 1e-9 to 1', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 60 }).chain((n) =>
        fc.tuple(
          fc.constant(n),
          fc.integer({ min: 0, max: n }),
          fc.constantFrom(1e3, 1e6, 1e9).chain((den) => fc.tuple(fc.integer({ min: 0, max: den }), fc.constant(den))),
        ),
      ),
      ([n, k, [num, den]]) => {
        const p = binomialUpperTail(k, n, num / den);
        const expected = exactBinomialUpper(k, n, num, den);
        const tolerance = expected < 1e-300 ? 1e-6 : 1e-9;
        assert.ok(relErr(p, expected) < tolerance || Math.abs(p - expected) < 1e-320, `P(X >= ${k}; ${n}, ${num}/${den}) = ${p} vs ${expected}`);
      },
    ),
    { seed: 21, numRuns: 400 },
  );
});

test('binomial far tail with n = 1e6, p = 1e-4, k = 200 matches an independent log-space sum', () => {
  const n = 1e6;
  const p = 1e-4;
  const k = 200;
  // log P(X = k) from Σ log((n − i)/(i + 1)) — no log-gamma — then the tail by term ratios.
  let logTerm = k * Math.log(p) + (n - k) * Math.log1p(-p);
  for (let i = 0; i < k; i++) logTerm += Math.log((n - i) / (i + 1));
  let term = 1;
  let sum = 1;
  for (let x = k; x < 2000; x++) {
    term *= ((n - x) / (x + 1)) * (p / (1 - p));
    sum += term;
  }
  const expected = Math.exp(logTerm) * sum;
  const tail = binomialUpperTail(k, n, p);
  assert.ok(relErr(tail, expected) < 1e-9, `${tail} vs ${expected}`);
  // Same order as the Poisson(100) tail and far beyond the normal one.
  let poisson = 0;
  let pmf = Math.exp(-100 + k * Math.log(100) - Array.from({ length: k }, (_, i) => Math.log(i + 1)).reduce((a, b) => a + b, 0));
  for (let x = k; x < 2000; x++) {
    poisson += pmf;
    pmf *= 100 / (x + 1);
  }
  assert.ok(tail / poisson > 0.5 && tail / poisson < 2, `binomial ${tail} vs Poisson ${poisson}`);
  assert.ok(tail > 1e-20 && tail < 1e-16);
  assert.equal(binomialUpperTail(0, n, p), 1);
  assert.ok(Math.abs(binomialUpperTail(100, n, p) - 0.5) < 0.06);
});

test('binomial upper tail handles the degenerate rates 0 and 1', () => {
  assert.equal(binomialUpperTail(1, 10, 0), 0);
  assert.equal(binomialUpperTail(0, 10, 0), 1);
  assert.equal(binomialUpperTail(10, 10, 1), 1);
  assert.equal(binomialUpperTail(3, 0 + 3, 1), 1);
});

test('clopper-pearson upper bound matches the closed form for zero successes and R binom.test', () => {
  assert.ok(Math.abs(clopperPearsonUpper(0, 100, 0.95) - 0.029513) < 5e-7);
  assert.ok(Math.abs(clopperPearsonUpper(0, 100, 0.95) - (1 - 0.05 ** (1 / 100))) < 1e-12);
  // binom.test(1, 10, alternative = 'less')$conf.int[2] = 0.3941633
  assert.ok(Math.abs(clopperPearsonUpper(1, 10, 0.95) - 0.3941633) < 5e-8);
  assert.equal(clopperPearsonUpper(10, 10, 0.99), 1);
  assert.equal(clopperPearsonUpper(0, 0, 0.99), 1);
});

test('clopper-pearson upper bound puts exactly 1 - confidence in the lower tail', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 2, max: 60 }).chain((n) => fc.tuple(fc.constant(n), fc.integer({ min: 1, max: n - 1 }))),
      fc.constantFrom(0.8, 0.9, 0.95, 0.99, 0.999),
      ([n, k], confidence) => {
        const bound = clopperPearsonUpper(k, n, confidence);
        assert.ok(bound > k / n && bound < 1);
        assert.ok(relErr(naiveBinomialCdf(k, n, bound), 1 - confidence) < 1e-9, `k = ${k}, n = ${n}: bound ${bound}`);
        assert.ok(bound < clopperPearsonUpper(k + 1, n, confidence));
      },
    ),
    { seed: 22, numRuns: 200 },
  );
});

test('clopper-pearson upper bound for 5 errors in a billion calls matches the Poisson limit', () => {
  const bound = clopperPearsonUpper(5, 1e9, 0.99);
  // P(Poisson(μ) <= 5) = 0.01 at μ = n · bound (binomial and Poisson differ by O(k/n) here).
  const mu = 1e9 * bound;
  let cdf = 0;
  let pmf = Math.exp(-mu);
  for (let x = 0; x <= 5; x++) {
    cdf += pmf;
    pmf *= mu / (x + 1);
  }
  assert.ok(relErr(cdf, 0.01) < 1e-7, `μ = ${mu}, cdf = ${cdf}`);
  assert.ok(mu > 13.1 && mu < 13.12);
});

test('bad counts, rates and confidence levels throw HotPatchError INVALID naming the argument', () => {
  const cases: [string, () => unknown, RegExp][] = [
    ['negative k1', () => fisherExactGreater(-1, 10, 0, 10), /k1/],
    ['k1 > n1', () => fisherExactGreater(11, 10, 0, 10), /k1 must not exceed n1 = 10, got 11/],
    ['fractional k2', () => fisherExactGreater(1, 10, 1.5, 10), /k2/],
    ['NaN n2', () => fisherExactGreater(1, 10, 0, NaN), /n2/],
    ['negative k', () => binomialUpperTail(-1, 10, 0.5), /k/],
    ['k > n', () => binomialUpperTail(11, 10, 0.5), /k must not exceed/],
    ['p > 1', () => binomialUpperTail(1, 10, 1.5), /p must be a number in \[0, 1\]/],
    ['NaN p', () => binomialUpperTail(1, 10, NaN), /p/],
    ['confidence 1', () => clopperPearsonUpper(1, 10, 1), /confidence/],
    ['confidence 0', () => clopperPearsonUpper(1, 10, 0), /confidence/],
    ['k > n for the bound', () => clopperPearsonUpper(11, 10, 0.9), /k must not exceed/],
  ];
  for (const [name, call, message] of cases) {
    assert.throws(call, (e: unknown) => isInvalid(e) && message.test((e as Error).message), name);
  }
});

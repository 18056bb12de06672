import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { HotPatchError } from '../../src/core/index.js';
import { fisherExactGreater, stratifiedFisherGreater } from '../../src/stats/index.js';

function choose(n: number, k: number): number {
  if (k < 0 || k > n) return 0;
  let r = 1;
  for (let i = 1; i <= k; i++) r = (r * (n - k + i)) / i;
  return r;
}

/** P(X = x) of one stratum's first-group count given its margins, by counting. */
function pmf(x: number, s: { k1: number; n1: number; k2: number; n2: number }): number {
  const events = s.k1 + s.k2;
  return (choose(s.n1, x) * choose(s.n2, events - x)) / choose(s.n1 + s.n2, events);
}

/** Brute force over every combination of per-stratum counts. */
function bruteForce(strata: { k1: number; n1: number; k2: number; n2: number }[]): number {
  const observed = strata.reduce((a, s) => a + s.k1, 0);
  let tail = 0;
  const walk = (i: number, sum: number, prob: number): void => {
    if (i === strata.length) {
      if (sum >= observed) tail += prob;
      return;
    }
    const s = strata[i]!;
    const events = s.k1 + s.k2;
    for (let x = Math.max(0, events - s.n2); x <= Math.min(events, s.n1); x++) walk(i + 1, sum + x, prob * pmf(x, s));
  };
  walk(0, 0, 1);
  return tail;
}

const stratum = fc
  .record({ n1: fc.integer({ min: 0, max: 25 }), n2: fc.integer({ min: 0, max: 25 }), a: fc.nat(), b: fc.nat() })
  .map(({ n1, n2, a, b }) => ({ n1, n2, k1: n1 === 0 ? 0 : a % (n1 + 1), k2: n2 === 0 ? 0 : b % (n2 + 1) }));

test('one stratum gives exactly the one-sided Fisher exact p-value', () => {
  for (const s of [
    { k1: 3, n1: 4, k2: 1, n2: 4 },
    { k1: 5, n1: 1000, k2: 0, n2: 199_000 },
    { k1: 40, n1: 2000, k2: 120, n2: 6000 },
  ]) {
    const exact = fisherExactGreater(s.k1, s.n1, s.k2, s.n2);
    assert.ok(Math.abs(stratifiedFisherGreater([s]) - exact) <= 1e-9 * exact + 1e-15, `${JSON.stringify(s)}`);
  }
});

test('several strata match a brute-force sum over every combination of per-stratum counts', () => {
  fc.assert(
    fc.property(fc.array(stratum, { minLength: 1, maxLength: 3 }), (strata) => {
      const expected = bruteForce(strata);
      const got = stratifiedFisherGreater(strata);
      assert.ok(Math.abs(got - expected) <= 1e-9 * Math.max(expected, 1e-12) + 1e-12, `${JSON.stringify(strata)}: ${got} vs ${expected}`);
    }),
    { numRuns: 300, seed: 7 },
  );
});

test('strata without events change nothing, and bad counts are INVALID', () => {
  const s = { k1: 4, n1: 50, k2: 1, n2: 150 };
  assert.equal(stratifiedFisherGreater([s, { k1: 0, n1: 1e6, k2: 0, n2: 1e6 }]), stratifiedFisherGreater([s]));
  assert.equal(stratifiedFisherGreater([]), 1);
  assert.throws(
    () => stratifiedFisherGreater([{ k1: 5, n1: 4, k2: 0, n2: 4 }]),
    (e: unknown) => e instanceof HotPatchError && e.code === 'INVALID',
  );
});

test('past 20,000 events the Cochran–Mantel–Haenszel approximation answers, close to the exact test where both apply', async () => {
  const { cochranMantelHaenszelGreater } = await import('../../src/stats/index.js');
  // Moderate counts: both computable; the approximation tracks the exact p-value.
  const strata = [
    { k1: 60, n1: 5_000, k2: 900, n2: 95_000 },
    { k1: 260, n1: 25_000, k2: 700, n2: 75_000 },
  ];
  const exact = stratifiedFisherGreater(strata);
  const approx = cochranMantelHaenszelGreater(strata);
  assert.ok(Math.abs(Math.log10(exact) - Math.log10(approx)) < 0.3, `exact ${exact} vs CMH ${approx}`);
  // Large counts (1e8 calls a step, 1 % errors): answered in one pass, same-rate strata not significant.
  const big = [0.005, 0.05, 0.25, 0.5].map((r) => ({
    k1: Math.round(1e8 * r * 0.01),
    n1: Math.round(1e8 * r),
    k2: Math.round(1e8 * (1 - r) * 0.01),
    n2: Math.round(1e8 * (1 - r)),
  }));
  const p = stratifiedFisherGreater(big);
  assert.ok(p > 0.2 && p <= 1, String(p));
  const worse = big.map((s) => ({ ...s, k1: Math.round(s.k1 * 1.05) }));
  assert.ok(stratifiedFisherGreater(worse) < 1e-6);
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { HotPatchError } from '../../src/core/index.js';
import { mannWhitneyGreater, normalSf, wilcoxonSignedRankGreater } from '../../src/stats/index.js';
import { averageRanks, lognormals, normals, prng, relErr, tieSizes } from './reference.js';
import { cpuTimeOf } from '../support/cpu-time.js';

const isInvalid = (e: unknown): boolean => e instanceof HotPatchError && e.code === 'INVALID';
const ALPHA = 0.05;
const RUNS = 400;
const SLACK = 3 * Math.sqrt(RUNS * ALPHA * (1 - ALPHA));

/** U of x by counting pairs (ties ½), O(n1·n2). */
function pairCount(x: ArrayLike<number>, y: ArrayLike<number>): number {
  let u = 0;
  for (let i = 0; i < x.length; i++) for (let j = 0; j < y.length; j++) u += x[i]! > y[j]! ? 1 : x[i] === y[j] ? 0.5 : 0;
  return u;
}

/** Exact P(U >= observed) by enumerating every choice of n1 ranks out of n1 + n2 (no ties). */
function enumeratedMannWhitney(n1: number, n2: number, observed: number): number {
  const n = n1 + n2;
  let hits = 0;
  let total = 0;
  for (let mask = 0; mask < 1 << n; mask++) {
    let bits = 0;
    let rankSum = 0;
    for (let r = 0; r < n; r++) {
      if (mask & (1 << r)) {
        bits++;
        rankSum += r + 1;
      }
    }
    if (bits !== n1) continue;
    total++;
    if (rankSum - (n1 * (n1 + 1)) / 2 >= observed) hits++;
  }
  return hits / total;
}

/** Exact P(W+ >= observed) by enumerating every sign assignment of ranks 1..n (no ties). */
function enumeratedSignedRank(n: number, observed: number): number {
  let hits = 0;
  for (let mask = 0; mask < 1 << n; mask++) {
    let w = 0;
    for (let r = 0; r < n; r++) if (mask & (1 << r)) w += r + 1;
    if (w >= observed) hits++;
  }
  return hits / (1 << n);
}

/** Distinct values split into two samples. */
const distinctSamples = (maxSide: number) =>
  fc.tuple(fc.integer({ min: 1, max: maxSide }), fc.integer({ min: 1, max: maxSide })).chain(([n1, n2]) =>
    fc.uniqueArray(fc.integer({ min: -10_000, max: 10_000 }), { minLength: n1 + n2, maxLength: n1 + n2 }).map((v) => ({
      x: v.slice(0, n1),
      y: v.slice(n1),
    })),
  );

test('mann-whitney exact p equals enumeration of all rank assignments for small samples without ties', () => {
  fc.assert(
    fc.property(distinctSamples(8), ({ x, y }) => {
      const r = mannWhitneyGreater(x, y);
      assert.equal(r.statistic, pairCount(x, y));
      const expected = enumeratedMannWhitney(x.length, y.length, r.statistic);
      assert.ok(relErr(r.p, expected) < 1e-12, `p ${r.p} vs enumeration ${expected}`);
    }),
    { seed: 30, numRuns: 150 },
  );
});

test('mann-whitney uses the exact distribution up to 20 per side', () => {
  // x entirely above y: only one arrangement of 20 + 20 reaches U = 400.
  const y = Array.from({ length: 20 }, (_, i) => i);
  const x = y.map((v) => v + 100);
  const r = mannWhitneyGreater(x, y);
  assert.equal(r.statistic, 400);
  assert.ok(relErr(r.p, 1 / 137_846_528_820) < 1e-12, `p = ${r.p}`);
  // With 21 on one side it falls back to the normal approximation.
  assert.ok(mannWhitneyGreater([...x, 200], y).p > 1 / 137_846_528_820);
});

test('mann-whitney with ties matches the normal approximation with tie and continuity correction', () => {
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 0, max: 6 }), { minLength: 1, maxLength: 40 }),
      fc.array(fc.integer({ min: 0, max: 6 }), { minLength: 1, maxLength: 40 }),
      (x, y) => {
        const pooled = [...x, ...y];
        const ranks = averageRanks(pooled);
        const n1 = x.length;
        const n2 = y.length;
        const n = n1 + n2;
        const u = ranks.slice(0, n1).reduce((a, b) => a + b, 0) - (n1 * (n1 + 1)) / 2;
        const ties = tieSizes(pooled).reduce((a, t) => a + t ** 3 - t, 0);
        const sigma = Math.sqrt(((n1 * n2) / 12) * (n + 1 - ties / (n * (n - 1))));
        const r = mannWhitneyGreater(x, y);
        assert.equal(r.statistic, u);
        assert.equal(r.statistic, pairCount(x, y));
        assert.equal(r.n1, n1);
        assert.equal(r.n2, n2);
        if (sigma === 0) {
          assert.deepEqual([r.z, r.p], [0, 1]);
          return;
        }
        const z = (u - (n1 * n2) / 2 - 0.5) / sigma;
        assert.ok(Math.abs(r.z - z) < 1e-12, `z ${r.z} vs ${z}`);
        if (ties > 0) assert.ok(relErr(r.p, normalSf(z)) < 1e-12);
      },
    ),
    { seed: 31, numRuns: 200 },
  );
});

test('mann-whitney on 8,000 latencies per side finds a 20 % slowdown and not a null difference', () => {
  const rand = prng(32);
  const y = lognormals(rand, 8000);
  const slower = lognormals(rand, 8000).map((v) => v * 1.2);
  // CPU time, not wall-clock: a busy machine cannot stretch it.
  const { result: shifted, cpuMs } = cpuTimeOf(() => mannWhitneyGreater(slower, y));
  assert.ok(shifted.p < 1e-12, `p = ${shifted.p}`);
  assert.ok(shifted.z > 7);
  const same = mannWhitneyGreater(y, y);
  assert.equal(same.statistic, (8000 * 8000) / 2);
  assert.ok(same.p > 0.5 && same.p < 0.51, `p = ${same.p}`);
  assert.ok(mannWhitneyGreater(y, slower).p > 0.999);
  assert.ok(cpuMs < 100, `took ${cpuMs} ms of CPU time`);
});

test('mann-whitney on empty samples gives p = 1 and z = 0', () => {
  assert.deepEqual(mannWhitneyGreater([], [1, 2]), { statistic: 0, z: 0, p: 1, n1: 0, n2: 2 });
  assert.deepEqual(mannWhitneyGreater(new Float64Array([3]), new Float64Array(0)), { statistic: 0, z: 0, p: 1, n1: 1, n2: 0 });
});

test('mann-whitney rejects same-distribution samples at about alpha, over 400 seeded pairs', () => {
  const cases = fc.sample(fc.record({ seed: fc.integer(), n1: fc.integer({ min: 30, max: 300 }), n2: fc.integer({ min: 30, max: 300 }) }), {
    seed: 33,
    numRuns: RUNS,
  });
  let rejections = 0;
  for (const c of cases) {
    const rand = prng(c.seed);
    if (mannWhitneyGreater(lognormals(rand, c.n1), lognormals(rand, c.n2)).p < ALPHA) rejections++;
  }
  assert.ok(rejections <= ALPHA * RUNS + SLACK, `${rejections} of ${RUNS}`);
  assert.ok(rejections >= ALPHA * RUNS - SLACK, `${rejections} of ${RUNS}: too conservative`);
});

test('wilcoxon exact p equals enumeration of all sign assignments for n up to 12 without ties', () => {
  fc.assert(
    fc.property(
      fc.uniqueArray(fc.integer({ min: 1, max: 1000 }), { minLength: 1, maxLength: 12 }),
      fc.array(fc.boolean(), { minLength: 12, maxLength: 12 }),
      fc.integer({ min: 0, max: 3 }),
      (magnitudes, signs, zeros) => {
        const d = [...magnitudes.map((m, i) => (signs[i] ? m : -m)), ...Array<number>(zeros).fill(0)];
        const r = wilcoxonSignedRankGreater(d);
        const ranks = averageRanks(magnitudes);
        const wPlus = ranks.reduce((a, rank, i) => a + (signs[i] ? rank : 0), 0);
        assert.equal(r.n, magnitudes.length);
        assert.equal(r.statistic, wPlus);
        const expected = enumeratedSignedRank(magnitudes.length, wPlus);
        assert.ok(relErr(r.p, expected) < 1e-12, `p ${r.p} vs enumeration ${expected}`);
      },
    ),
    { seed: 34, numRuns: 200 },
  );
});

test('wilcoxon with ties matches the normal approximation with tie and continuity correction', () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: -5, max: 5 }), { minLength: 0, maxLength: 60 }), (d) => {
      const nonzero = d.filter((v) => v !== 0);
      const n = nonzero.length;
      const r = wilcoxonSignedRankGreater(d);
      assert.equal(r.n, n);
      if (n === 0) {
        assert.deepEqual(r, { statistic: 0, z: 0, p: 1, n: 0 });
        return;
      }
      const magnitudes = nonzero.map(Math.abs);
      const ranks = averageRanks(magnitudes);
      const wPlus = ranks.reduce((a, rank, i) => a + (nonzero[i]! > 0 ? rank : 0), 0);
      const ties = tieSizes(magnitudes).reduce((a, t) => a + t ** 3 - t, 0);
      const z = (wPlus - (n * (n + 1)) / 4 - 0.5) / Math.sqrt((n * (n + 1) * (2 * n + 1)) / 24 - ties / 48);
      assert.equal(r.statistic, wPlus);
      assert.ok(Math.abs(r.z - z) < 1e-12, `z ${r.z} vs ${z}`);
      if (ties > 0 || n > 30) assert.ok(relErr(r.p, normalSf(z)) < 1e-12);
    }),
    { seed: 35, numRuns: 200 },
  );
});

test('wilcoxon on symmetric differences gives p near one half and on shifted ones a tiny p', () => {
  const rand = prng(36);
  const half = normals(rand, 3000);
  const symmetric = new Float64Array(6000);
  half.forEach((v, i) => {
    symmetric[2 * i] = v;
    symmetric[2 * i + 1] = -v;
  });
  const r = wilcoxonSignedRankGreater(symmetric);
  assert.equal(r.n, 6000);
  assert.ok(r.p > 0.5 && r.p < 0.51, `p = ${r.p}`);
  const shifted = normals(rand, 8000).map((v) => v + 0.1);
  // CPU time, not wall-clock: a busy machine cannot stretch it.
  const { result: s, cpuMs } = cpuTimeOf(() => wilcoxonSignedRankGreater(shifted));
  assert.ok(s.p < 1e-9, `p = ${s.p}`);
  assert.ok(wilcoxonSignedRankGreater(shifted.map((v) => -v)).p > 0.999);
  assert.ok(cpuMs < 100, `took ${cpuMs} ms of CPU time`);
});

test('wilcoxon rejects symmetric zero-median differences at about alpha, over 400 seeded samples', () => {
  const cases = fc.sample(fc.record({ seed: fc.integer(), n: fc.integer({ min: 30, max: 300 }) }), { seed: 37, numRuns: RUNS });
  let rejections = 0;
  for (const c of cases) {
    const rand = prng(c.seed);
    // Difference of two i.i.d. lognormal latencies: symmetric about 0, heavy-tailed.
    const a = lognormals(rand, c.n);
    const b = lognormals(rand, c.n);
    if (wilcoxonSignedRankGreater(a.map((v, i) => v - b[i]!)).p < ALPHA) rejections++;
  }
  assert.ok(rejections <= ALPHA * RUNS + SLACK, `${rejections} of ${RUNS}`);
  assert.ok(rejections >= ALPHA * RUNS - SLACK, `${rejections} of ${RUNS}: too conservative`);
});

test('rank tests reject NaN and infinite samples with HotPatchError INVALID naming the element', () => {
  assert.throws(
    () => mannWhitneyGreater([1, NaN], [1]),
    (e: unknown) => isInvalid(e) && /x\[1\]/.test((e as Error).message),
  );
  assert.throws(
    () => mannWhitneyGreater([1], [Infinity]),
    (e: unknown) => isInvalid(e) && /y\[0\]/.test((e as Error).message),
  );
  assert.throws(
    () => wilcoxonSignedRankGreater(new Float64Array([0, NaN])),
    (e: unknown) => isInvalid(e) && /d\[1\]/.test((e as Error).message),
  );
  assert.throws(() => mannWhitneyGreater(null as unknown as number[], [1]), isInvalid);
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { HotPatchError } from '../../src/core/index.js';
import { hodgesLehmannShift, median, quantile } from '../../src/stats/index.js';
import { lognormals, prng } from './reference.js';
import { cpuTimeOf } from '../support/cpu-time.js';

const isInvalid = (e: unknown): boolean => e instanceof HotPatchError && e.code === 'INVALID';

/** Median of a plain array by sorting a copy (the definition). */
function naiveMedian(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Median of every x_i − y_j, formed explicitly. */
function bruteHodgesLehmann(x: ArrayLike<number>, y: ArrayLike<number>): number {
  const diffs: number[] = [];
  for (let i = 0; i < x.length; i++) for (let j = 0; j < y.length; j++) diffs.push(x[i]! - y[j]!);
  return naiveMedian(diffs);
}

/** The documented subsample: sort, keep the order statistics ⌊(j + ½)·n/m⌋. */
function stridedSubsample(values: ArrayLike<number>, m: number): number[] {
  const s = Array.from(values).sort((a, b) => a - b);
  return Array.from({ length: Math.min(m, s.length) }, (_, j) => s[Math.floor(((j + 0.5) * s.length) / Math.min(m, s.length))]!);
}

const samples = fc.array(fc.oneof(fc.integer({ min: -50, max: 50 }), fc.double({ min: -1e6, max: 1e6, noNaN: true })), { minLength: 1, maxLength: 40 });

test('median averages the two middle values and leaves its argument untouched', () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.equal(median([7]), 7);
  const xs = [5, 3, 9, 1];
  median(xs);
  assert.deepEqual(xs, [5, 3, 9, 1]);
  const typed = new Float64Array([5, 3, 9, 1]);
  assert.equal(median(typed), 4);
  assert.deepEqual([...typed], [5, 3, 9, 1]);
  assert.ok(Number.isNaN(median([])));
  fc.assert(
    fc.property(samples, (xs) => assert.equal(median(xs), naiveMedian(xs))),
    { seed: 40, numRuns: 200 },
  );
});

test('quantile interpolates linearly like R type 7', () => {
  // quantile(c(1, 2, 3, 4, 10), 0.3) = 2.2; quantile(1:10, 0.25) = 3.25; quantile(1:10, 0.9) = 9.1
  assert.ok(Math.abs(quantile([10, 4, 3, 2, 1], 0.3) - 2.2) < 1e-15);
  assert.equal(
    quantile(
      Array.from({ length: 10 }, (_, i) => i + 1),
      0.25,
    ),
    3.25,
  );
  assert.ok(
    Math.abs(
      quantile(
        Array.from({ length: 10 }, (_, i) => i + 1),
        0.9,
      ) - 9.1,
    ) < 1e-14,
  );
  assert.equal(quantile([3, 1, 2], 0), 1);
  assert.equal(quantile([3, 1, 2], 1), 3);
  assert.equal(quantile([3, 1, 2], 0.5), 2);
  assert.ok(Number.isNaN(quantile([], 0.5)));
  fc.assert(
    fc.property(samples, fc.double({ min: 0, max: 1, noNaN: true }), (xs, q) => {
      const s = [...xs].sort((a, b) => a - b);
      const h = (s.length - 1) * q;
      const lo = Math.floor(h);
      const hi = Math.min(lo + 1, s.length - 1);
      const expected = s[lo]! + (h - lo) * (s[hi]! - s[lo]!);
      const actual = quantile(xs, q);
      assert.ok(Math.abs(actual - expected) <= 1e-9 * Math.max(1, Math.abs(expected)), `q = ${q}: ${actual} vs ${expected}`);
      assert.ok(actual >= s[lo]! && actual <= s[hi]!);
    }),
    { seed: 41, numRuns: 300 },
  );
});

test('hodges-lehmann equals the median of all pairwise differences when they fit', () => {
  fc.assert(
    fc.property(samples, samples, (x, y) => {
      assert.equal(hodgesLehmannShift(x, y), bruteHodgesLehmann(x, y));
    }),
    { seed: 42, numRuns: 300 },
  );
  // Many equal differences (integer latencies) and a large enough table to exercise bisection.
  const rand = prng(43);
  const x = Array.from({ length: 300 }, () => Math.floor(rand() * 40));
  const y = Array.from({ length: 250 }, () => Math.floor(rand() * 35));
  assert.equal(hodgesLehmannShift(x, y), bruteHodgesLehmann(x, y));
  const a = lognormals(rand, 400);
  const b = lognormals(rand, 500);
  assert.equal(hodgesLehmannShift(a, b), bruteHodgesLehmann(a, b));
});

/** The documented subsample sizes: the smaller side keeps min(n, ⌊√maxPairs⌋), the other ⌊maxPairs / that⌋. */
function subsampleSizes(n1: number, n2: number, maxPairs: number): [number, number] {
  if (n1 * n2 <= maxPairs) return [n1, n2];
  const side = Math.floor(Math.sqrt(maxPairs));
  if (n1 <= n2) {
    const m1 = Math.min(n1, side);
    return [m1, Math.min(n2, Math.floor(maxPairs / m1))];
  }
  const m2 = Math.min(n2, side);
  return [Math.min(n1, Math.floor(maxPairs / m2)), m2];
}

test('hodges-lehmann over maxPairs uses the evenly strided subsample of each sorted side', () => {
  fc.assert(
    fc.property(samples, samples, fc.integer({ min: 1, max: 200 }), (x, y, maxPairs) => {
      const [m1, m2] = subsampleSizes(x.length, y.length, maxPairs);
      assert.ok(m1 * m2 <= Math.max(maxPairs, x.length * y.length));
      const expected = bruteHodgesLehmann(stridedSubsample(x, m1), stridedSubsample(y, m2));
      assert.equal(hodgesLehmannShift(x, y, maxPairs), expected);
    }),
    { seed: 44, numRuns: 300 },
  );
});

test('hodges-lehmann recovers a shift of 3 ms on 8,000 latencies per side, subsampled or exact', () => {
  const rand = prng(45);
  const y = lognormals(rand, 8000);
  assert.ok(
    Math.abs(
      hodgesLehmannShift(
        y.map((v) => v + 3),
        y,
      ) - 3,
    ) < 1e-9,
  );
  const x = lognormals(rand, 8000).map((v) => v + 3);
  // CPU time, not wall-clock: a busy machine cannot stretch it.
  const {
    result: [subsampled, exact],
    cpuMs,
  } = cpuTimeOf(() => [hodgesLehmannShift(x, y), hodgesLehmannShift(x, y, Infinity)] as const);
  assert.ok(Math.abs(subsampled - 3) < 0.5, `subsampled ${subsampled}`);
  assert.ok(Math.abs(exact - 3) < 0.3, `exact ${exact}`);
  assert.ok(Math.abs(subsampled - exact) < 0.3);
  assert.ok(cpuMs < 300, `took ${cpuMs} ms of CPU time`);
  assert.ok(Number.isNaN(hodgesLehmannShift([], [1])));
  assert.ok(Number.isNaN(hodgesLehmannShift([1], new Float64Array(0))));
});

test('estimators reject NaN samples and out-of-range arguments with HotPatchError INVALID', () => {
  const cases: [string, () => unknown, RegExp][] = [
    ['NaN in median', () => median([1, NaN]), /xs\[1\] must be a finite number/],
    ['Infinity in quantile', () => quantile([Infinity], 0.5), /xs\[0\]/],
    ['q above 1', () => quantile([1], 1.5), /q must be a number in \[0, 1\], got 1.5/],
    ['NaN q', () => quantile([1], NaN), /q/],
    ['NaN in x', () => hodgesLehmannShift([NaN], [1]), /x\[0\]/],
    ['NaN in y', () => hodgesLehmannShift([1], [2, NaN]), /y\[1\]/],
    ['maxPairs 0', () => hodgesLehmannShift([1], [2], 0), /maxPairs/],
    ['maxPairs NaN', () => hodgesLehmannShift([1], [2], NaN), /maxPairs/],
  ];
  for (const [name, call, message] of cases) {
    assert.throws(call, (e: unknown) => isInvalid(e) && message.test((e as Error).message), name);
  }
});

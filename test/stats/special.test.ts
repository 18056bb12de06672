import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { logGamma, normalSf } from '../../src/stats/index.js';
import { logFactorial } from '../../src/stats/special.js';
import { relErr } from './reference.js';

/** P(Z > z) by Simpson's rule on φ(t)/φ(z) = e^{-(t−z)(t+z)/2}, then × φ(z) (z² exact here). */
function simpsonSf(z: number): number {
  const upper = z + Math.min(40, 60 / z);
  const steps = 40_000;
  const h = (upper - z) / steps;
  let sum = 0;
  for (let i = 0; i <= steps; i++) {
    const t = z + i * h;
    const f = Math.exp((-(t - z) * (t + z)) / 2);
    sum += f * (i === 0 || i === steps ? 1 : i % 2 === 1 ? 4 : 2);
  }
  return ((sum * h) / 3) * (Math.exp((-z * z) / 2) / Math.sqrt(2 * Math.PI));
}

/** P(Z > z) by the asymptotic series φ(z)/z Σ (−1)^k (2k−1)!!/z^{2k}, truncated at its smallest term. */
function asymptoticSf(z: number): number {
  let term = 1;
  let sum = 1;
  for (let k = 1; k < 200; k++) {
    const next = (-term * (2 * k - 1)) / (z * z);
    if (Math.abs(next) >= Math.abs(term) || Math.abs(next) < 1e-18) break;
    term = next;
    sum += term;
  }
  return ((Math.exp((-z * z) / 2) / Math.sqrt(2 * Math.PI)) * sum) / z;
}

test('normalSf matches R pnorm(z, lower.tail = FALSE) at known points', () => {
  assert.equal(normalSf(0), 0.5);
  const known: [number, number][] = [
    [1, 0.158655253931457],
    [1.96, 0.0249978951482204],
    [3, 0.00134989803163009],
    [5, 2.86651571879194e-7],
    [10, 7.61985302416053e-24],
  ];
  for (const [z, expected] of known) assert.ok(relErr(normalSf(z), expected) < 1e-12, `normalSf(${z}) = ${normalSf(z)}, R says ${expected}`);
  // R's default 7-digit print for the far tail.
  assert.ok(relErr(normalSf(30), 4.906714e-198) < 1e-6);
  assert.ok(relErr(normalSf(37), 5.725571e-300) < 1e-6);
  assert.ok(Math.abs(normalSf(1.96) - 0.0249979) < 5e-8);
});

test('normalSf agrees with Simpson integration of the density to 1e-10 relative from 0.5 to 37', () => {
  for (const z of [0.5, 1, 1.5, 2, 2.25, 2.5, 2.75, 3, 4, 5, 7, 10, 15, 20, 25, 30, 35, 37]) {
    const expected = simpsonSf(z);
    assert.ok(relErr(normalSf(z), expected) < 1e-10, `z = ${z}: ${normalSf(z)} vs ${expected}`);
  }
});

test('normalSf agrees with the asymptotic tail series to 1e-12 relative from 10 to 37', () => {
  for (let z = 10; z <= 37; z += 0.75) {
    assert.ok(relErr(normalSf(z), asymptoticSf(z)) < 1e-12, `z = ${z}: ${normalSf(z)} vs ${asymptoticSf(z)}`);
  }
});

test('normalSf is symmetric, monotone, and saturates at 0 and 1 without NaN', () => {
  fc.assert(
    fc.property(fc.double({ min: -8, max: 8, noNaN: true }), (z) => {
      assert.ok(Math.abs(normalSf(z) + normalSf(-z) - 1) < 1e-15);
      assert.ok(normalSf(z) >= normalSf(z + 0.01));
    }),
    { seed: 11, numRuns: 300 },
  );
  assert.equal(normalSf(45), 0);
  assert.equal(normalSf(Infinity), 0);
  assert.equal(normalSf(-45), 1);
  assert.equal(normalSf(-Infinity), 1);
  assert.ok(Number.isNaN(normalSf(NaN)));
});

/** log(n!) from the exact BigInt factorial. */
function exactLogFactorial(n: number): number {
  let f = 1n;
  for (let i = 2n; i <= BigInt(n); i++) f *= i;
  const digits = f.toString();
  const head = Number.parseFloat(`0.${digits.slice(0, 20)}`);
  return Math.log(head) + digits.length * Math.LN10;
}

test('logGamma(n + 1) equals the log of the exact factorial for n up to 300', () => {
  for (let n = 0; n <= 300; n++) {
    const expected = exactLogFactorial(n);
    const tolerance = 1e-14 * Math.max(1, expected);
    assert.ok(Math.abs(logGamma(n + 1) - expected) < tolerance, `n = ${n}: ${logGamma(n + 1)} vs ${expected}`);
    assert.ok(Math.abs(logFactorial(n) - expected) < tolerance, `logFactorial(${n})`);
  }
});

test('logGamma satisfies log Γ(x + 1) = log Γ(x) + log x across 0.001 to 1e7', () => {
  fc.assert(
    fc.property(fc.double({ min: -3, max: 7, noNaN: true }), (e) => {
      const x = 10 ** e;
      const lhs = logGamma(x + 1);
      const rhs = logGamma(x) + Math.log(x);
      assert.ok(Math.abs(lhs - rhs) < 1e-13 * Math.max(1, Math.abs(lhs)), `x = ${x}: ${lhs} vs ${rhs}`);
    }),
    { seed: 12, numRuns: 300 },
  );
});

test('logGamma knows half-integers, negative arguments and poles', () => {
  assert.ok(Math.abs(logGamma(0.5) - 0.5 * Math.log(Math.PI)) < 1e-15);
  assert.ok(Math.abs(logGamma(-0.5) - Math.log(2 * Math.sqrt(Math.PI))) < 1e-14);
  assert.ok(Math.abs(logGamma(1e-8) - 18.420680738180209) < 1e-12);
  assert.equal(logGamma(1), 0);
  assert.equal(logGamma(2), 0);
  assert.equal(logGamma(0), Infinity);
  assert.equal(logGamma(-3), Infinity);
  assert.ok(Number.isNaN(logGamma(NaN)));
});

/**
 * Argument checks shared by the statistics functions. Every bad argument becomes a
 * `HotPatchError('INVALID')` whose message names the function, the argument and the value,
 * and whose detail carries the same figures for `--json` output.
 */
import { HotPatchError, describe } from '../core/index.js';

export function invalid(fn: string, argument: string, message: string, value: unknown): never {
  throw new HotPatchError('INVALID', `${fn}: ${argument} ${message}, got ${describeArgument(value)}`, {
    detail: { function: fn, argument, value: typeof value === 'number' ? value : describe(value) },
  });
}

/** A number as a figure (`-0` kept apart from `0`); anything else as core's `describe` renders it. */
function describeArgument(value: unknown): string {
  if (typeof value === 'number') return Object.is(value, -0) ? '-0' : String(value);
  return describe(value);
}

/** A count: a safe non-negative integer. */
export function requireCount(fn: string, argument: string, value: number): void {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    invalid(fn, argument, 'must be a non-negative integer', value);
  }
}

/** `k` successes out of `n`: both counts, with k <= n. */
export function requireSuccesses(fn: string, kName: string, k: number, nName: string, n: number): void {
  requireCount(fn, kName, k);
  requireCount(fn, nName, n);
  if (k > n) invalid(fn, kName, `must not exceed ${nName} = ${n}`, k);
}

/** A probability in [0, 1]. */
export function requireProbability(fn: string, argument: string, value: number): void {
  if (typeof value !== 'number' || !(value >= 0 && value <= 1)) {
    invalid(fn, argument, 'must be a number in [0, 1]', value);
  }
}

/** A level strictly between 0 and 1 (confidence levels). */
export function requireOpenUnit(fn: string, argument: string, value: number): void {
  if (typeof value !== 'number' || !(value > 0 && value < 1)) {
    invalid(fn, argument, 'must be a number strictly between 0 and 1', value);
  }
}

function requireArrayLike(fn: string, argument: string, xs: ArrayLike<number>): number {
  const n: unknown = xs === null || typeof xs !== 'object' ? undefined : xs.length;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) {
    invalid(fn, argument, 'must be an array or typed array of numbers', xs);
  }
  return n;
}

/**
 * Copies a sample into a new Float64Array, checking on the way that every element is a
 * finite number (NaN and ±Infinity are rejected: a sample holding them is a caller bug).
 * The argument is never mutated.
 */
export function finiteCopy(fn: string, argument: string, xs: ArrayLike<number>): Float64Array {
  const n = requireArrayLike(fn, argument, xs);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const v = xs[i];
    if (typeof v !== 'number' || !Number.isFinite(v)) invalid(fn, `${argument}[${i}]`, 'must be a finite number', v);
    out[i] = v;
  }
  return out;
}

/** `finiteCopy`, sorted ascending (numeric order; typed-array sort never compares as strings). */
export function sortedFiniteCopy(fn: string, argument: string, xs: ArrayLike<number>): Float64Array {
  return finiteCopy(fn, argument, xs).sort();
}

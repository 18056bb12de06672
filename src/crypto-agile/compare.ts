import { timingSafeEqual } from 'node:crypto';
import { assertBytes } from './assert.js';

/**
 * Constant-time equality for digests and MACs: the time taken must not reveal how many
 * leading bytes matched. Lengths are public (a digest's length is fixed by its algorithm),
 * so a length mismatch may return early.
 */
export function timingSafeEqualBytes(a: Uint8Array, b: Uint8Array): boolean {
  assertBytes(a, 'a');
  assertBytes(b, 'b');
  if (a.length !== b.length) return false;
  return timingSafeEqual(a, b);
}

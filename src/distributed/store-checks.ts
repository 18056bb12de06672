import { HotPatchError, describe, messageOf } from '../core/index.js';
import type { Lease } from './kv-store.js';

/**
 * Argument checks shared by both `KvStore` implementations (`EmbeddedStore`, `EtcdStore`),
 * and small helpers of the embedded store's modules.
 */

/** Largest key, in UTF-8 bytes. */
export const MAX_KEY_BYTES = 4096;
/** Largest value, in UTF-8 bytes (below etcd's default 1.5 MiB request limit). */
export const MAX_VALUE_BYTES = 1024 * 1024;
/** Largest lease TTL: one day. */
export const MAX_TTL_MS = 24 * 60 * 60 * 1000;

export function checkKey(value: unknown, name = 'key'): string {
  if (typeof value !== 'string' || value.length === 0) {
    throw new HotPatchError('INVALID', `${name} must be a non-empty string, got ${describe(value)}`);
  }
  if (value.includes('\0')) throw new HotPatchError('INVALID', `${name} must not contain a NUL character`);
  if (Buffer.byteLength(value, 'utf8') > MAX_KEY_BYTES) {
    throw new HotPatchError('INVALID', `${name} is longer than ${MAX_KEY_BYTES} bytes`);
  }
  return value;
}

export function checkPrefix(value: unknown): string {
  if (typeof value !== 'string') throw new HotPatchError('INVALID', `prefix must be a string, got ${describe(value)}`);
  if (value.includes('\0')) throw new HotPatchError('INVALID', 'prefix must not contain a NUL character');
  if (Buffer.byteLength(value, 'utf8') > MAX_KEY_BYTES) {
    throw new HotPatchError('INVALID', `prefix is longer than ${MAX_KEY_BYTES} bytes`);
  }
  return value;
}

export function checkValue(value: unknown, name = 'value'): string {
  if (typeof value !== 'string') throw new HotPatchError('INVALID', `${name} must be a string, got ${describe(value)}`);
  const size = Buffer.byteLength(value, 'utf8');
  if (size > MAX_VALUE_BYTES) {
    throw new HotPatchError('TOO_LARGE', `${name} has ${size} bytes, more than the limit of ${MAX_VALUE_BYTES}`, {
      detail: { limit: MAX_VALUE_BYTES, size },
    });
  }
  return value;
}

export function checkTtlMs(value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1 || value > MAX_TTL_MS) {
    throw new HotPatchError('INVALID', `ttlMs must be an integer from 1 to ${MAX_TTL_MS}, got ${describe(value)}`);
  }
  return value;
}

/** Election names become one key segment: no `/`, so one election never covers another. */
export function checkElectionName(value: unknown): string {
  if (typeof value !== 'string' || !/^[A-Za-z0-9._:-]{1,200}$/.test(value)) {
    throw new HotPatchError('INVALID', `election must be 1-200 characters of [A-Za-z0-9._:-], got ${describe(value)}`);
  }
  return value;
}

export function checkCandidate(value: unknown): string {
  if (typeof value !== 'string' || value.length === 0) {
    throw new HotPatchError('INVALID', `candidate must be a non-empty string, got ${describe(value)}`);
  }
  return checkValue(value, 'candidate');
}

/** A lease passed back to a store: only its id is used (decimal string). */
export function checkLease(value: unknown, name = 'lease'): Lease {
  const id = (value as { id?: unknown } | null | undefined)?.id;
  if (typeof value !== 'object' || value === null || typeof id !== 'string' || !/^[1-9][0-9]{0,19}$/.test(id)) {
    throw new HotPatchError('INVALID', `${name} must be a Lease granted by a store, got ${describe(value)}`);
  }
  return value as Lease;
}

/** An optional positive integer option (a time in milliseconds, a size in bytes). */
export function checkPositiveInt(value: unknown, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new HotPatchError('INVALID', `${name} must be a positive integer, got ${describe(value)}`);
  }
  return value;
}

const SURROGATE = /[\uD800-\uDFFF]/;

/** Keys in etcd's order: by UTF-8 bytes. */
export function compareKeys(a: string, b: string): number {
  // Without surrogate pairs, UTF-16 code unit order is code point order, which is UTF-8 byte
  // order: no buffers to allocate for the keys a fleet uses (a sort of n keys compares n log n pairs).
  if (!SURROGATE.test(a) && !SURROGATE.test(b)) return a < b ? -1 : a > b ? 1 : 0;
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

export function sleep(ms: number, unref = false): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    if (unref) timer.unref();
  });
}

export function asHotPatchError(error: unknown, what: string): HotPatchError {
  if (error instanceof HotPatchError) return error;
  return new HotPatchError('IO', `${what}: ${messageOf(error)}`, { cause: error });
}

export { errnoOf, messageOf } from '../core/index.js';

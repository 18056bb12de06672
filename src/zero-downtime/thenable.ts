import { recordedCallMs } from '../core/index.js';

/** A promise or any object with a callable `then` (what `await` would unwrap). */
export function isThenable(value: unknown): value is PromiseLike<unknown> {
  return value !== null && (typeof value === 'object' || typeof value === 'function') && typeof (value as { then?: unknown }).then === 'function';
}

/**
 * How long a call that started at `started` (performance.now()) took, in ms: for a call of an
 * isolated target, the time it ran where it ran (core/call-durations.ts), else the time until now.
 */
export function elapsedMs(started: number, result: unknown): number {
  const inside = typeof result === 'object' && result !== null ? recordedCallMs(result) : undefined;
  return inside ?? performance.now() - started;
}

import { HotPatchError, describe } from '../core/index.js';

/*
 * The timers of fleet members and controllers: option checks for their periods, a sleep that
 * never keeps the process alive, and spread-out periodic work.
 */

/** A period option: a positive number of milliseconds, or INVALID naming `what`. */
export function positiveMs(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0)
    throw new HotPatchError('INVALID', `${what} must be a positive number of ms, got ${describe(value)}`);
  return value;
}

/** A sleep on an unref'd timer: a member or controller waiting never keeps its process alive. */
export const sleep = (ms: number): Promise<void> =>
  new Promise((resolve) => {
    setTimeout(resolve, ms).unref();
  });

/**
 * Runs `fn` about every `periodMs` (unref'd), each period drawn from 75-125 % of it, until the
 * returned function is called. Why the spread: agents started together (a fleet booted at
 * once, a benchmark) would otherwise all list the store in the same instant, every period.
 */
export function everyJittered(periodMs: number, fn: () => void): () => void {
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const arm = (): void => {
    timer = setTimeout(
      () => {
        if (stopped) return;
        arm();
        fn();
      },
      periodMs * (0.75 + Math.random() / 2),
    );
    timer.unref();
  };
  arm();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

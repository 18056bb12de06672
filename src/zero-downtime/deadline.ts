import { HotPatchError } from '../core/index.js';

/** One deadline shared by several awaited steps (see `deadline`). */
export interface Deadline {
  /** `work`, or LOAD_FAILED once the deadline passes first (the work itself cannot be cancelled). */
  race<T>(work: Promise<T>): Promise<T>;
  /** Stops the timer (idempotent); a race already lost stays lost. */
  clear(): void;
}

/**
 * A deadline `ms` from now for code the process does not control (a payload's import,
 * `init()`, `selfTest()`): a promise that never settles must not stall the caller for ever.
 * The timer keeps the process alive until `clear()`, so whoever awaits the race gets an answer.
 */
export function deadline(ms: number, message: () => string): Deadline {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new HotPatchError('LOAD_FAILED', message())), ms);
  });
  // A deadline nobody is racing any more must not surface as an unhandled rejection.
  expired.catch(() => undefined);
  return {
    race: <T>(work: Promise<T>): Promise<T> => Promise.race([work, expired]),
    clear: () => clearTimeout(timer),
  };
}

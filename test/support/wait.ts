/*
 * Waiting in tests without fixed sleeps: every wait here is for a condition or an event, and
 * its deadline is a generous guard that only fails a test that would otherwise hang (a
 * loaded CI machine makes the wait longer, never the outcome different).
 */

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Polls `predicate` (sync or async) every `everyMs` until it holds; throws after `timeoutMs`
 * saying what it waited for. The poll timer keeps the event loop alive meanwhile (useful when
 * the code under test only has unref'd timers pending).
 */
export async function until(predicate: () => boolean | Promise<boolean>, timeoutMs = 15_000, what = 'condition', everyMs = 5): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await pause(everyMs);
  }
}

/**
 * Polls `check` until it returns a value other than undefined/false, and returns that value.
 * A throw counts as "not yet" (the last one is quoted if the deadline passes).
 */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 20_000,
  everyMs = 25,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last === undefined ? '' : ` (last error: ${(last as Error).message})`}`);
    await pause(everyMs);
  }
}

/** Calls `attempt` until it resolves (a throw means "try again"); fails after `timeoutMs` quoting the last error. */
export async function retry<T>(what: string, attempt: () => Promise<T>, timeoutMs = 15_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      return await attempt();
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`${what}: still failing after ${timeoutMs} ms: ${String(last)}`);
    await pause(everyMs);
  }
}

/**
 * Whether `promise` settles (either way) within `ms`. As a positive check, give a generous
 * `ms`: it is a hang guard. As a negative check ("still pending"), `ms` is only how long the
 * test keeps watching: correct code passes whatever its length.
 */
export async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const result = await Promise.race([
    promise.then(
      () => true,
      () => true,
    ),
    new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), ms);
    }),
  ]);
  clearTimeout(timer);
  return result;
}

/** `promise`, or a rejection naming `what` if it has not settled after `ms` (a hang guard). */
export async function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Lets everything already queued run: `n` turns of the event loop (each drains the microtask
 * queue, then passes the timers, I/O and check phases). No wall-clock length: a "nothing
 * happened" check after it holds because the work that could have happened was given its
 * turns, however busy the machine is.
 */
export async function turns(n = 10): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve));
}

/**
 * `promise`, with the event loop held open until it settles: what it waits for (an unref'd
 * isolate's death, an unref'd timer) may be the only thing left, and a test process whose loop
 * empties ends with the test still pending.
 */
export async function held<T>(promise: Promise<T>): Promise<T> {
  const keep = setInterval(() => {}, 1_000);
  try {
    return await promise;
  } finally {
    clearInterval(keep);
  }
}

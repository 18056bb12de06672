import { messageOf } from '../../core/index.js';
import { fleetKeys, type KvStore } from '../../distributed/index.js';
import type { Output } from '../output.js';

/**
 * How the long-running fleet commands (`controller`, `status --watch`, `rollout --watch`)
 * follow the store and end.
 */

/** What ends a long-running command: SIGINT, SIGTERM, or the reader of standard output going away. */
export interface Interruption {
  readonly signal: AbortSignal;
  /** Which signal ended it (undefined: not a signal). */
  readonly by: () => NodeJS.Signals | undefined;
  dispose(): void;
}

export function interruption(out: Output): Interruption {
  const controller = new AbortController();
  let by: NodeJS.Signals | undefined;
  const onSignal = (signal: NodeJS.Signals): void => {
    by ??= signal;
    controller.abort();
  };
  const onClosed = (): void => controller.abort();
  // `once`: a second SIGINT or SIGTERM while stopping falls back to Node's default (exit at once).
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  out.closed.addEventListener('abort', onClosed, { once: true });
  return {
    signal: controller.signal,
    by: () => by,
    dispose() {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      out.closed.removeEventListener('abort', onClosed);
    },
  };
}

/**
 * Besides the watch, the store is read again this often: what changes outside the fleet's
 * prefix (which controller leads: the election lives elsewhere) is seen within this period.
 */
const REREAD_MS = 2000;

export interface FollowOptions<T> {
  store: KvStore;
  prefix: string | undefined;
  signal: AbortSignal;
  /** One consistent read of what is followed. */
  read: () => Promise<T>;
  /** Called with every read; returns true when following is over. */
  onRead: (value: T) => boolean | void;
  /** A read that failed after the first one (the first one's failure is thrown): following goes on. */
  onError: (error: unknown) => void;
}

/**
 * Reads what is followed now, then again after every change under the fleet's prefix (the
 * store's watch; changes that arrive during a read cause one more read, not one each) and
 * every REREAD_MS, until `onRead` says it is over or `signal` aborts. Reads rather than
 * applies the watch's events: each read is a consistent picture, whatever order events
 * arrived in. The first read's failure (an unreachable store) is thrown; a later failure is
 * reported through `onError` (once per distinct message) and the next change or period
 * tries again.
 */
export async function followStore<T>(options: FollowOptions<T>): Promise<void> {
  const { signal } = options;
  let dirty = true;
  let wake: (() => void) | undefined;
  const poke = (): void => {
    dirty = true;
    wake?.();
  };
  const stopWatch = await options.store.watch(`${fleetKeys(options.prefix).prefix}/`, poke);
  const timer = setInterval(poke, REREAD_MS);
  signal.addEventListener('abort', poke);
  let first = true;
  let lastError: string | undefined;
  try {
    while (!signal.aborted) {
      if (!dirty) await new Promise<void>((resolve) => (wake = resolve));
      wake = undefined;
      if (signal.aborted) break;
      dirty = false;
      let value: T;
      try {
        value = await options.read();
      } catch (error) {
        if (first) throw error;
        if (messageOf(error) !== lastError) options.onError(error);
        lastError = messageOf(error);
        continue;
      }
      first = false;
      lastError = undefined;
      if (options.onRead(value) === true) break;
    }
  } finally {
    clearInterval(timer);
    signal.removeEventListener('abort', poke);
    await stopWatch().catch(() => undefined); // the outcome is what was read; a failed unwatch changes nothing
  }
}

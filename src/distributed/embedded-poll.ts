import { promises as fsp } from 'node:fs';
import { HotPatchError } from '../core/index.js';
import { type StoreState, hasExpired, liveValues, nextExpiry } from './embedded-document.js';
import type { WatchEvent } from './kv-store.js';
import { asHotPatchError, errnoOf, messageOf, sleep } from './store-checks.js';

/**
 * The embedded store's polling: watches, and the waits of campaigns and leaderships.
 * `fs.watch` is unreliable across renames, so every `pollMs` a poller `stat`s `store.json`
 * and re-reads it when it changed (and at least once a second regardless, as a rename can
 * reuse an inode within one timestamp tick), or when a lease may have expired.
 */

/** Polls that trust an unchanged `stat` before re-reading anyway. */
const FORCED_READ_EVERY = 20;

/** What a poller needs from its store. */
export interface PollSource {
  readonly dir: string;
  /** The store document, `<dir>/store.json`. */
  readonly file: string;
  readonly pollMs: number;
  /** Reads and checks the document (counted in `requestCount`). */
  readState(): Promise<StoreState>;
  /** A locked cycle that changes nothing but expires leases (their keys deleted, with events). */
  expireLeases(): Promise<StoreState>;
}

interface FileStamp {
  ino: bigint;
  size: bigint;
  mtimeNs: bigint;
}

async function stampOf(file: string): Promise<FileStamp | undefined> {
  try {
    const st = await fsp.stat(file, { bigint: true });
    return { ino: st.ino, size: st.size, mtimeNs: st.mtimeNs };
  } catch (error) {
    if (errnoOf(error) === 'ENOENT') return undefined;
    throw new HotPatchError('IO', `cannot stat store file ${file}: ${messageOf(error)}`, { cause: error });
  }
}

function sameStamp(a: FileStamp | undefined, b: FileStamp | undefined): boolean {
  return a !== undefined && b !== undefined && a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs;
}

/**
 * Watches keys under `prefix` (arguments already checked): replays the event log exactly, or
 * diffs when it fell behind it. Resolves to the stop function once the initial state is read.
 */
export async function watchPrefix(
  source: PollSource,
  prefix: string,
  onEvent: (event: WatchEvent) => void,
  onError: (error: HotPatchError) => void,
): Promise<() => Promise<void>> {
  const initial = await source.readState();
  let stamp = await stampOf(source.file);
  let revision = initial.revision;
  let known = liveValues(initial, prefix, Date.now());
  let expiry = nextExpiry(initial);
  let polls = 0;
  let stopped = false;

  const deliver = (event: WatchEvent): void => {
    if (stopped) return;
    try {
      onEvent(event);
    } catch (error) {
      // A throwing handler is the caller's bug: surface it, as an EventEmitter would.
      queueMicrotask(() => {
        throw error;
      });
    }
  };

  const poll = async (): Promise<void> => {
    polls += 1;
    const now = Date.now();
    const current = await stampOf(source.file);
    if (sameStamp(current, stamp) && now < expiry && polls % FORCED_READ_EVERY !== 0) return;
    let state = await source.readState();
    if (hasExpired(state, now)) {
      // The poll is an operation too: expired leases lose their keys now (with events).
      state = await source.expireLeases();
    }
    stamp = await stampOf(source.file);
    expiry = nextExpiry(state);
    if (state.revision === revision) return;
    const first = state.events[0];
    if (first !== undefined && first.revision <= revision + 1) {
      // Exact replay from the event log.
      for (const e of state.events) {
        if (e.revision <= revision || !e.key.startsWith(prefix)) continue;
        deliver(e.type === 'put' ? { type: 'put', key: e.key, value: e.value! } : { type: 'delete', key: e.key });
      }
    } else {
      // Fell behind the log: diff what we knew against what is there (coalesced).
      const live = liveValues(state, prefix, now);
      for (const [k, v] of live) if (known.get(k) !== v) deliver({ type: 'put', key: k, value: v });
      for (const k of known.keys()) if (!live.has(k)) deliver({ type: 'delete', key: k });
    }
    revision = state.revision;
    known = liveValues(state, prefix, now);
  };

  // One poll at a time: a slow poll (lock contention) skips ticks instead of queueing them.
  let running: Promise<void> | undefined;
  const timer = setInterval(() => {
    if (stopped || running !== undefined) return;
    running = poll()
      .catch((error: unknown) => {
        if (!stopped) onError(asHotPatchError(error, `watching ${prefix} in ${source.dir}`));
      })
      .finally(() => {
        running = undefined;
      });
  }, source.pollMs);

  return async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    clearInterval(timer);
    if (running !== undefined) await running;
  };
}

/**
 * Polls the file every `pollMs` until `ready(state)` holds or one of `interrupts` settles.
 * Reads only when the file changed (or a lease may have expired, or every second anyway).
 */
export async function waitUntil(
  source: PollSource,
  ready: (state: StoreState, now: number) => Promise<boolean>,
  interrupts: Array<Promise<void>>,
  unref = false,
): Promise<void> {
  let interrupted = false;
  const onInterrupt = Promise.race(interrupts).then(() => {
    interrupted = true;
  });
  let stamp: FileStamp | undefined;
  let expiry = -Infinity;
  let polls = 0;
  while (!interrupted) {
    const now = Date.now();
    const current = await stampOf(source.file);
    const unchanged = polls > 0 && sameStamp(current, stamp);
    polls += 1;
    if (!unchanged || now >= expiry || polls % FORCED_READ_EVERY === 0) {
      stamp = current;
      const state = await source.readState();
      expiry = nextExpiry(state);
      if (await ready(state, now)) return;
    }
    await Promise.race([sleep(source.pollMs, unref), onInterrupt]);
  }
}

import { randomInt } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { HotPatchError, decodeJson, describe, emitRedactedWarning, messageOf } from '../core/index.js';
import { readFileBounded } from '../repo/index.js';
import { type StoreState, emptyState, liveEntries, liveEntry, validateState } from './embedded-document.js';
import { EmbeddedElections, leaseFor } from './embedded-election.js';
import { EmbeddedLease } from './embedded-lease.js';
import { type PollSource, watchPrefix } from './embedded-poll.js';
import { EmbeddedWriter } from './embedded-writer.js';
import type { KeyValue, KvStore, Lease, Leadership, WatchEvent } from './kv-store.js';
import { signal } from './one-shot-signal.js';
import { checkCandidate, checkElectionName, checkKey, checkLease, checkPositiveInt, checkPrefix, checkTtlMs, checkValue } from './store-checks.js';

/**
 * `EmbeddedStore`: the single-host `KvStore`, a directory holding one JSON document
 * (`store.json`, see `embedded-document.ts` for its format) that several processes on the
 * same host share safely (an approver runs `hotpatch approve` from a shell while the agent
 * process waits for the quorum).
 *
 * Mutations are locked read-modify-write cycles (`embedded-writer.ts`), safe even when a lock
 * is broken under a writer that is only paused (`embedded-lock.ts`): a fenced writer has
 * written nothing and runs its cycle again on the current state. The caller is answered only
 * after the rename onto `store.json` and the directory fsync.
 *
 * Stale locks: a lock whose pid is not alive on this host (`kill(pid, 0)` → `ESRCH`), or
 * older than `lockStaleMs` (default 10 s; a mutation takes milliseconds, so a holder that
 * old is hung or paused), is removed. A lock file left empty by a crash between create and
 * write is judged by its mtime. Fencing also removes what a crashed writer left behind.
 *
 * Leases are wall-clock times shared by every process on the host: a lease whose
 * `expiresAt` has passed is treated as gone by every read at once, and its keys are deleted
 * (with delete events) by the next mutation of any process, or by any watcher's poll.
 * Renewal runs on an unref'd timer every `ttlMs / 3` (`embedded-lease.ts`). Elections:
 * `embedded-election.ts`.
 *
 * Watches poll (`embedded-poll.ts`): `fs.watch` is unreliable across renames, so every
 * `pollMs` (default 50 ms) a watcher `stat`s the file and re-reads it when it changed (and at
 * least once a second regardless, as a rename can reuse an inode within one timestamp tick).
 *
 * `requestCount` counts reads of `store.json`: every read operation (get, list, leader),
 * every locked read-modify-write cycle (put, create, compareAndSwap, delete, lease grant,
 * renewal and revocation, campaign attempts, resign; a cycle re-run after fencing counts
 * again), every read by a watch or a campaign poll. A poll whose `stat` shows an unchanged
 * file costs a `stat` only and is not counted.
 *
 * Errors: a missing `store.json` is an empty store; unreadable or malformed content is
 * `PARSE` (not JSON / not UTF-8) or `INVALID` (wrong shape), never silently reset; a file
 * larger than `maxFileBytes` is `TOO_LARGE`; file-system failures, and a lock that cannot be
 * taken (or keeps being lost to other writers) within `lockTimeoutMs`, are `IO`; a put with a
 * lease that no longer exists is `NOT_FOUND` (as with etcd); bad arguments are `INVALID`; an
 * operation on a closed store is `INVALID`; a campaign cut short by `close()` or by the loss
 * of its lease is `ABORTED`.
 */

export const STORE_FILE = 'store.json';
export const LOCK_FILE = 'store.lock';

export interface EmbeddedStoreOptions {
  /** How often a watch, campaign or leadership checks the file (default 50 ms). */
  pollMs?: number;
  /** A lock older than this is broken even if its pid seems alive (default 10 000 ms). */
  lockStaleMs?: number;
  /** How long a mutation waits for the lock before failing with `IO` (default 15 000 ms). */
  lockTimeoutMs?: number;
  /** Largest `store.json` accepted (default 64 MiB). */
  maxFileBytes?: number;
  /**
   * Called when a watcher's poll fails (unreadable or corrupted file, lease cleanup denied);
   * the watch keeps polling. Default: `process.emitWarning`.
   */
  onWatchError?: (error: HotPatchError) => void;
}

const DEFAULT_POLL_MS = 50;
const DEFAULT_LOCK_STALE_MS = 10_000;
const DEFAULT_LOCK_TIMEOUT_MS = 15_000;
const DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024;

/**
 * See the module comment. Open with `EmbeddedStore.open(dir)`, which creates the directory
 * and checks an existing `store.json`.
 */
export class EmbeddedStore implements KvStore {
  readonly kind = 'embedded' as const;
  readonly dir: string;
  private readonly file: string;
  private readonly maxFileBytes: number;
  private readonly onWatchError: (error: HotPatchError) => void;
  private requests = 0;
  private readonly closedSignal = signal();
  private readonly writer: EmbeddedWriter;
  private readonly elections: EmbeddedElections;
  private readonly leases = new Set<EmbeddedLease>();
  private readonly stoppers = new Set<() => Promise<void>>();
  /** What watches and campaign waits read through. */
  private readonly poller: PollSource;

  private constructor(dir: string, options: EmbeddedStoreOptions) {
    this.dir = path.resolve(dir);
    this.file = path.join(this.dir, STORE_FILE);
    const pollMs = checkPositiveInt(options.pollMs, 'pollMs', DEFAULT_POLL_MS);
    const lockStaleMs = checkPositiveInt(options.lockStaleMs, 'lockStaleMs', DEFAULT_LOCK_STALE_MS);
    const lockTimeoutMs = checkPositiveInt(options.lockTimeoutMs, 'lockTimeoutMs', DEFAULT_LOCK_TIMEOUT_MS);
    this.maxFileBytes = checkPositiveInt(options.maxFileBytes, 'maxFileBytes', DEFAULT_MAX_FILE_BYTES);
    if (options.onWatchError !== undefined && typeof options.onWatchError !== 'function') {
      throw new HotPatchError('INVALID', `onWatchError must be a function, got ${describe(options.onWatchError)}`);
    }
    this.onWatchError = options.onWatchError ?? ((error) => emitRedactedWarning(`embedded store watch: ${error.message}`, { code: `HOTPATCH_${error.code}` }));
    this.writer = new EmbeddedWriter({
      file: this.file,
      lockFile: path.join(this.dir, LOCK_FILE),
      lockStaleMs,
      lockTimeoutMs,
      maxFileBytes: this.maxFileBytes,
      readState: () => this.readState(),
    });
    this.poller = {
      dir: this.dir,
      file: this.file,
      pollMs,
      readState: () => this.readState(),
      expireLeases: async () => (await this.writer.mutate(() => undefined)).state,
    };
    this.elections = new EmbeddedElections({
      writer: this.writer,
      poller: this.poller,
      isClosed: () => this.closed,
      whenClosed: this.closedSignal.promise,
      assertOpen: () => this.assertOpen(),
    });
  }

  /** Opens (creating if needed) the store directory `dir`; an existing store.json must be valid. */
  static async open(dir: string, options: EmbeddedStoreOptions = {}): Promise<EmbeddedStore> {
    if (typeof dir !== 'string' || dir.length === 0 || dir.includes('\0')) {
      throw new HotPatchError('INVALID', `store directory must be a non-empty path, got ${describe(dir)}`);
    }
    if (typeof options !== 'object' || options === null) {
      throw new HotPatchError('INVALID', `options must be an object, got ${describe(options)}`);
    }
    const store = new EmbeddedStore(dir, options);
    try {
      await fsp.mkdir(store.dir, { recursive: true, mode: 0o700 });
    } catch (error) {
      throw new HotPatchError('IO', `cannot create store directory ${store.dir}: ${messageOf(error)}`, { cause: error });
    }
    await store.readState();
    return store;
  }

  /** See the module comment: reads of store.json plus locked read-modify-write cycles. */
  get requestCount(): number {
    return this.requests;
  }

  private get closed(): boolean {
    return this.closedSignal.done;
  }

  private async readState(): Promise<StoreState> {
    this.requests += 1;
    let bytes: Uint8Array;
    try {
      bytes = await readFileBounded(this.file, this.maxFileBytes, { what: 'store file' });
    } catch (error) {
      if (error instanceof HotPatchError && error.code === 'NOT_FOUND') return emptyState();
      throw error;
    }
    return validateState(decodeJson(bytes, `store file ${this.file}`), this.file);
  }

  private assertOpen(): void {
    if (this.closed) throw new HotPatchError('INVALID', `embedded store ${this.dir} is closed`);
  }

  /** The state for a read: expired leases are already invisible (see `liveEntry`). */
  private async snapshot(): Promise<StoreState> {
    this.assertOpen();
    return this.readState();
  }

  // --- KvStore ---

  async get(key: string): Promise<string | undefined> {
    checkKey(key);
    const state = await this.snapshot();
    return liveEntry(state, key, Date.now())?.value;
  }

  async list(prefix: string): Promise<KeyValue[]> {
    checkPrefix(prefix);
    const state = await this.snapshot();
    return liveEntries(state, prefix, Date.now()).map(([key, e]) => ({ key, value: e.value, modRevision: String(e.modRevision) }));
  }

  async put(key: string, value: string, options: { lease?: Lease } = {}): Promise<void> {
    checkKey(key);
    checkValue(value);
    const lease = options.lease === undefined ? undefined : checkLease(options.lease, 'options.lease');
    this.assertOpen();
    await this.writer.mutate((tx) => {
      tx.put(key, value, leaseFor(tx, lease));
    });
  }

  async create(key: string, value: string, options: { lease?: Lease } = {}): Promise<boolean> {
    checkKey(key);
    checkValue(value);
    const lease = options.lease === undefined ? undefined : checkLease(options.lease, 'options.lease');
    this.assertOpen();
    const { result } = await this.writer.mutate((tx) => {
      if (tx.state.keys.has(key)) return false;
      tx.put(key, value, leaseFor(tx, lease));
      return true;
    });
    return result;
  }

  async compareAndSwap(key: string, expected: string | undefined, value: string): Promise<boolean> {
    checkKey(key);
    if (expected !== undefined) checkValue(expected, 'expected');
    checkValue(value);
    this.assertOpen();
    const { result } = await this.writer.mutate((tx) => {
      const current = tx.state.keys.get(key);
      if (expected === undefined ? current !== undefined : current?.value !== expected) return false;
      tx.put(key, value);
      return true;
    });
    return result;
  }

  async delete(key: string): Promise<void> {
    checkKey(key);
    this.assertOpen();
    await this.writer.mutate((tx) => tx.delete([key]));
  }

  async watch(prefix: string, onEvent: (event: WatchEvent) => void): Promise<() => Promise<void>> {
    checkPrefix(prefix);
    if (typeof onEvent !== 'function') throw new HotPatchError('INVALID', `onEvent must be a function, got ${describe(onEvent)}`);
    this.assertOpen();
    const stopPolling = await watchPrefix(this.poller, prefix, onEvent, (error) => this.onWatchError(error));
    const stop = async (): Promise<void> => {
      this.stoppers.delete(stop);
      await stopPolling();
    };
    this.stoppers.add(stop);
    return stop;
  }

  async grantLease(ttlMs: number): Promise<Lease> {
    checkTtlMs(ttlMs);
    this.assertOpen();
    const { result } = await this.writer.mutate((tx, now) => {
      let id: string;
      do id = String(randomInt(1, 2 ** 47));
      while (tx.state.leases.has(id));
      const expiresAt = now + ttlMs;
      tx.state.leases.set(id, { ttlMs, expiresAt });
      tx.markChanged();
      return { id, expiresAt };
    });
    const lease = new EmbeddedLease(this, result.id, ttlMs, result.expiresAt);
    this.leases.add(lease);
    void lease.lost.then(() => this.leases.delete(lease));
    return lease;
  }

  /** @internal Renews a lease; its new expiry, or undefined when the lease is gone. */
  async renewLease(id: string): Promise<number | undefined> {
    if (this.closed) return undefined;
    const { result } = await this.writer.mutate((tx, now) => {
      const lease = tx.state.leases.get(id);
      if (lease === undefined) return undefined;
      lease.expiresAt = now + lease.ttlMs;
      tx.markChanged();
      return lease.expiresAt;
    });
    return result;
  }

  /** @internal Revokes a lease: it and its keys are deleted now. */
  async revokeLease(id: string): Promise<void> {
    this.assertOpen();
    await this.writer.mutate((tx) => tx.dropLease(id));
  }

  async campaign(election: string, candidate: string, lease: Lease): Promise<Leadership> {
    checkElectionName(election);
    checkCandidate(candidate);
    checkLease(lease);
    return this.elections.campaign(election, candidate, lease);
  }

  async leader(election: string): Promise<string | undefined> {
    checkElectionName(election);
    return this.get(this.elections.keyOf(election));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closedSignal.fire();
    await Promise.all([...this.stoppers].map((stop) => stop()));
    // Leases stop renewing (their keys vanish at the TTL, as after a crash); `lost` resolves.
    for (const lease of this.leases) lease.markLost();
    this.leases.clear();
    // Let a mutation in flight finish before returning.
    await this.writer.settled();
  }
}

import { randomInt } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { HotPatchError, decodeJson, describe, emitRedactedWarning } from '../core/index.js';
import { readFileBounded } from '../repo/index.js';
import {
  type StoreState,
  Transaction,
  emptyState,
  liveEntries,
  liveEntry,
  serialize,
  validateState,
} from './embedded-document.js';
import { EmbeddedLease } from './embedded-lease.js';
import { WriterLock } from './embedded-lock.js';
import { type PollSource, waitUntil, watchPrefix } from './embedded-poll.js';
import type { KeyValue, KvStore, Lease, Leadership, WatchEvent } from './kv-store.js';
import { signal } from './one-shot-signal.js';
import {
  asHotPatchError,
  checkCandidate,
  checkElectionName,
  checkKey,
  checkLease,
  checkPositiveInt,
  checkPrefix,
  checkTtlMs,
  checkValue,
  messageOf,
} from './store-checks.js';

// The shared argument checks and the document constants moved to their own modules; this
// module still exports them (EtcdStore and the package index import them from here).
export {
  MAX_KEY_BYTES,
  MAX_VALUE_BYTES,
  MAX_TTL_MS,
  checkKey,
  checkPrefix,
  checkValue,
  checkTtlMs,
  checkElectionName,
  checkCandidate,
  checkLease,
  checkPositiveInt,
  compareKeys,
  sleep,
} from './store-checks.js';
export { STORE_FORMAT, EVENT_LOG_SIZE } from './embedded-document.js';

/**
 * `EmbeddedStore`: the single-host `KvStore`, a directory holding one JSON document
 * (`store.json`, see `embedded-document.ts` for its format) that several processes on the
 * same host share safely (an approver runs `hotpatch approve` from a shell while the agent
 * process waits for the quorum).
 *
 * Mutations (see `embedded-lock.ts` for why they are safe even when a lock is broken under a
 * writer that is only paused): step 1 take the in-process mutex (one instance never races
 * itself); step 2 take the cross-process lock (`store.lock`, created with `O_CREAT|O_EXCL`,
 * holding `{pid, time, token}`) and fence (remove every other writer's commit temp file);
 * step 3 re-read `store.json`; step 4 expire leases (delete their keys); step 5 apply; step 6
 * (only when something changed) write the new document to our own temp file and fsync it,
 * check the lock still holds our token, rename the temp onto `store.json` and fsync the
 * directory, so a reader sees the old or the new document, never a torn one; step 7 release
 * the lock (only if it still holds our token). A writer fenced at step 6 (its lock was broken
 * and another writer took it) has written nothing: it runs steps 2-7 again on the new state,
 * so a compare-and-swap is evaluated again, never applied to the state it read first. The
 * caller is answered only after the rename and the directory fsync.
 *
 * Stale locks: a lock whose pid is not alive on this host (`kill(pid, 0)` → `ESRCH`), or
 * older than `lockStaleMs` (default 10 s; a mutation takes milliseconds, so a holder that
 * old is hung or paused), is removed. A lock file left empty by a crash between create and
 * write is judged by its mtime. Fencing also removes what a crashed writer left behind.
 *
 * Leases are wall-clock times shared by every process on the host: a lease whose
 * `expiresAt` has passed is treated as gone by every read at once, and its keys are deleted
 * (with delete events) by the next mutation of any process, or by any watcher's poll.
 * Renewal runs on an unref'd timer every `ttlMs / 3`.
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
  private readonly lockFile: string;
  private readonly pollMs: number;
  private readonly lockStaleMs: number;
  private readonly lockTimeoutMs: number;
  private readonly maxFileBytes: number;
  private readonly onWatchError: (error: HotPatchError) => void;
  private requests = 0;
  private closed = false;
  private readonly closedSignal = signal();
  private mutex: Promise<void> = Promise.resolve();
  private readonly leases = new Set<EmbeddedLease>();
  private readonly stoppers = new Set<() => Promise<void>>();
  /** What watches and campaign waits read through. */
  private readonly poller: PollSource;

  private constructor(dir: string, options: EmbeddedStoreOptions) {
    this.dir = path.resolve(dir);
    this.file = path.join(this.dir, STORE_FILE);
    this.lockFile = path.join(this.dir, LOCK_FILE);
    this.pollMs = checkPositiveInt(options.pollMs, 'pollMs', DEFAULT_POLL_MS);
    this.lockStaleMs = checkPositiveInt(options.lockStaleMs, 'lockStaleMs', DEFAULT_LOCK_STALE_MS);
    this.lockTimeoutMs = checkPositiveInt(options.lockTimeoutMs, 'lockTimeoutMs', DEFAULT_LOCK_TIMEOUT_MS);
    this.maxFileBytes = checkPositiveInt(options.maxFileBytes, 'maxFileBytes', DEFAULT_MAX_FILE_BYTES);
    this.poller = {
      dir: this.dir,
      file: this.file,
      pollMs: this.pollMs,
      readState: () => this.readState(),
      expireLeases: async () => (await this.mutate(() => undefined)).state,
    };
    if (options.onWatchError !== undefined && typeof options.onWatchError !== 'function') {
      throw new HotPatchError('INVALID', `onWatchError must be a function, got ${describe(options.onWatchError)}`);
    }
    this.onWatchError =
      options.onWatchError ?? ((error) => emitRedactedWarning(`embedded store watch: ${error.message}`, { code: `HOTPATCH_${error.code}` }));
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

  // --- file access ---

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

  /**
   * The locked read-modify-write cycle (steps 1-7 of the module comment). `apply` may throw;
   * nothing is written then. `apply` must only change `tx`: a fenced cycle runs it again.
   */
  private async mutate<T>(apply: (tx: Transaction, now: number) => T): Promise<{ result: T; state: StoreState }> {
    const previous = this.mutex;
    let unlock!: () => void;
    this.mutex = new Promise<void>((resolve) => {
      unlock = resolve;
    });
    // step 1
    await previous;
    try {
      const deadline = Date.now() + this.lockTimeoutMs;
      for (let fenced = 1; ; fenced += 1) {
        const outcome = await this.cycle(apply, deadline);
        if (outcome !== undefined) return outcome;
        // Our lock was broken under us (another writer may have committed since our read):
        // nothing was written, and the whole cycle runs again on the state as it is now.
        if (Date.now() > deadline) {
          throw new HotPatchError(
            'IO',
            `cannot write the store: ${this.lockFile} was broken under this writer ${fenced} time(s) in ${this.lockTimeoutMs} ms (a pause longer than lockStaleMs ${this.lockStaleMs} ms?); nothing written`,
            { detail: { lock: this.lockFile, fenced } },
          );
        }
      }
    } finally {
      unlock();
    }
  }

  /** Steps 2-7 once; undefined when this writer was fenced (nothing written). */
  private async cycle<T>(apply: (tx: Transaction, now: number) => T, deadline: number): Promise<{ result: T; state: StoreState } | undefined> {
    // step 2
    const lock = await WriterLock.acquire({
      storeFile: this.file,
      lockFile: this.lockFile,
      staleMs: this.lockStaleMs,
      deadline,
      timeoutMs: this.lockTimeoutMs,
    });
    let outcome: { result: T; state: StoreState } | undefined;
    try {
      // step 3
      const state = await this.readState();
      const tx = new Transaction(state);
      const now = Date.now();
      // step 4
      tx.expire(now);
      // step 5
      const result = apply(tx, now);
      // step 6
      if (!tx.changed) {
        outcome = { result, state };
      } else {
        tx.commitEvents();
        const text = serialize(state);
        const size = Buffer.byteLength(text, 'utf8');
        if (size > this.maxFileBytes) {
          throw new HotPatchError('TOO_LARGE', `store file ${this.file} would grow to ${size} bytes, more than the limit of ${this.maxFileBytes}; nothing written`, {
            detail: { limit: this.maxFileBytes, size },
          });
        }
        if (await lock.commit(text)) outcome = { result, state };
      }
    } catch (error) {
      // step 7 (on failure): the primary error wins; a failing release is secondary
      await lock.release().catch(() => undefined);
      throw error;
    }
    // step 7
    await lock.release();
    return outcome;
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

  /** The lease id to attach, checked under the lock: it must exist and not have expired. */
  private static leaseFor(tx: Transaction, lease: Lease | undefined): string | undefined {
    if (lease === undefined) return undefined;
    if (!tx.state.leases.has(lease.id)) {
      throw new HotPatchError('NOT_FOUND', `lease ${lease.id} is gone (expired or revoked)`, { detail: { lease: lease.id } });
    }
    return lease.id;
  }

  async put(key: string, value: string, options: { lease?: Lease } = {}): Promise<void> {
    checkKey(key);
    checkValue(value);
    const lease = options.lease === undefined ? undefined : checkLease(options.lease, 'options.lease');
    this.assertOpen();
    await this.mutate((tx) => {
      tx.put(key, value, EmbeddedStore.leaseFor(tx, lease));
    });
  }

  async create(key: string, value: string, options: { lease?: Lease } = {}): Promise<boolean> {
    checkKey(key);
    checkValue(value);
    const lease = options.lease === undefined ? undefined : checkLease(options.lease, 'options.lease');
    this.assertOpen();
    const { result } = await this.mutate((tx) => {
      if (tx.state.keys.has(key)) return false;
      tx.put(key, value, EmbeddedStore.leaseFor(tx, lease));
      return true;
    });
    return result;
  }

  async compareAndSwap(key: string, expected: string | undefined, value: string): Promise<boolean> {
    checkKey(key);
    if (expected !== undefined) checkValue(expected, 'expected');
    checkValue(value);
    this.assertOpen();
    const { result } = await this.mutate((tx) => {
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
    await this.mutate((tx) => tx.delete([key]));
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
    const { result } = await this.mutate((tx, now) => {
      let id: string;
      do id = String(randomInt(1, 2 ** 47)); while (tx.state.leases.has(id));
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
    const { result } = await this.mutate((tx, now) => {
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
    await this.mutate((tx) => tx.dropLease(id));
  }

  private electionKey(election: string): string {
    return `/elections/${election}`;
  }

  async campaign(election: string, candidate: string, lease: Lease): Promise<Leadership> {
    checkElectionName(election);
    checkCandidate(candidate);
    checkLease(lease);
    this.assertOpen();
    const key = this.electionKey(election);
    const leaseLost = lease.lost instanceof Promise ? lease.lost : new Promise<void>(() => undefined);
    let lostLease = false;
    void leaseLost.then(() => {
      lostLease = true;
    });
    const aborted = (): HotPatchError | undefined => {
      if (this.closed) return new HotPatchError('ABORTED', `campaign for ${election} ended: the store was closed`);
      if (lostLease) return new HotPatchError('ABORTED', `campaign for ${election} ended: lease ${lease.id} was lost`);
      return undefined;
    };
    for (;;) {
      const stop = aborted();
      if (stop !== undefined) throw stop;
      // Take the key when it is free, or keep it when it is already ours (same lease).
      const { result: elected } = await this.mutate((tx) => {
        const current = tx.state.keys.get(key);
        if (current !== undefined && current.lease !== lease.id) return false;
        if (current?.value === candidate) return true;
        tx.put(key, candidate, EmbeddedStore.leaseFor(tx, lease));
        return true;
      });
      if (elected) return this.leadership(election, key, lease, leaseLost);
      // Wait until the key is free (deleted, or its lease expired), the lease is lost or the store closes.
      await waitUntil(this.poller, async (state, now) => liveEntry(state, key, now) === undefined, [leaseLost, this.closedSignal.promise]);
    }
  }

  private leadership(election: string, key: string, lease: Lease, leaseLost: Promise<void>): Leadership {
    const lostSignal = signal();
    const resigned = signal();
    // Leadership ends when our key is gone or no longer ours, the lease is lost, or the store closes.
    void waitUntil(this.poller, 
      async (state, now) => {
        const entry = liveEntry(state, key, now);
        return entry === undefined || entry.lease !== lease.id;
      },
      [leaseLost, this.closedSignal.promise, resigned.promise],
      // Watching a leadership does not keep the process alive; a campaign being awaited does.
      true,
    )
      .catch(() => undefined)
      .then(() => lostSignal.fire());
    return {
      lost: lostSignal.promise,
      resign: async () => {
        if (lostSignal.done) return;
        this.assertOpen();
        try {
          await this.mutate((tx) => {
            if (tx.state.keys.get(key)?.lease === lease.id) tx.delete([key]);
          });
        } catch (error) {
          throw asHotPatchError(error, `cannot resign from election ${election}`);
        }
        resigned.fire();
        lostSignal.fire();
      },
    };
  }

  async leader(election: string): Promise<string | undefined> {
    checkElectionName(election);
    return this.get(this.electionKey(election));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.closedSignal.fire();
    await Promise.all([...this.stoppers].map((stop) => stop()));
    // Leases stop renewing (their keys vanish at the TTL, as after a crash); `lost` resolves.
    for (const lease of this.leases) lease.markLost();
    this.leases.clear();
    // Let a mutation in flight finish before returning.
    await this.mutex;
  }
}

import { randomBytes, randomInt } from 'node:crypto';
import { constants, promises as fsp } from 'node:fs';
import path from 'node:path';
import { HotPatchError, decodeJson, describe } from '../core/index.js';
import { readFileBounded, writeFileAtomic } from '../repo/atomic-file.js';
import type { KeyValue, KvStore, Lease, Leadership, WatchEvent } from './kv-store.js';
import { signal } from './one-shot-signal.js';

/**
 * `EmbeddedStore`: the single-host `KvStore`, a directory holding one JSON document
 * (`store.json`) that several processes on the same host share safely (an approver runs
 * `hotpatch approve` from a shell while the agent process waits for the quorum).
 *
 * File format (`store.json`, written with `writeFileAtomic`: temp file, fsync, rename, fsync
 * the directory, so a reader sees the old or the new document, never a torn one):
 * ```json
 * { "format": 1, "revision": 7,
 *   "keys":   { "/a": { "value": "…", "modRevision": 7, "lease": "123" } },
 *   "leases": { "123": { "ttlMs": 5000, "expiresAt": 1767225600000 } },
 *   "events": [ { "revision": 7, "type": "put", "key": "/a", "value": "…" } ] }
 * ```
 * `revision` counts changes of the key space (as etcd's does: a lease grant or renewal does
 * not bump it). `events` is an addition to the brief's format: the last changes (whole
 * revisions, at least `EVENT_LOG_SIZE` events) so a watcher replays every change exactly,
 * in order, instead of diffing snapshots; a watcher that fell further behind than the log
 * falls back to a diff (changes between two of its polls are then coalesced).
 *
 * Mutations: step 1 take the in-process mutex (one instance never races itself); step 2
 * take the cross-process lock (`store.lock`, created with `O_CREAT|O_EXCL`, holding
 * `{pid, time, token}`); step 3 re-read `store.json`; step 4 expire leases (delete their
 * keys); step 5 apply; step 6 write atomically (only when something changed); step 7
 * release the lock (only if it still holds our token).
 *
 * Stale locks: a lock whose pid is not alive on this host (`kill(pid, 0)` → `ESRCH`), or
 * older than `lockStaleMs` (default 10 s; a mutation takes milliseconds, so a holder that
 * old is hung), is broken: renamed away atomically (only one breaker wins the rename),
 * checked to be the very lock judged stale, then removed. A lock file left empty by a crash
 * between create and write is judged by its mtime.
 *
 * Leases are wall-clock times shared by every process on the host: a lease whose
 * `expiresAt` has passed is treated as gone by every read at once, and its keys are deleted
 * (with delete events) by the next mutation of any process, or by any watcher's poll.
 * Renewal runs on an unref'd timer every `ttlMs / 3`.
 *
 * Watches poll: `fs.watch` is unreliable across renames, so every `pollMs` (default 50 ms)
 * a watcher `stat`s the file and re-reads it when it changed (and at least once a second
 * regardless, as a rename can reuse an inode within one timestamp tick).
 *
 * `requestCount` counts reads of `store.json`: every read operation (get, list, leader),
 * every locked read-modify-write cycle (put, create, compareAndSwap, delete, lease grant,
 * renewal and revocation, campaign attempts, resign), every read by a watch or a campaign
 * poll. A poll whose `stat` shows an unchanged file costs a `stat` only and is not counted.
 *
 * Errors: a missing `store.json` is an empty store; unreadable or malformed content is
 * `PARSE` (not JSON / not UTF-8) or `INVALID` (wrong shape), never silently reset; a file
 * larger than `maxFileBytes` is `TOO_LARGE`; file-system failures and a lock that cannot be
 * taken within `lockTimeoutMs` are `IO`; a put with a lease that no longer exists is
 * `NOT_FOUND` (as with etcd); bad arguments are `INVALID`; an operation on a closed store is
 * `INVALID`; a campaign cut short by `close()` or by the loss of its lease is `ABORTED`.
 */

export const STORE_FILE = 'store.json';
export const LOCK_FILE = 'store.lock';
export const STORE_FORMAT = 1;
/** At least this many recent events stay in `store.json` for watchers to replay. */
export const EVENT_LOG_SIZE = 256;

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
/** Watch polls that trust an unchanged `stat` before re-reading anyway. */
const FORCED_READ_EVERY = 20;

// --- shared argument checks (also used by EtcdStore) ---

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

/** Keys in etcd's order: by UTF-8 bytes. */
export function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

export function sleep(ms: number, unref = false): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    if (unref) timer.unref();
  });
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function errnoOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

function asHotPatchError(error: unknown, what: string): HotPatchError {
  if (error instanceof HotPatchError) return error;
  return new HotPatchError('IO', `${what}: ${messageOf(error)}`, { cause: error });
}

// --- the document ---

interface StoredKey {
  value: string;
  modRevision: number;
  lease?: string;
}

interface StoredLease {
  ttlMs: number;
  expiresAt: number;
}

interface StoredEvent {
  revision: number;
  type: 'put' | 'delete';
  key: string;
  value?: string;
}

interface StoreState {
  revision: number;
  keys: Map<string, StoredKey>;
  leases: Map<string, StoredLease>;
  events: StoredEvent[];
}

function emptyState(): StoreState {
  return { revision: 0, keys: new Map(), leases: new Map(), events: [] };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function revisionField(value: unknown, where: string, max: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1 || value > max) {
    throw new HotPatchError('INVALID', `${where} must be an integer from 1 to the store revision ${max}, got ${describe(value)}`);
  }
  return value;
}

/** Checks the whole document; any deviation is `INVALID`, naming the field. */
function validateState(doc: unknown, file: string): StoreState {
  const bad = (message: string): HotPatchError => new HotPatchError('INVALID', `store file ${file}: ${message}`);
  if (!isRecord(doc)) throw bad(`must be a JSON object, got ${describe(doc)}`);
  for (const field of Object.keys(doc)) {
    if (!['format', 'revision', 'keys', 'leases', 'events'].includes(field)) throw bad(`unknown field ${JSON.stringify(field)}`);
  }
  if (doc.format !== STORE_FORMAT) throw bad(`format must be ${STORE_FORMAT}, got ${describe(doc.format)}`);
  const revision = doc.revision;
  if (typeof revision !== 'number' || !Number.isSafeInteger(revision) || revision < 0) {
    throw bad(`revision must be a non-negative integer, got ${describe(revision)}`);
  }
  if (!isRecord(doc.keys)) throw bad(`keys must be an object, got ${describe(doc.keys)}`);
  if (!isRecord(doc.leases)) throw bad(`leases must be an object, got ${describe(doc.leases)}`);
  const leases = new Map<string, StoredLease>();
  for (const [id, raw] of Object.entries(doc.leases)) {
    const where = `leases[${JSON.stringify(id)}]`;
    if (!/^[1-9][0-9]{0,19}$/.test(id)) throw bad(`${where}: lease id must be a decimal string`);
    if (!isRecord(raw)) throw bad(`${where} must be an object`);
    const { ttlMs, expiresAt } = raw;
    if (typeof ttlMs !== 'number' || !Number.isSafeInteger(ttlMs) || ttlMs < 1) throw bad(`${where}.ttlMs must be a positive integer`);
    if (typeof expiresAt !== 'number' || !Number.isSafeInteger(expiresAt) || expiresAt < 0) {
      throw bad(`${where}.expiresAt must be a time in milliseconds`);
    }
    leases.set(id, { ttlMs, expiresAt });
  }
  const keys = new Map<string, StoredKey>();
  for (const [key, raw] of Object.entries(doc.keys)) {
    const where = `keys[${JSON.stringify(key.length > 80 ? `${key.slice(0, 80)}…` : key)}]`;
    if (!isRecord(raw)) throw bad(`${where} must be an object`);
    if (key.length === 0) throw bad('a key is empty');
    if (typeof raw.value !== 'string') throw bad(`${where}.value must be a string`);
    const modRevision = (() => {
      try {
        return revisionField(raw.modRevision, `${where}.modRevision`, revision);
      } catch (error) {
        throw bad(messageOf(error));
      }
    })();
    const entry: StoredKey = { value: raw.value, modRevision };
    if (raw.lease !== undefined) {
      if (typeof raw.lease !== 'string' || !leases.has(raw.lease)) throw bad(`${where}.lease names no lease of the store`);
      entry.lease = raw.lease;
    }
    keys.set(key, entry);
  }
  const events: StoredEvent[] = [];
  if (doc.events !== undefined) {
    if (!Array.isArray(doc.events)) throw bad('events must be an array');
    let previous = 0;
    for (const [i, raw] of doc.events.entries()) {
      const where = `events[${i}]`;
      if (!isRecord(raw)) throw bad(`${where} must be an object`);
      const r = raw.revision;
      if (typeof r !== 'number' || !Number.isSafeInteger(r) || r < Math.max(previous, 1) || r > revision) {
        throw bad(`${where}.revision must be an integer, ascending, at most the store revision`);
      }
      previous = r;
      if (raw.type !== 'put' && raw.type !== 'delete') throw bad(`${where}.type must be "put" or "delete"`);
      if (typeof raw.key !== 'string' || raw.key.length === 0) throw bad(`${where}.key must be a non-empty string`);
      if (raw.type === 'put' && typeof raw.value !== 'string') throw bad(`${where}.value must be a string`);
      events.push(raw.type === 'put' ? { revision: r, type: 'put', key: raw.key, value: raw.value as string } : { revision: r, type: 'delete', key: raw.key });
    }
  }
  return { revision, keys, leases, events };
}

function serialize(state: StoreState): string {
  const doc = {
    format: STORE_FORMAT,
    revision: state.revision,
    // Object.fromEntries defines own properties, so a key named "__proto__" stays a key.
    keys: Object.fromEntries(state.keys),
    leases: Object.fromEntries(state.leases),
    events: state.events,
  };
  return `${JSON.stringify(doc)}\n`;
}

/** Does `state` hold a lease whose time has passed? */
function hasExpired(state: StoreState, now: number): boolean {
  for (const lease of state.leases.values()) if (lease.expiresAt <= now) return true;
  return false;
}

/** The earliest lease expiry, or Infinity. */
function nextExpiry(state: StoreState): number {
  let next = Infinity;
  for (const lease of state.leases.values()) next = Math.min(next, lease.expiresAt);
  return next;
}

/** A key as readers see it: absent when its lease has expired, even before cleanup. */
function liveEntry(state: StoreState, key: string, now: number): StoredKey | undefined {
  const entry = state.keys.get(key);
  if (entry === undefined) return undefined;
  if (entry.lease !== undefined) {
    const lease = state.leases.get(entry.lease);
    if (lease === undefined || lease.expiresAt <= now) return undefined;
  }
  return entry;
}

/** Live keys under `prefix`, in etcd's key order. */
function liveEntries(state: StoreState, prefix: string, now: number): Array<[string, StoredKey]> {
  const out: Array<[string, StoredKey]> = [];
  for (const key of state.keys.keys()) {
    if (!key.startsWith(prefix)) continue;
    const entry = liveEntry(state, key, now);
    if (entry !== undefined) out.push([key, entry]);
  }
  return out.sort((a, b) => compareKeys(a[0], b[0]));
}

/** Mutation helpers over a state under the lock; each records its events. */
class Transaction {
  changed = false;
  private pending: StoredEvent[] = [];
  constructor(readonly state: StoreState) {}

  /** Starts a new revision for the changes that follow (one per logical operation). */
  private bump(): number {
    this.state.revision += 1;
    this.changed = true;
    return this.state.revision;
  }

  put(key: string, value: string, lease?: string): void {
    const revision = this.bump();
    this.state.keys.set(key, lease === undefined ? { value, modRevision: revision } : { value, modRevision: revision, lease });
    this.pending.push({ revision, type: 'put', key, value });
  }

  /** Deletes several keys in one revision; nothing when none exists. */
  delete(keys: readonly string[]): void {
    const present = keys.filter((k) => this.state.keys.has(k));
    if (present.length === 0) return;
    const revision = this.bump();
    for (const key of present) {
      this.state.keys.delete(key);
      this.pending.push({ revision, type: 'delete', key });
    }
  }

  /** Removes a lease and deletes its keys (one revision). */
  dropLease(id: string): void {
    if (!this.state.leases.delete(id)) return;
    this.changed = true;
    const owned = [...this.state.keys].filter(([, e]) => e.lease === id).map(([k]) => k);
    this.delete(owned);
  }

  expire(now: number): void {
    for (const [id, lease] of [...this.state.leases]) if (lease.expiresAt <= now) this.dropLease(id);
  }

  markChanged(): void {
    this.changed = true;
  }

  /** Appends the events, keeping at least EVENT_LOG_SIZE of them, cut at a revision boundary. */
  commitEvents(): void {
    if (this.pending.length === 0) return;
    const events = [...this.state.events, ...this.pending];
    let cut = Math.max(0, events.length - EVENT_LOG_SIZE);
    while (cut > 0 && cut < events.length && events[cut]!.revision === events[cut - 1]!.revision) cut -= 1;
    this.state.events = events.slice(cut);
    this.pending = [];
  }
}

// --- the lock ---

interface LockInfo {
  pid?: number;
  time?: number;
  token?: string;
}

function pidAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return errnoOf(error) === 'EPERM';
  }
}

async function readLock(file: string): Promise<{ raw: string; info: LockInfo; mtimeMs: number } | undefined> {
  try {
    const [raw, st] = await Promise.all([fsp.readFile(file, 'utf8'), fsp.stat(file)]);
    let info: LockInfo = {};
    try {
      const parsed = JSON.parse(raw) as unknown;
      if (isRecord(parsed)) {
        info = {
          ...(Number.isSafeInteger(parsed.pid) && (parsed.pid as number) > 0 ? { pid: parsed.pid as number } : {}),
          ...(Number.isSafeInteger(parsed.time) ? { time: parsed.time as number } : {}),
          ...(typeof parsed.token === 'string' ? { token: parsed.token } : {}),
        };
      }
    } catch {
      // an empty or partial lock (its creator crashed before writing it): judged by mtime below
    }
    return { raw, info, mtimeMs: st.mtimeMs };
  } catch (error) {
    if (errnoOf(error) === 'ENOENT') return undefined;
    throw new HotPatchError('IO', `cannot read lock ${file}: ${messageOf(error)}`, { cause: error });
  }
}

/** Why a lock is stale, or undefined when it is held. */
function staleReason(lock: { info: LockInfo; mtimeMs: number }, staleMs: number, now: number): string | undefined {
  const { pid } = lock.info;
  if (pid !== undefined && !pidAlive(pid)) return `its holder pid ${pid} is not running`;
  const time = lock.info.time ?? lock.mtimeMs;
  if (now - time > staleMs) return `it is ${now - time} ms old (limit ${staleMs} ms)`;
  return undefined;
}

/**
 * Takes `file` exclusively; resolves to the release function. See the module comment for the
 * stale-lock rule. Fails with `IO` after `timeoutMs`.
 */
async function acquireLock(file: string, staleMs: number, timeoutMs: number): Promise<() => Promise<void>> {
  const token = randomBytes(12).toString('hex');
  const started = Date.now();
  let wait = 2;
  let lastHolder: LockInfo | undefined;
  for (;;) {
    try {
      const handle = await fsp.open(file, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY | constants.O_NOFOLLOW, 0o600);
      try {
        await handle.writeFile(JSON.stringify({ pid: process.pid, time: Date.now(), token }));
      } finally {
        await handle.close();
      }
      return async () => {
        // Remove the lock only if it is still ours (it may have been broken as stale).
        const current = await readLock(file);
        if (current?.info.token !== token) return;
        try {
          await fsp.unlink(file);
        } catch (error) {
          if (errnoOf(error) !== 'ENOENT') {
            throw new HotPatchError('IO', `cannot remove lock ${file}: ${messageOf(error)}`, { cause: error });
          }
        }
      };
    } catch (error) {
      if (errnoOf(error) !== 'EEXIST') throw asHotPatchError(error, `cannot create lock ${file}`);
    }
    const lock = await readLock(file);
    if (lock === undefined) continue; // released meanwhile: try again at once
    lastHolder = lock.info;
    const now = Date.now();
    if (staleReason(lock, staleMs, now) !== undefined) {
      await breakLock(file, lock.raw);
      continue;
    }
    if (now - started > timeoutMs) {
      throw new HotPatchError(
        'IO',
        `cannot lock the store: ${file} is held by pid ${lastHolder.pid ?? '?'} since ${lastHolder.time === undefined ? '?' : new Date(lastHolder.time).toISOString()}; gave up after ${timeoutMs} ms`,
        { detail: { lock: file, ...(lastHolder.pid === undefined ? {} : { pid: lastHolder.pid }) } },
      );
    }
    await sleep(wait + randomInt(0, wait + 1));
    wait = Math.min(wait * 2, 25);
  }
}

/**
 * Breaks a stale lock whose content was `staleRaw`: rename it away (atomic: one breaker
 * wins), then make sure the renamed file is the lock judged stale. If a fresh lock was
 * renamed instead (a holder took it between our read and our rename), it is put back.
 */
async function breakLock(file: string, staleRaw: string): Promise<void> {
  const aside = `${file}.stale.${process.pid}.${randomBytes(6).toString('hex')}`;
  try {
    await fsp.rename(file, aside);
  } catch (error) {
    if (errnoOf(error) === 'ENOENT') return; // someone else broke or released it
    throw asHotPatchError(error, `cannot break stale lock ${file}`);
  }
  try {
    const raw = await fsp.readFile(aside, 'utf8');
    if (raw !== staleRaw) {
      try {
        await fsp.link(aside, file);
      } catch {
        // a new lock exists already; the one we moved lost its file (its release is a no-op)
      }
    }
  } finally {
    await fsp.rm(aside, { force: true });
  }
}

// --- the store ---

class EmbeddedLease implements Lease {
  readonly lost: Promise<void>;
  private readonly lostSignal = signal();
  private renewTimer: NodeJS.Timeout | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  private renewing = false;
  /** Our best knowledge of when the lease runs out. */
  expiresAt: number;

  constructor(
    private readonly store: EmbeddedStore,
    readonly id: string,
    readonly ttlMs: number,
    expiresAt: number,
  ) {
    this.lost = this.lostSignal.promise;
    this.expiresAt = expiresAt;
    this.renewTimer = setInterval(() => void this.renew(), Math.max(10, Math.floor(ttlMs / 3)));
    this.renewTimer.unref();
    this.armExpiry();
  }

  get isLost(): boolean {
    return this.lostSignal.done;
  }

  /** Resolves `lost` when the known expiry passes without a renewal. */
  private armExpiry(): void {
    if (this.expiryTimer !== undefined) clearTimeout(this.expiryTimer);
    this.expiryTimer = setTimeout(() => {
      if (Date.now() >= this.expiresAt) this.markLost();
      else this.armExpiry();
    }, Math.max(0, this.expiresAt - Date.now()));
    this.expiryTimer.unref();
  }

  private async renew(): Promise<void> {
    if (this.renewTimer === undefined || this.renewing) return;
    this.renewing = true;
    try {
      const expiresAt = await this.store.renewLease(this.id);
      if (expiresAt === undefined) {
        this.markLost();
        return;
      }
      if (this.lostSignal.done) return;
      // Even after release(): the file now says this, so the keys live until then.
      this.expiresAt = expiresAt;
      this.armExpiry();
    } catch {
      // A failed renewal (lock contention, I/O) is retried on the next tick; the expiry
      // timer still ends the lease at its known expiry if none succeeds.
    } finally {
      this.renewing = false;
    }
  }

  stopRenewing(): void {
    if (this.renewTimer !== undefined) clearInterval(this.renewTimer);
    this.renewTimer = undefined;
  }

  markLost(): void {
    this.stopRenewing();
    if (this.expiryTimer !== undefined) clearTimeout(this.expiryTimer);
    this.expiryTimer = undefined;
    this.lostSignal.fire();
  }

  async revoke(): Promise<void> {
    this.stopRenewing();
    await this.store.revokeLease(this.id);
    this.markLost();
  }

  release(): void {
    // Keys stay until the TTL runs out; `lost` resolves at the last known expiry.
    this.stopRenewing();
  }
}

interface FileStamp {
  ino: bigint;
  size: bigint;
  mtimeNs: bigint;
}

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

  private constructor(dir: string, options: EmbeddedStoreOptions) {
    this.dir = path.resolve(dir);
    this.file = path.join(this.dir, STORE_FILE);
    this.lockFile = path.join(this.dir, LOCK_FILE);
    this.pollMs = checkPositiveInt(options.pollMs, 'pollMs', DEFAULT_POLL_MS);
    this.lockStaleMs = checkPositiveInt(options.lockStaleMs, 'lockStaleMs', DEFAULT_LOCK_STALE_MS);
    this.lockTimeoutMs = checkPositiveInt(options.lockTimeoutMs, 'lockTimeoutMs', DEFAULT_LOCK_TIMEOUT_MS);
    this.maxFileBytes = checkPositiveInt(options.maxFileBytes, 'maxFileBytes', DEFAULT_MAX_FILE_BYTES);
    if (options.onWatchError !== undefined && typeof options.onWatchError !== 'function') {
      throw new HotPatchError('INVALID', `onWatchError must be a function, got ${describe(options.onWatchError)}`);
    }
    this.onWatchError =
      options.onWatchError ?? ((error) => process.emitWarning(`embedded store watch: ${error.message}`, { code: `HOTPATCH_${error.code}` }));
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

  private async stamp(): Promise<FileStamp | undefined> {
    try {
      const st = await fsp.stat(this.file, { bigint: true });
      return { ino: st.ino, size: st.size, mtimeNs: st.mtimeNs };
    } catch (error) {
      if (errnoOf(error) === 'ENOENT') return undefined;
      throw new HotPatchError('IO', `cannot stat store file ${this.file}: ${messageOf(error)}`, { cause: error });
    }
  }

  private assertOpen(): void {
    if (this.closed) throw new HotPatchError('INVALID', `embedded store ${this.dir} is closed`);
  }

  /**
   * The locked read-modify-write cycle (steps 1-7 of the module comment). `apply` may throw;
   * nothing is written then.
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
      // step 2
      const release = await acquireLock(this.lockFile, this.lockStaleMs, this.lockTimeoutMs);
      let outcome: { result: T; state: StoreState };
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
        if (tx.changed) {
          tx.commitEvents();
          const text = serialize(state);
          const size = Buffer.byteLength(text, 'utf8');
          if (size > this.maxFileBytes) {
            throw new HotPatchError('TOO_LARGE', `store file ${this.file} would grow to ${size} bytes, more than the limit of ${this.maxFileBytes}; nothing written`, {
              detail: { limit: this.maxFileBytes, size },
            });
          }
          await writeFileAtomic(this.file, text, { mode: 0o600 });
        }
        outcome = { result, state };
      } catch (error) {
        // step 7 (on failure): the primary error wins; a failing release is secondary
        await release().catch(() => undefined);
        throw error;
      }
      // step 7
      await release();
      return outcome;
    } finally {
      unlock();
    }
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
    const initial = await this.readState();
    let stamp = await this.stamp();
    let revision = initial.revision;
    let known = new Map(liveEntries(initial, prefix, Date.now()).map(([k, e]) => [k, e.value] as const));
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
      const current = await this.stamp();
      const unchanged =
        current !== undefined && stamp !== undefined && current.ino === stamp.ino && current.size === stamp.size && current.mtimeNs === stamp.mtimeNs;
      if (unchanged && now < expiry && polls % FORCED_READ_EVERY !== 0) return;
      let state = await this.readState();
      if (hasExpired(state, now)) {
        // The poll is an operation too: expired leases lose their keys now (with events).
        ({ state } = await this.mutate(() => undefined));
      }
      stamp = await this.stamp();
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
        const live = new Map(liveEntries(state, prefix, now).map(([k, e]) => [k, e.value] as const));
        for (const [k, v] of live) if (known.get(k) !== v) deliver({ type: 'put', key: k, value: v });
        for (const k of known.keys()) if (!live.has(k)) deliver({ type: 'delete', key: k });
      }
      revision = state.revision;
      known = new Map(liveEntries(state, prefix, now).map(([k, e]) => [k, e.value] as const));
    };

    // One poll at a time: a slow poll (lock contention) skips ticks instead of queueing them.
    let running: Promise<void> | undefined;
    const timer = setInterval(() => {
      if (stopped || running !== undefined) return;
      running = poll()
        .catch((error: unknown) => {
          if (!stopped) this.onWatchError(asHotPatchError(error, `watching ${prefix} in ${this.dir}`));
        })
        .finally(() => {
          running = undefined;
        });
    }, this.pollMs);

    const stop = async (): Promise<void> => {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      this.stoppers.delete(stop);
      if (running !== undefined) await running;
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
      await this.waitUntil(async (state, now) => liveEntry(state, key, now) === undefined, [leaseLost, this.closedSignal.promise]);
    }
  }

  /**
   * Polls the file every `pollMs` until `ready(state)` holds or one of `interrupts` settles.
   * Reads only when the file changed (or a lease may have expired, or every second anyway).
   */
  private async waitUntil(
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
      const current = await this.stamp();
      const unchanged =
        polls > 0 && current !== undefined && stamp !== undefined && current.ino === stamp.ino && current.size === stamp.size && current.mtimeNs === stamp.mtimeNs;
      polls += 1;
      if (!unchanged || now >= expiry || polls % FORCED_READ_EVERY === 0) {
        stamp = current;
        const state = await this.readState();
        expiry = nextExpiry(state);
        if (await ready(state, now)) return;
      }
      await Promise.race([sleep(this.pollMs, unref), onInterrupt]);
    }
  }

  private leadership(election: string, key: string, lease: Lease, leaseLost: Promise<void>): Leadership {
    const lostSignal = signal();
    const resigned = signal();
    // Leadership ends when our key is gone or no longer ours, the lease is lost, or the store closes.
    void this.waitUntil(
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

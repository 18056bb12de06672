import { HotPatchError, asObject, describe, rejectUnknownFields } from '../core/index.js';
import { compareKeys, messageOf } from './store-checks.js';

/**
 * The embedded store's document (`store.json`) in memory: its shape, its validation, its
 * serialization, and the mutation helpers a writer applies to it under the lock.
 *
 * ```json
 * { "format": 1, "revision": 7,
 *   "keys":   { "/a": { "value": "…", "modRevision": 7, "lease": "123" } },
 *   "leases": { "123": { "ttlMs": 5000, "expiresAt": 1767225600000 } },
 *   "events": [ { "revision": 7, "type": "put", "key": "/a", "value": "…" } ] }
 * ```
 * `revision` counts changes of the key space (as etcd's does: a lease grant or renewal does
 * not bump it). `events` is an addition to the original format: the last changes (whole
 * revisions, at least `EVENT_LOG_SIZE` events) so a watcher replays every change exactly,
 * in order, instead of diffing snapshots; a watcher that fell further behind than the log
 * falls back to a diff (changes between two of its polls are then coalesced).
 */

export const STORE_FORMAT = 1;
/** At least this many recent events stay in `store.json` for watchers to replay. */
export const EVENT_LOG_SIZE = 256;

export interface StoredKey {
  value: string;
  modRevision: number;
  lease?: string;
}

export interface StoredLease {
  ttlMs: number;
  expiresAt: number;
}

export interface StoredEvent {
  revision: number;
  type: 'put' | 'delete';
  key: string;
  value?: string;
}

export interface StoreState {
  revision: number;
  keys: Map<string, StoredKey>;
  leases: Map<string, StoredLease>;
  events: StoredEvent[];
}

export function emptyState(): StoreState {
  return { revision: 0, keys: new Map(), leases: new Map(), events: [] };
}

function revisionField(value: unknown, where: string, max: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1 || value > max) {
    throw new HotPatchError('INVALID', `${where} must be an integer from 1 to the store revision ${max}, got ${describe(value)}`);
  }
  return value;
}

const STORE_FIELDS = ['format', 'revision', 'keys', 'leases', 'events'];

/** Checks the whole document; any deviation is `INVALID`, naming the field. */
export function validateState(value: unknown, file: string): StoreState {
  const bad = (message: string): HotPatchError => new HotPatchError('INVALID', `store file ${file}: ${message}`);
  const objectAt = (v: unknown, where: string): Record<string, unknown> => asObject(v, `store file ${file}: ${where}`);
  const doc = asObject(value, `store file ${file}`);
  rejectUnknownFields(doc, STORE_FIELDS, `store file ${file}`);
  if (doc.format !== STORE_FORMAT) throw bad(`format must be ${STORE_FORMAT}, got ${describe(doc.format)}`);
  const revision = doc.revision;
  if (typeof revision !== 'number' || !Number.isSafeInteger(revision) || revision < 0) {
    throw bad(`revision must be a non-negative integer, got ${describe(revision)}`);
  }
  const docKeys = objectAt(doc.keys, 'keys');
  const docLeases = objectAt(doc.leases, 'leases');
  const leases = new Map<string, StoredLease>();
  for (const [id, value] of Object.entries(docLeases)) {
    const where = `leases[${JSON.stringify(id)}]`;
    if (!/^[1-9][0-9]{0,19}$/.test(id)) throw bad(`${where}: lease id must be a decimal string`);
    const { ttlMs, expiresAt } = objectAt(value, where);
    if (typeof ttlMs !== 'number' || !Number.isSafeInteger(ttlMs) || ttlMs < 1) throw bad(`${where}.ttlMs must be a positive integer`);
    if (typeof expiresAt !== 'number' || !Number.isSafeInteger(expiresAt) || expiresAt < 0) {
      throw bad(`${where}.expiresAt must be a time in milliseconds`);
    }
    leases.set(id, { ttlMs, expiresAt });
  }
  const keys = new Map<string, StoredKey>();
  for (const [key, value] of Object.entries(docKeys)) {
    const where = `keys[${JSON.stringify(key.length > 80 ? `${key.slice(0, 80)}…` : key)}]`;
    const raw = objectAt(value, where);
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
    for (const [i, value] of doc.events.entries()) {
      const where = `events[${i}]`;
      const raw = objectAt(value, where);
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

export function serialize(state: StoreState): string {
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
export function hasExpired(state: StoreState, now: number): boolean {
  for (const lease of state.leases.values()) if (lease.expiresAt <= now) return true;
  return false;
}

/** The earliest lease expiry, or Infinity. */
export function nextExpiry(state: StoreState): number {
  let next = Infinity;
  for (const lease of state.leases.values()) next = Math.min(next, lease.expiresAt);
  return next;
}

/** A key as readers see it: absent when its lease has expired, even before cleanup. */
export function liveEntry(state: StoreState, key: string, now: number): StoredKey | undefined {
  const entry = state.keys.get(key);
  if (entry === undefined) return undefined;
  if (entry.lease !== undefined) {
    const lease = state.leases.get(entry.lease);
    if (lease === undefined || lease.expiresAt <= now) return undefined;
  }
  return entry;
}

/** Live keys under `prefix` and their values, in no particular order (what a watcher compares). */
export function liveValues(state: StoreState, prefix: string, now: number): Map<string, string> {
  const out = new Map<string, string>();
  for (const key of state.keys.keys()) {
    if (!key.startsWith(prefix)) continue;
    const entry = liveEntry(state, key, now);
    if (entry !== undefined) out.set(key, entry.value);
  }
  return out;
}

/** Live keys under `prefix`, in etcd's key order. */
export function liveEntries(state: StoreState, prefix: string, now: number): Array<[string, StoredKey]> {
  const out: Array<[string, StoredKey]> = [];
  for (const key of state.keys.keys()) {
    if (!key.startsWith(prefix)) continue;
    const entry = liveEntry(state, key, now);
    if (entry !== undefined) out.push([key, entry]);
  }
  return out.sort((a, b) => compareKeys(a[0], b[0]));
}

/** Mutation helpers over a state under the lock; each records its events. */
export class Transaction {
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

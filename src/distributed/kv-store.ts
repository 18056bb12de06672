/**
 * The storage primitives every consensus backend provides: a linearizable key-value store
 * with compare-and-swap, prefix watches, leases (keys that vanish when their owner stops
 * renewing) and leader election. Two implementations: `EmbeddedStore` (one host, a
 * crash-safe file) and `EtcdStore` (a real Raft cluster through the `etcd3` client). Never a
 * home-made consensus: on a fleet, agreement is etcd's.
 *
 * Keys are `/`-separated strings; values are UTF-8 strings (JSON documents in practice).
 * Every method that reaches the backend throws HotPatchError('IO') when it cannot (a store
 * without quorum fails closed: it never answers from a stale copy).
 */
export interface KeyValue {
  key: string;
  value: string;
  /** The store revision that last modified the key (decimal string; compare with BigInt). */
  modRevision: string;
}

export interface WatchEvent {
  type: 'put' | 'delete';
  key: string;
  /** The new value (put only). */
  value?: string;
}

export interface Lease {
  /** Backend lease id (decimal string). */
  readonly id: string;
  readonly ttlMs: number;
  /** Resolves when the lease is gone: revoked, expired, or its keep-alive failed. */
  readonly lost: Promise<void>;
  /** Deletes every key attached to the lease now. */
  revoke(): Promise<void>;
  /** Stops renewing without revoking: the keys vanish when the TTL runs out (a "dead" owner). */
  release(): void;
}

export interface Leadership {
  /** Resolves when leadership ends (resigned, lease lost, store closed). */
  readonly lost: Promise<void>;
  resign(): Promise<void>;
}

export interface KvStore {
  readonly kind: 'embedded' | 'etcd';
  get(key: string): Promise<string | undefined>;
  /** Every key under `prefix`, sorted by key. */
  list(prefix: string): Promise<KeyValue[]>;
  put(key: string, value: string, options?: { lease?: Lease }): Promise<void>;
  /** Writes only when the key does not exist; false when it does (nothing written). */
  create(key: string, value: string, options?: { lease?: Lease }): Promise<boolean>;
  /** Writes only when the current value is `expected` (undefined = absent); false otherwise. */
  compareAndSwap(key: string, expected: string | undefined, value: string): Promise<boolean>;
  delete(key: string): Promise<void>;
  /** Calls `onEvent` for every change under `prefix` from now on; resolves to a stop function. */
  watch(prefix: string, onEvent: (event: WatchEvent) => void): Promise<() => Promise<void>>;
  /** A lease renewed automatically until `revoke`, `release` or `close`. */
  grantLease(ttlMs: number): Promise<Lease>;
  /** Blocks until `candidate` leads `election` (one leader at a time, tied to `lease`). */
  campaign(election: string, candidate: string, lease: Lease): Promise<Leadership>;
  /** The current leader's candidate id, if any. */
  leader(election: string): Promise<string | undefined>;
  /** Requests sent to the backend so far (the fleet benchmark reports them per agent). */
  readonly requestCount: number;
  close(): Promise<void>;
}

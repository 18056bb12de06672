import { Etcd3 } from 'etcd3';
import type { IOptions, IKeyValue, Lease as Etcd3Lease } from 'etcd3';
import { HotPatchError, describe, emitRedactedWarning } from '../core/index.js';
import { EtcdElections } from './etcd-election.js';
import { checkEndpoint } from './etcd-endpoints.js';
import { EtcdLease } from './etcd-lease.js';
import { EtcdOperations } from './etcd-operations.js';
import { callRetry, memberCircuit, watchBackoff } from './etcd-policies.js';
import { EtcdWatchers } from './etcd-watchers.js';
import type { KeyValue, KvStore, Lease, Leadership, WatchEvent } from './kv-store.js';
import { checkCandidate, checkElectionName, checkKey, checkLease, checkPositiveInt, checkPrefix, checkTtlMs, checkValue } from './store-checks.js';

/**
 * `EtcdStore`: the fleet `KvStore`, over a real etcd cluster (Raft) through the `etcd3`
 * client. Agreement is etcd's: this class only maps the interface onto etcd's primitives.
 *
 * Failing closed. Every operation has one deadline (`callTimeoutMs`, default 3 s), retries
 * included, so a cluster without quorum fails within about `callTimeoutMs` with
 * `HotPatchError('IO', '… (etcd unreachable or without quorum)')`; it never answers from a
 * member's stale copy (reads are linearizable, etcd's default). How an operation runs, and
 * how its failures are reported: `etcd-operations.ts`.
 *
 * Retries (cockatiel policies, `etcd-policies.ts`):
 * - idempotent operations (get, list, leader, put, delete, lease grant / revoke, the steps
 *   of a campaign, resign) run each attempt with a shorter deadline (`attemptTimeoutMs`,
 *   default a third of the call timeout) and retry on another member while the operation's
 *   deadline allows: a request lost with a crashed Raft leader is re-sent once a new leader
 *   is elected, within the call;
 * - create and compareAndSwap are not idempotent: a retry after an ambiguous failure could
 *   report "lost" for a write that won. They get one attempt with the whole deadline, and
 *   are re-sent only when the request surely never left (the member refused the
 *   connection, or its circuit was open);
 * - a member that refused a connection is skipped for `memberBackoffMs` (default 1 s).
 *
 * A write that fails with `IO` has an unknown outcome (its message says "the write may or
 * may not have been applied", `detail.outcome` is `"unknown"`): it may sit in a Raft log
 * and commit when quorum returns. Callers re-read before acting on such a failure. A lease
 * grant retried after an ambiguous failure may leave an orphan lease on the server; it holds
 * no key and expires after its TTL.
 *
 * Error codes: `IO` (unreachable, no quorum, deadline, permission), `NOT_FOUND` (a put with
 * a lease that no longer exists, as the embedded store does), `INVALID` (bad arguments, a
 * closed store), `ABORTED` (a campaign cut short by `close()` or by the loss of its lease).
 *
 * Leases (`etcd-lease.ts`): the TTL is rounded up to whole seconds (etcd's unit), at least
 * 1 s; `ttlMs` of the lease reports the effective TTL. etcd3 keeps it alive (every TTL/3).
 * `lost` resolves on etcd3's `lost` event (revoked or expired on the server), on `revoke()`,
 * or when no renewal has succeeded for a whole TTL (the server may have expired it: a holder
 * cut off from the cluster must assume so; etcd3 alone would wait two TTLs). After
 * `release()` it resolves one TTL after the last renewal, when the keys are gone.
 *
 * Elections: etcd's own protocol, in etcd3's key layout (`etcd-election.ts`). Watches resume
 * after a disconnection from the last revision seen, so no event is lost unless etcd
 * compacted it meanwhile (then `onWatchError`) (`etcd-watchers.ts`).
 *
 * `requestCount` counts every unary RPC attempt sent (get, range, put, txn, delete, lease
 * grant / revoke; each retry counts), every stream opened (watch, lease keep-alive), every
 * keep-alive message sent on a stream, and every watch-create request (one per watcher, and
 * again on each reconnection). An attempt a member's open circuit refused is not counted.
 */

export interface EtcdStoreOptions {
  /** Client URLs, `http://host:port` (or `https://`). */
  endpoints: readonly string[];
  /** Deadline of one operation, retries included (default 3000 ms). */
  callTimeoutMs?: number;
  /** Deadline of one attempt of an idempotent operation (default a third of `callTimeoutMs`, at least 200 ms). */
  attemptTimeoutMs?: number;
  /** How long a member that refused a connection is skipped (default 1000 ms). */
  memberBackoffMs?: number;
  /**
   * Called when a watch fails for good (etcd cancels it, e.g. compacted history); the other
   * watches go on. Default: `process.emitWarning`. Disconnections are retried silently.
   */
  onWatchError?: (error: HotPatchError) => void;
  /** More etcd3 client options (credentials, auth, grpcOptions, faultHandling). */
  etcd?: Omit<IOptions, 'hosts' | 'defaultCallOptions'>;
}

const DEFAULT_CALL_TIMEOUT_MS = 3000;

/** See the module comment. */
export class EtcdStore implements KvStore {
  readonly kind = 'etcd' as const;
  readonly endpoints: readonly string[];
  private readonly client: Etcd3;
  private readonly operations: EtcdOperations;
  private readonly watchers: EtcdWatchers;
  private readonly elections: EtcdElections;
  private readonly onWatchError: (error: HotPatchError) => void;
  private readonly leases = new Set<EtcdLease>();

  constructor(options: EtcdStoreOptions) {
    if (typeof options !== 'object' || options === null) {
      throw new HotPatchError('INVALID', `options must be an object, got ${describe(options)}`);
    }
    if (!Array.isArray(options.endpoints) || options.endpoints.length === 0) {
      throw new HotPatchError('INVALID', `endpoints must be a non-empty array of URLs, got ${describe(options.endpoints)}`);
    }
    this.endpoints = options.endpoints.map((e, i) => checkEndpoint(e, i));
    const callTimeoutMs = checkPositiveInt(options.callTimeoutMs, 'callTimeoutMs', DEFAULT_CALL_TIMEOUT_MS);
    const attemptTimeoutMs = Math.min(
      callTimeoutMs,
      checkPositiveInt(options.attemptTimeoutMs, 'attemptTimeoutMs', Math.max(200, Math.floor(callTimeoutMs / 3))),
    );
    const memberBackoffMs = checkPositiveInt(options.memberBackoffMs, 'memberBackoffMs', 1000);
    if (options.onWatchError !== undefined && typeof options.onWatchError !== 'function') {
      throw new HotPatchError('INVALID', `onWatchError must be a function, got ${describe(options.onWatchError)}`);
    }
    this.onWatchError = options.onWatchError ?? ((error) => emitRedactedWarning(`etcd store watch: ${error.message}`, { code: `HOTPATCH_${error.code}` }));
    this.operations = new EtcdOperations(this.endpoints, callTimeoutMs, attemptTimeoutMs);
    this.client = new Etcd3({
      ...options.etcd,
      hosts: [...this.endpoints],
      defaultCallOptions: this.operations.callOptions,
      faultHandling: {
        host: () => memberCircuit(memberBackoffMs),
        global: callRetry(this.operations.contexts),
        watchBackoff: watchBackoff(Math.max(1000, callTimeoutMs)),
        ...options.etcd?.faultHandling,
      },
    });
    this.watchers = new EtcdWatchers(this.operations);
    this.elections = new EtcdElections(this.client, this.operations, this.watchers);
  }

  get requestCount(): number {
    return this.operations.requestCount;
  }

  // --- KvStore ---

  async get(key: string): Promise<string | undefined> {
    checkKey(key);
    const value = await this.operations.call(`get ${key}`, () => this.client.get(key).string(), 'read');
    return value ?? undefined;
  }

  async list(prefix: string): Promise<KeyValue[]> {
    checkPrefix(prefix);
    const res = await this.operations.call(`list ${prefix}`, () => this.client.getAll().prefix(prefix).sort('Key', 'Ascend').exec(), 'read');
    return res.kvs.map((kv) => ({ key: kv.key.toString('utf8'), value: kv.value.toString('utf8'), modRevision: String(kv.mod_revision) }));
  }

  private putOp(key: string, value: string, lease: Lease | undefined) {
    const op = this.client.put(key).value(value);
    return lease === undefined ? op : op.lease(lease.id);
  }

  async put(key: string, value: string, options: { lease?: Lease } = {}): Promise<void> {
    checkKey(key);
    checkValue(value);
    const lease = options.lease === undefined ? undefined : checkLease(options.lease, 'options.lease');
    await this.operations.call(`put ${key}`, () => this.putOp(key, value, lease).exec(), 'write');
  }

  async create(key: string, value: string, options: { lease?: Lease } = {}): Promise<boolean> {
    checkKey(key);
    checkValue(value);
    const lease = options.lease === undefined ? undefined : checkLease(options.lease, 'options.lease');
    const res = await this.operations.call(
      `create ${key}`,
      () =>
        this.client
          .if(key, 'Version', '==', 0)
          .then(this.putOp(key, value, lease))
          .commit(),
      'transaction',
    );
    return res.succeeded;
  }

  async compareAndSwap(key: string, expected: string | undefined, value: string): Promise<boolean> {
    checkKey(key);
    if (expected !== undefined) checkValue(expected, 'expected');
    checkValue(value);
    const res = await this.operations.call(
      `compare-and-swap ${key}`,
      () =>
        (expected === undefined ? this.client.if(key, 'Version', '==', 0) : this.client.if(key, 'Value', '==', expected))
          .then(this.putOp(key, value, undefined))
          .commit(),
      'transaction',
    );
    return res.succeeded;
  }

  async delete(key: string): Promise<void> {
    checkKey(key);
    await this.operations.call(`delete ${key}`, () => this.client.delete().key(key).exec(), 'write');
  }

  async watch(prefix: string, onEvent: (event: WatchEvent) => void): Promise<() => Promise<void>> {
    checkPrefix(prefix);
    if (typeof onEvent !== 'function') throw new HotPatchError('INVALID', `onEvent must be a function, got ${describe(onEvent)}`);
    const watcher = await this.watchers.open(
      `watch ${prefix}`,
      () => this.client.watch().prefix(prefix).watcher(),
      (w) => {
        w.on('put', (kv: IKeyValue) => onEvent({ type: 'put', key: kv.key.toString('utf8'), value: kv.value.toString('utf8') }));
        w.on('delete', (kv: IKeyValue) => onEvent({ type: 'delete', key: kv.key.toString('utf8') }));
        w.on('error', (error: Error) => {
          if (this.watchers.has(w)) this.onWatchError(this.operations.toError(error, `watch ${prefix}`));
        });
      },
    );
    let stopped = false;
    return async () => {
      if (stopped) return;
      stopped = true;
      await this.watchers.cancel(watcher);
    };
  }

  async grantLease(ttlMs: number): Promise<Lease> {
    checkTtlMs(ttlMs);
    this.operations.assertOpen();
    const ttlSeconds = Math.max(1, Math.ceil(ttlMs / 1000));
    const sentAt = Date.now();
    let inner = undefined as Etcd3Lease | undefined;
    let id: string;
    try {
      id = await this.operations.call(
        `grant lease (${ttlSeconds} s)`,
        () => {
          // etcd3 sends the grant from the constructor: inside the call, so it gets its context.
          const created = this.client.lease(ttlSeconds);
          inner = created;
          // etcd3 reports a failed grant as 'lost' too; a listener keeps that from being unhandled.
          created.on('lost', () => undefined);
          return created.grant();
        },
        'write',
      );
    } catch (error) {
      inner?.release();
      throw error;
    }
    if (inner === undefined) throw new HotPatchError('IO', 'lease grant returned no lease');
    const lease = new EtcdLease(this.operations, inner, String(id), ttlSeconds * 1000, sentAt);
    this.leases.add(lease);
    void lease.lost.then(() => this.leases.delete(lease));
    return lease;
  }

  async campaign(election: string, candidate: string, lease: Lease): Promise<Leadership> {
    checkElectionName(election);
    checkCandidate(candidate);
    checkLease(lease);
    return this.elections.campaign(election, candidate, lease);
  }

  async leader(election: string): Promise<string | undefined> {
    checkElectionName(election);
    return this.elections.leader(election);
  }

  async close(): Promise<void> {
    if (this.operations.closed) return;
    this.operations.close();
    await this.watchers.cancelAll();
    // Leases stop renewing (their keys vanish at the TTL, as after a crash); `lost` resolves.
    for (const lease of this.leases) lease.markLost();
    this.leases.clear();
    this.client.close();
  }
}

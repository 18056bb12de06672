import { AsyncLocalStorage } from 'node:async_hooks';
import {
  ClientClosedError,
  Etcd3,
  EtcdAuthenticationFailedError,
  EtcdLeaseInvalidError,
  EtcdPermissionDeniedError,
} from 'etcd3';
import type { IOptions, IKeyValue, Lease as Etcd3Lease, Watcher } from 'etcd3';
import { HotPatchError, describe, emitRedactedWarning } from '../core/index.js';
import {
  checkCandidate,
  checkElectionName,
  checkKey,
  checkLease,
  checkPositiveInt,
  checkPrefix,
  checkTtlMs,
  checkValue,
} from './embedded-store.js';
import type { KeyValue, KvStore, Lease, Leadership, WatchEvent } from './kv-store.js';
import { signal } from './one-shot-signal.js';
import { EtcdLease } from './etcd-lease.js';
import { cappedBackoff, checkEndpoint, memberPolicy, messageOf, neverSent, retryPolicy, type OperationContext } from './etcd-policies.js';

/**
 * `EtcdStore`: the fleet `KvStore`, over a real etcd cluster (Raft) through the `etcd3`
 * client. Agreement is etcd's: this class only maps the interface onto etcd's primitives.
 *
 * Failing closed. Every operation has one deadline (`callTimeoutMs`, default 3 s), retries
 * included, enforced by gRPC deadlines and by an outer timer. A cluster without quorum
 * therefore fails within about `callTimeoutMs` with
 * `HotPatchError('IO', '… (etcd unreachable or without quorum)')`; it never answers from a
 * member's stale copy (reads are linearizable, etcd's default).
 *
 * Retries (replacing etcd3's default policies, which retry any request 3 times and open a
 * member's circuit for 5 s after 3 failures):
 * - idempotent operations (get, list, leader, put, delete, lease grant / revoke, the steps
 *   of a campaign, resign) run each attempt with a shorter deadline (`attemptTimeoutMs`,
 *   default a third of the call timeout) and retry on another member while the operation's
 *   deadline allows: a request lost with a crashed Raft leader is re-sent once a new leader
 *   is elected, within the call;
 * - create and compareAndSwap are not idempotent: a retry after an ambiguous failure could
 *   report "lost" for a write that won. They get one attempt with the whole deadline, and
 *   are re-sent only when the request surely never left (the member refused the
 *   connection, or was skipped);
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
 * Leases: the TTL is rounded up to whole seconds (etcd's unit), at least 1 s; `ttlMs` of the
 * lease reports the effective TTL. etcd3 keeps it alive (every TTL/3). `lost` resolves on
 * etcd3's `lost` event (revoked or expired on the server), on `revoke()`, or when no renewal
 * has succeeded for a whole TTL (the server may have expired it: a holder cut off from the
 * cluster must assume so; etcd3 alone would wait two TTLs). After `release()` it resolves
 * one TTL after the last renewal, when the keys are gone.
 *
 * Elections follow etcd's own protocol (Go `concurrency.Election`, etcd3's `Campaign`) in
 * etcd3's key layout, `election/<name>/<lease id>` = candidate, so etcd3's
 * `client.election(name).leader()` / `observe()` read the same election. The one
 * difference from etcd3's `Campaign`: the key is attached to the caller's lease (etcd3's
 * Campaign grants a lease of its own, which could not be tied to the caller's agent
 * registration). The leader is the key with the lowest create revision; a candidate waits
 * for the deletion of the last key created before its own.
 *
 * `requestCount` counts: every unary RPC attempt sent (get, range, put, txn, delete, lease
 * grant / revoke; each retry counts), every stream opened (watch, lease keep-alive), every
 * keep-alive message sent on a stream, and every watch-create request (one per watcher, and
 * again on each reconnection). Counted where etcd3 resolves call options, so an attempt
 * skipped by the member policy (no network traffic) is not counted.
 *
 * Watches resume after a disconnection from the last revision seen (etcd3), so no event is
 * lost unless etcd compacted it meanwhile (then `onWatchError`). A watch served by a member
 * that is cut off from the quorum receives nothing until it reconnects (etcd3 cannot ask
 * etcd to cancel watches without a leader), so a leadership never relies on its watch
 * alone: the lease watchdog ends it when renewals stop.
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
/** The election namespace of etcd3's `Election` class. */
const ELECTION_PREFIX = 'election/';
const QUORUM_HINT = '(etcd unreachable or without quorum)';

/**
 * One AsyncLocalStorage for every store of the process: on Node 20 each instance adds work
 * to every promise created anywhere, so one per store made 200 in-process agents cost
 * quadratically. Each operation runs in its own context, so sharing is safe.
 */
const OPERATIONS = new AsyncLocalStorage<OperationContext>();

/** See the module comment. */
export class EtcdStore implements KvStore {
  readonly kind = 'etcd' as const;
  readonly endpoints: readonly string[];
  private readonly client: Etcd3;
  private readonly callTimeoutMs: number;
  private readonly attemptTimeoutMs: number;
  private readonly operations = OPERATIONS;
  private readonly onWatchError: (error: HotPatchError) => void;
  private requests = 0;
  private closed = false;
  private readonly closedSignal = signal();
  private readonly leases = new Set<EtcdLease>();
  private readonly watchers = new Set<Watcher>();

  constructor(options: EtcdStoreOptions) {
    if (typeof options !== 'object' || options === null) {
      throw new HotPatchError('INVALID', `options must be an object, got ${describe(options)}`);
    }
    if (!Array.isArray(options.endpoints) || options.endpoints.length === 0) {
      throw new HotPatchError('INVALID', `endpoints must be a non-empty array of URLs, got ${describe(options.endpoints)}`);
    }
    this.endpoints = options.endpoints.map((e, i) => checkEndpoint(e, i));
    this.callTimeoutMs = checkPositiveInt(options.callTimeoutMs, 'callTimeoutMs', DEFAULT_CALL_TIMEOUT_MS);
    this.attemptTimeoutMs = Math.min(
      this.callTimeoutMs,
      checkPositiveInt(options.attemptTimeoutMs, 'attemptTimeoutMs', Math.max(200, Math.floor(this.callTimeoutMs / 3))),
    );
    const memberBackoffMs = checkPositiveInt(options.memberBackoffMs, 'memberBackoffMs', 1000);
    if (options.onWatchError !== undefined && typeof options.onWatchError !== 'function') {
      throw new HotPatchError('INVALID', `onWatchError must be a function, got ${describe(options.onWatchError)}`);
    }
    this.onWatchError =
      options.onWatchError ?? ((error) => emitRedactedWarning(`etcd store watch: ${error.message}`, { code: `HOTPATCH_${error.code}` }));
    this.client = new Etcd3({
      ...options.etcd,
      hosts: [...this.endpoints],
      // Called by etcd3 for every call it sends (each attempt): the request count, and the
      // attempt's deadline. Streams (watch, keep-alive) have none.
      defaultCallOptions: (context) => {
        this.requests += 1;
        if (context.isStream) return {};
        const op = this.operations.getStore();
        const now = Date.now();
        if (op === undefined) return { deadline: now + this.callTimeoutMs };
        return { deadline: op.idempotent ? Math.min(op.deadline, now + this.attemptTimeoutMs) : op.deadline };
      },
      faultHandling: {
        host: (host) => memberPolicy(host, memberBackoffMs),
        global: retryPolicy(this.operations),
        watchBackoff: cappedBackoff(50, Math.max(1000, this.callTimeoutMs)),
        ...options.etcd?.faultHandling,
      },
    });
  }

  get requestCount(): number {
    return this.requests;
  }

  /** @internal */
  countRequest(): void {
    this.requests += 1;
  }

  private assertOpen(): void {
    if (this.closed) throw new HotPatchError('INVALID', `etcd store (${this.endpoints.join(',')}) is closed`);
  }

  /** Any failure of an etcd call, as a HotPatchError. */
  private mapError(error: unknown, what: string, write?: OperationContext): HotPatchError {
    if (error instanceof HotPatchError) return error;
    if (error instanceof EtcdLeaseInvalidError) {
      return new HotPatchError('NOT_FOUND', `${what}: the lease is gone (expired or revoked)`, { cause: error });
    }
    if (error instanceof ClientClosedError) {
      return new HotPatchError('INVALID', `${what}: the etcd store is closed`, { cause: error });
    }
    const denied = error instanceof EtcdPermissionDeniedError || error instanceof EtcdAuthenticationFailedError;
    // A write that timed out may still be in a Raft log and commit when quorum returns.
    const unknownOutcome =
      write !== undefined && (write.maybeDelivered || !neverSent(error)) && !denied && !(error instanceof EtcdLeaseInvalidError);
    const hint = denied ? '' : unknownOutcome ? ` ${QUORUM_HINT.slice(0, -1)}; the write may or may not have been applied)` : ` ${QUORUM_HINT}`;
    return new HotPatchError('IO', `${what} failed: ${messageOf(error)}${hint}`, {
      cause: error,
      detail: { endpoints: [...this.endpoints], ...(unknownOutcome ? { outcome: 'unknown' } : {}) },
    });
  }

  /**
   * @internal Runs one operation: its context (deadline, idempotence) is seen by the retry
   * policy and the call-options factory of every etcd3 call it makes; an outer timer bounds
   * anything that would hang past the deadline; errors are mapped.
   */
  async call<T>(what: string, run: () => Promise<T>, kind: 'read' | 'write' | 'transaction'): Promise<T> {
    this.assertOpen();
    const op: OperationContext = { deadline: Date.now() + this.callTimeoutMs, idempotent: kind !== 'transaction', maybeDelivered: false };
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`no answer within ${this.callTimeoutMs} ms`)),
        // gRPC enforces the deadlines itself; this only catches what would hang past them.
        this.callTimeoutMs + 250,
      );
    });
    try {
      return await Promise.race([this.operations.run(op, run), timeout]);
    } catch (error) {
      throw this.mapError(error, what, kind === 'read' ? undefined : op);
    } finally {
      clearTimeout(timer);
    }
  }

  // --- KvStore ---

  async get(key: string): Promise<string | undefined> {
    checkKey(key);
    const value = await this.call(`get ${key}`, () => this.client.get(key).string(), 'read');
    return value ?? undefined;
  }

  async list(prefix: string): Promise<KeyValue[]> {
    checkPrefix(prefix);
    const res = await this.call(`list ${prefix}`, () => this.client.getAll().prefix(prefix).sort('Key', 'Ascend').exec(), 'read');
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
    await this.call(`put ${key}`, () => this.putOp(key, value, lease).exec(), 'write');
  }

  async create(key: string, value: string, options: { lease?: Lease } = {}): Promise<boolean> {
    checkKey(key);
    checkValue(value);
    const lease = options.lease === undefined ? undefined : checkLease(options.lease, 'options.lease');
    const res = await this.call(`create ${key}`, () =>
      this.client.if(key, 'Version', '==', 0).then(this.putOp(key, value, lease)).commit(),
      'transaction',
    );
    return res.succeeded;
  }

  async compareAndSwap(key: string, expected: string | undefined, value: string): Promise<boolean> {
    checkKey(key);
    if (expected !== undefined) checkValue(expected, 'expected');
    checkValue(value);
    const res = await this.call(`compare-and-swap ${key}`, () =>
      (expected === undefined ? this.client.if(key, 'Version', '==', 0) : this.client.if(key, 'Value', '==', expected))
        .then(this.putOp(key, value, undefined))
        .commit(),
      'transaction',
    );
    return res.succeeded;
  }

  async delete(key: string): Promise<void> {
    checkKey(key);
    await this.call(`delete ${key}`, () => this.client.delete().key(key).exec(), 'write');
  }

  /** Creates an etcd3 watcher and waits (within the deadline) until etcd confirmed it. */
  private async openWatcher(what: string, build: () => Watcher, setup: (watcher: Watcher) => void): Promise<Watcher> {
    this.assertOpen();
    const watcher = build();
    watcher.on('connecting', () => this.countRequest());
    setup(watcher);
    this.watchers.add(watcher);
    try {
      await this.call(
        what,
        () =>
          new Promise<void>((resolve, reject) => {
            watcher.once('connected', () => resolve());
            watcher.once('error', reject);
          }),
        'read',
      );
    } catch (error) {
      await this.cancelWatcher(watcher);
      throw error;
    }
    return watcher;
  }

  /** Cancels a watcher; bounded, since a dead connection may never confirm the cancel. */
  private async cancelWatcher(watcher: Watcher): Promise<void> {
    if (!this.watchers.delete(watcher)) return;
    watcher.removeAllListeners('put');
    watcher.removeAllListeners('delete');
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      watcher.cancel().catch(() => undefined),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, this.callTimeoutMs);
      }),
    ]);
    clearTimeout(timer);
  }

  async watch(prefix: string, onEvent: (event: WatchEvent) => void): Promise<() => Promise<void>> {
    checkPrefix(prefix);
    if (typeof onEvent !== 'function') throw new HotPatchError('INVALID', `onEvent must be a function, got ${describe(onEvent)}`);
    const watcher = await this.openWatcher(
      `watch ${prefix}`,
      () => this.client.watch().prefix(prefix).watcher(),
      (w) => {
        w.on('put', (kv: IKeyValue) => onEvent({ type: 'put', key: kv.key.toString('utf8'), value: kv.value.toString('utf8') }));
        w.on('delete', (kv: IKeyValue) => onEvent({ type: 'delete', key: kv.key.toString('utf8') }));
        w.on('error', (error: Error) => {
          if (this.watchers.has(w)) this.onWatchError(this.mapError(error, `watch ${prefix}`));
        });
      },
    );
    let stopped = false;
    return async () => {
      if (stopped) return;
      stopped = true;
      await this.cancelWatcher(watcher);
    };
  }

  async grantLease(ttlMs: number): Promise<Lease> {
    checkTtlMs(ttlMs);
    this.assertOpen();
    const ttlSeconds = Math.max(1, Math.ceil(ttlMs / 1000));
    const sentAt = Date.now();
    let inner = undefined as Etcd3Lease | undefined;
    let id: string;
    try {
      id = await this.call(`grant lease (${ttlSeconds} s)`, () => {
        // etcd3 sends the grant from the constructor: inside the call, so it gets its context.
        const created = this.client.lease(ttlSeconds);
        inner = created;
        // etcd3 reports a failed grant as 'lost' too; a listener keeps that from being unhandled.
        created.on('lost', () => undefined);
        return created.grant();
      }, 'write');
    } catch (error) {
      inner?.release();
      throw error;
    }
    if (inner === undefined) throw new HotPatchError('IO', 'lease grant returned no lease');
    const lease = new EtcdLease(this, inner, String(id), ttlSeconds * 1000, sentAt);
    this.leases.add(lease);
    void lease.lost.then(() => this.leases.delete(lease));
    return lease;
  }

  /** Waits for `key` to be deleted (watching from `revision`), or until `interrupt` settles. */
  private async waitForDelete(key: string, revision: string, interrupt: Promise<void>): Promise<void> {
    const deleted = signal();
    const watcher = await this.openWatcher(
      `watch ${key}`,
      () => this.client.watch().key(key).startRevision(revision).only('delete').watcher(),
      (w) => {
        w.on('delete', () => deleted.fire());
        w.on('error', () => deleted.fire()); // re-checked by the caller's loop
      },
    );
    try {
      await Promise.race([deleted.promise, interrupt]);
    } finally {
      await this.cancelWatcher(watcher);
    }
  }

  async campaign(election: string, candidate: string, lease: Lease): Promise<Leadership> {
    checkElectionName(election);
    checkCandidate(candidate);
    checkLease(lease);
    this.assertOpen();
    const prefix = `${ELECTION_PREFIX}${election}/`;
    const key = `${prefix}${lease.id}`;
    const leaseLost = lease.lost instanceof Promise ? lease.lost : new Promise<void>(() => undefined);
    let lostLease = false;
    void leaseLost.then(() => {
      lostLease = true;
    });
    const interrupt = Promise.race([leaseLost, this.closedSignal.promise]);
    const checkInterrupted = (): void => {
      if (this.closed) throw new HotPatchError('ABORTED', `campaign for ${election} ended: the store was closed`);
      if (lostLease) throw new HotPatchError('ABORTED', `campaign for ${election} ended: lease ${lease.id} was lost`);
    };

    // step 1: our key, created with our lease; or found, when this lease campaigned before.
    const res = await this.call(`campaign ${election}`, () =>
      this.client.if(key, 'Create', '==', 0).then(this.putOp(key, candidate, lease)).else(this.client.get(key)).commit(),
      'write', // a retry finds our own key in the else branch
    );
    let createRevision: bigint;
    if (res.succeeded) {
      createRevision = BigInt(res.header.revision);
    } else {
      const kv = res.responses[0]?.response_range?.kvs[0];
      if (kv === undefined) throw new HotPatchError('IO', `campaign ${election}: our key vanished during the campaign ${QUORUM_HINT}`);
      createRevision = BigInt(kv.create_revision);
      if (kv.value.toString('utf8') !== candidate) {
        const update = await this.call(`campaign ${election}`, () =>
          this.client.if(key, 'Create', '==', String(createRevision)).then(this.putOp(key, candidate, lease)).commit(),
          'write',
        );
        if (!update.succeeded) throw new HotPatchError('ABORTED', `campaign for ${election} ended: lease ${lease.id} was lost`);
      }
    }

    // step 2: wait until no key of the election was created before ours.
    while (createRevision > 1n) {
      checkInterrupted();
      const before = await this.call(`campaign ${election}`, () =>
        this.client
          .getAll()
          .prefix(prefix)
          .maxCreateRevision(String(createRevision - 1n))
          .sort('Create', 'Descend')
          .limit(1)
          .exec(),
        'read',
      );
      const previous = before.kvs[0];
      if (previous === undefined) break;
      await this.waitForDelete(previous.key.toString('utf8'), before.header.revision, interrupt);
    }
    checkInterrupted();

    // step 3: still ours? (the lease may have run out while we waited)
    const mine = await this.call(`campaign ${election}`, () => this.client.get(key).exec(), 'read');
    const kv = mine.kvs[0];
    if (kv === undefined || String(kv.lease) !== lease.id) {
      throw new HotPatchError('ABORTED', `campaign for ${election} ended: lease ${lease.id} was lost`);
    }
    return this.leadership(election, key, createRevision, mine.header.revision, leaseLost);
  }

  private async leadership(election: string, key: string, createRevision: bigint, revision: string, leaseLost: Promise<void>): Promise<Leadership> {
    const lostSignal = signal();
    // Leadership ends when our key is deleted (from the revision we checked it at), the
    // lease is lost, the store closes, or we resign.
    const watcher = await this.openWatcher(
      `watch ${key}`,
      () => this.client.watch().key(key).startRevision(String(BigInt(revision) + 1n)).only('delete').watcher(),
      (w) => {
        w.on('delete', () => lostSignal.fire());
        w.on('error', () => lostSignal.fire()); // cannot tell any more: step down
      },
    );
    void Promise.race([leaseLost, this.closedSignal.promise]).then(() => lostSignal.fire());
    void lostSignal.promise.then(() => this.cancelWatcher(watcher));
    return {
      lost: lostSignal.promise,
      resign: async () => {
        if (lostSignal.done) return;
        await this.call(`resign from ${election}`, () =>
          this.client.if(key, 'Create', '==', String(createRevision)).then(this.client.delete().key(key)).commit(),
          'write',
        );
        lostSignal.fire();
      },
    };
  }

  async leader(election: string): Promise<string | undefined> {
    checkElectionName(election);
    const prefix = `${ELECTION_PREFIX}${election}/`;
    const res = await this.call(`leader of ${election}`, () =>
      this.client.getAll().prefix(prefix).sort('Create', 'Ascend').limit(1).exec(),
      'read',
    );
    return res.kvs[0]?.value.toString('utf8');
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.closedSignal.fire();
    await Promise.all([...this.watchers].map((w) => this.cancelWatcher(w)));
    // Leases stop renewing (their keys vanish at the TTL, as after a crash); `lost` resolves.
    for (const lease of this.leases) lease.markLost();
    this.leases.clear();
    this.client.close();
  }
}

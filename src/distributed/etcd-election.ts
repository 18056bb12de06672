import type { Etcd3 } from 'etcd3';
import { HotPatchError } from '../core/index.js';
import type { EtcdOperations } from './etcd-operations.js';
import { QUORUM_HINT } from './etcd-operations.js';
import type { EtcdWatchers } from './etcd-watchers.js';
import type { Lease, Leadership } from './kv-store.js';
import { signal } from './one-shot-signal.js';

/** The election namespace of etcd3's `Election` class. */
const ELECTION_PREFIX = 'election/';

/**
 * Leader election on etcd, following etcd's own protocol (Go `concurrency.Election`, etcd3's
 * `Campaign`) in etcd3's key layout, `election/<name>/<lease id>` = candidate, so etcd3's
 * `client.election(name).leader()` / `observe()` read the same election. The one difference
 * from etcd3's `Campaign`: the key is attached to the caller's lease (etcd3's grants a lease
 * of its own, which could not be tied to the caller's agent registration). The leader is the
 * key with the lowest create revision; a candidate waits for the deletion of the last key
 * created before its own. Arguments are checked by the store.
 */
export class EtcdElections {
  constructor(
    private readonly client: Etcd3,
    private readonly operations: EtcdOperations,
    private readonly watchers: EtcdWatchers,
  ) {}

  /** Blocks until `candidate` leads `election`; ABORTED when the store closes or `lease` is lost first. */
  async campaign(election: string, candidate: string, lease: Lease): Promise<Leadership> {
    this.operations.assertOpen();
    const call = this.operations.call.bind(this.operations);
    const prefix = `${ELECTION_PREFIX}${election}/`;
    const key = `${prefix}${lease.id}`;
    const leaseLost = lease.lost instanceof Promise ? lease.lost : new Promise<void>(() => undefined);
    let lostLease = false;
    void leaseLost.then(() => {
      lostLease = true;
    });
    const interrupt = Promise.race([leaseLost, this.operations.whenClosed]);
    const checkInterrupted = (): void => {
      if (this.operations.closed) throw new HotPatchError('ABORTED', `campaign for ${election} ended: the store was closed`);
      if (lostLease) throw new HotPatchError('ABORTED', `campaign for ${election} ended: lease ${lease.id} was lost`);
    };
    const putOurs = () => this.client.put(key).value(candidate).lease(lease.id);

    // step 1: our key, created with our lease; or found, when this lease campaigned before.
    const res = await call(
      `campaign ${election}`,
      () => this.client.if(key, 'Create', '==', 0).then(putOurs()).else(this.client.get(key)).commit(),
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
        const update = await call(`campaign ${election}`, () => this.client.if(key, 'Create', '==', String(createRevision)).then(putOurs()).commit(), 'write');
        if (!update.succeeded) throw new HotPatchError('ABORTED', `campaign for ${election} ended: lease ${lease.id} was lost`);
      }
    }

    // step 2: wait until no key of the election was created before ours.
    while (createRevision > 1n) {
      checkInterrupted();
      const before = await call(
        `campaign ${election}`,
        () =>
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
      await this.#waitForDelete(previous.key.toString('utf8'), before.header.revision, interrupt);
    }
    checkInterrupted();

    // step 3: still ours? (the lease may have run out while we waited)
    const mine = await call(`campaign ${election}`, () => this.client.get(key).exec(), 'read');
    const kv = mine.kvs[0];
    if (kv === undefined || String(kv.lease) !== lease.id) {
      throw new HotPatchError('ABORTED', `campaign for ${election} ended: lease ${lease.id} was lost`);
    }
    return this.#leadership(election, key, createRevision, mine.header.revision, leaseLost);
  }

  /** The current leader's candidate id, if any. */
  async leader(election: string): Promise<string | undefined> {
    const prefix = `${ELECTION_PREFIX}${election}/`;
    const res = await this.operations.call(`leader of ${election}`, () => this.client.getAll().prefix(prefix).sort('Create', 'Ascend').limit(1).exec(), 'read');
    return res.kvs[0]?.value.toString('utf8');
  }

  /** Waits for `key` to be deleted (watching from `revision`), or until `interrupt` settles. */
  async #waitForDelete(key: string, revision: string, interrupt: Promise<void>): Promise<void> {
    const deleted = signal();
    const watcher = await this.watchers.open(
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
      await this.watchers.cancel(watcher);
    }
  }

  async #leadership(election: string, key: string, createRevision: bigint, revision: string, leaseLost: Promise<void>): Promise<Leadership> {
    const lostSignal = signal();
    // Leadership ends when our key is deleted (from the revision we checked it at), the
    // lease is lost, the store closes, or we resign.
    const watcher = await this.watchers.open(
      `watch ${key}`,
      () =>
        this.client
          .watch()
          .key(key)
          .startRevision(String(BigInt(revision) + 1n))
          .only('delete')
          .watcher(),
      (w) => {
        w.on('delete', () => lostSignal.fire());
        w.on('error', () => lostSignal.fire()); // cannot tell any more: step down
      },
    );
    void Promise.race([leaseLost, this.operations.whenClosed]).then(() => lostSignal.fire());
    void lostSignal.promise.then(() => this.watchers.cancel(watcher));
    return {
      lost: lostSignal.promise,
      resign: async () => {
        if (lostSignal.done) return;
        await this.operations.call(
          `resign from ${election}`,
          () => this.client.if(key, 'Create', '==', String(createRevision)).then(this.client.delete().key(key)).commit(),
          'write',
        );
        lostSignal.fire();
      },
    };
  }
}

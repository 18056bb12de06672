import { HotPatchError } from '../core/index.js';
import { type Transaction, liveEntry } from './embedded-document.js';
import { type PollSource, waitUntil } from './embedded-poll.js';
import type { EmbeddedWriter } from './embedded-writer.js';
import type { Lease, Leadership } from './kv-store.js';
import { signal } from './one-shot-signal.js';
import { asHotPatchError } from './store-checks.js';

/** What elections need of their embedded store. */
export interface ElectionStore {
  readonly writer: EmbeddedWriter;
  readonly poller: PollSource;
  isClosed(): boolean;
  /** Resolves when the store is closed. */
  readonly whenClosed: Promise<void>;
  assertOpen(): void;
}

/** The lease id to attach, checked under the lock: it must exist and not have expired. */
export function leaseFor(tx: Transaction, lease: Lease | undefined): string | undefined {
  if (lease === undefined) return undefined;
  if (!tx.state.leases.has(lease.id)) {
    throw new HotPatchError('NOT_FOUND', `lease ${lease.id} is gone (expired or revoked)`, { detail: { lease: lease.id } });
  }
  return lease.id;
}

/**
 * Leader election in the embedded store: the leader holds the key `/elections/<name>`,
 * attached to its lease. A candidate takes the key when it is free (deleted, or its lease
 * expired) or keeps it when it already holds it, and otherwise polls until it is free; a
 * leadership ends when the key is gone or no longer its own, its lease is lost, it resigns or
 * the store closes. Arguments are checked by the store.
 */
export class EmbeddedElections {
  constructor(private readonly store: ElectionStore) {}

  keyOf(election: string): string {
    return `/elections/${election}`;
  }

  async campaign(election: string, candidate: string, lease: Lease): Promise<Leadership> {
    this.store.assertOpen();
    const key = this.keyOf(election);
    const leaseLost = lease.lost instanceof Promise ? lease.lost : new Promise<void>(() => undefined);
    let lostLease = false;
    void leaseLost.then(() => {
      lostLease = true;
    });
    const aborted = (): HotPatchError | undefined => {
      if (this.store.isClosed()) return new HotPatchError('ABORTED', `campaign for ${election} ended: the store was closed`);
      if (lostLease) return new HotPatchError('ABORTED', `campaign for ${election} ended: lease ${lease.id} was lost`);
      return undefined;
    };
    for (;;) {
      const stop = aborted();
      if (stop !== undefined) throw stop;
      // Take the key when it is free, or keep it when it is already ours (same lease).
      const { result: elected } = await this.store.writer.mutate((tx) => {
        const current = tx.state.keys.get(key);
        if (current !== undefined && current.lease !== lease.id) return false;
        if (current?.value === candidate) return true;
        tx.put(key, candidate, leaseFor(tx, lease));
        return true;
      });
      if (elected) return this.#leadership(election, key, lease, leaseLost);
      // Wait until the key is free (deleted, or its lease expired), the lease is lost or the store closes.
      await waitUntil(this.store.poller, async (state, now) => liveEntry(state, key, now) === undefined, [leaseLost, this.store.whenClosed]);
    }
  }

  #leadership(election: string, key: string, lease: Lease, leaseLost: Promise<void>): Leadership {
    const lostSignal = signal();
    const resigned = signal();
    // Leadership ends when our key is gone or no longer ours, the lease is lost, or the store closes.
    void waitUntil(
      this.store.poller,
      async (state, now) => {
        const entry = liveEntry(state, key, now);
        return entry === undefined || entry.lease !== lease.id;
      },
      [leaseLost, this.store.whenClosed, resigned.promise],
      // Watching a leadership does not keep the process alive; a campaign being awaited does.
      true,
    )
      .catch(() => undefined)
      .then(() => lostSignal.fire());
    return {
      lost: lostSignal.promise,
      resign: async () => {
        if (lostSignal.done) return;
        this.store.assertOpen();
        try {
          await this.store.writer.mutate((tx) => {
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
}

import type { KeyValue, KvStore, Lease, Leadership, WatchEvent } from '../../distributed/index.js';

/** What a campaigning controller's election does, as `hotpatch fleet controller` reports it. */
export interface ElectionEvents {
  /** Another candidate leads: this one waits its turn. */
  standby(leader: string): void;
  /** This candidate won. */
  leading(): void;
  /** This candidate's leadership ended (resigned, lease lost, store closed). */
  lost(): void;
}

/**
 * A `KvStore` that passes everything through to the store and tells what happens to the
 * campaigns made through it. The FleetController says nothing about its election (it only
 * acts, or not); the command line must say "standby" and "leading" as they happen, so it
 * gives the controller this store: a campaign that does not win at once, with another
 * candidate leading, is a standby; one that wins is leading; its leadership's end is reported.
 */
export class ElectionReportingStore implements KvStore {
  constructor(
    private readonly inner: KvStore,
    private readonly events: ElectionEvents,
  ) {}

  get kind(): KvStore['kind'] {
    return this.inner.kind;
  }

  get requestCount(): number {
    return this.inner.requestCount;
  }

  async campaign(election: string, candidate: string, lease: Lease): Promise<Leadership> {
    let settled = false;
    const campaign = this.inner.campaign(election, candidate, lease);
    // Asked after the campaign started: a leader other than this candidate means it waits.
    void this.inner.leader(election).then(
      (leader) => {
        if (!settled && leader !== undefined && leader !== candidate) this.events.standby(leader);
      },
      () => undefined, // the campaign itself reports an unreachable store
    );
    try {
      const leadership = await campaign;
      settled = true;
      this.events.leading();
      void leadership.lost.then(() => this.events.lost());
      return leadership;
    } finally {
      settled = true;
    }
  }

  get(key: string): Promise<string | undefined> {
    return this.inner.get(key);
  }
  list(prefix: string): Promise<KeyValue[]> {
    return this.inner.list(prefix);
  }
  put(key: string, value: string, options?: { lease?: Lease }): Promise<void> {
    return this.inner.put(key, value, options);
  }
  create(key: string, value: string, options?: { lease?: Lease }): Promise<boolean> {
    return this.inner.create(key, value, options);
  }
  compareAndSwap(key: string, expected: string | undefined, value: string): Promise<boolean> {
    return this.inner.compareAndSwap(key, expected, value);
  }
  delete(key: string): Promise<void> {
    return this.inner.delete(key);
  }
  watch(prefix: string, onEvent: (event: WatchEvent) => void): Promise<() => Promise<void>> {
    return this.inner.watch(prefix, onEvent);
  }
  grantLease(ttlMs: number): Promise<Lease> {
    return this.inner.grantLease(ttlMs);
  }
  leader(election: string): Promise<string | undefined> {
    return this.inner.leader(election);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

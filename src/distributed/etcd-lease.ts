import type { Lease as Etcd3Lease } from 'etcd3';
import type { OperationKind } from './etcd-operations.js';
import type { Lease } from './kv-store.js';
import { signal } from './one-shot-signal.js';

/** What a lease needs of its store (`EtcdOperations`): to run a call under the store's deadline, and to count requests. */
export interface LeaseStore {
  call<T>(what: string, run: () => Promise<T>, kind: OperationKind): Promise<T>;
  countRequest(): void;
}

/**
 * An etcd lease kept alive by the client; `lost` resolves when etcd says so, or when no
 * renewal succeeded for a whole TTL (the server may have expired it: assume it has).
 */
export class EtcdLease implements Lease {
  readonly lost: Promise<void>;
  private readonly lostSignal = signal();
  /** When the last successful renewal was sent (a lower bound of the server's renewal). */
  private lastRenewal: number;
  private readonly fired: number[] = [];
  private watchdog: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: LeaseStore,
    private readonly inner: Etcd3Lease,
    readonly id: string,
    readonly ttlMs: number,
    grantSentAt: number,
  ) {
    this.lost = this.lostSignal.promise;
    this.lastRenewal = grantSentAt;
    inner.on('lost', () => this.markLost());
    inner.on('keepaliveFired', () => {
      store.countRequest();
      this.fired.push(Date.now());
      if (this.fired.length > 16) this.fired.shift();
    });
    inner.on('keepaliveEstablished', () => {
      this.fired.length = 0;
    });
    inner.on('keepaliveSucceeded', () => {
      this.lastRenewal = Math.max(this.lastRenewal, this.fired.shift() ?? Date.now());
    });
    this.armWatchdog();
  }

  /**
   * No renewal for a whole TTL: the server may have expired the lease; assume it has. One
   * timer, due one TTL after the last renewal; a renewal since it was armed only moves the
   * due time, so it re-arms when it fires early (no periodic wake-up per lease: a process
   * holding many leases, a benchmark's fleet, pays nothing between renewals).
   */
  private armWatchdog(): void {
    const due = this.lastRenewal + this.ttlMs - Date.now();
    if (due <= 0) {
      this.markLost();
      return;
    }
    this.watchdog = setTimeout(() => this.armWatchdog(), due);
    this.watchdog.unref();
  }

  get isLost(): boolean {
    return this.lostSignal.done;
  }

  markLost(): void {
    clearTimeout(this.watchdog);
    this.inner.release();
    this.lostSignal.fire();
  }

  async revoke(): Promise<void> {
    await this.store.call(`revoke lease ${this.id}`, () => this.inner.revoke(), 'write');
    this.markLost();
  }

  release(): void {
    // Stop renewing, do not revoke: the watchdog resolves `lost` one TTL after the last renewal.
    this.inner.release();
  }
}

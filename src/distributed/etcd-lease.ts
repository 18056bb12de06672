import type { Lease as Etcd3Lease } from 'etcd3';
import type { Lease } from './kv-store.js';
import { signal } from './one-shot-signal.js';

/** What a lease needs of its store: to run a call under the store's deadline, and to count requests. */
export interface LeaseStore {
  call<T>(what: string, run: () => Promise<T>, kind: 'read' | 'write' | 'transaction'): Promise<T>;
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
  private readonly watchdog: NodeJS.Timeout;

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
    // No renewal for a whole TTL: the server may have expired the lease; assume it has.
    this.watchdog = setInterval(() => {
      if (Date.now() - this.lastRenewal >= this.ttlMs) this.markLost();
    }, Math.min(250, Math.max(20, Math.floor(ttlMs / 8))));
    this.watchdog.unref();
  }

  get isLost(): boolean {
    return this.lostSignal.done;
  }

  markLost(): void {
    clearInterval(this.watchdog);
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

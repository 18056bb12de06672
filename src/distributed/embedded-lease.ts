import type { Lease } from './kv-store.js';
import { signal } from './one-shot-signal.js';

/** What a lease needs from its store: renewal and revocation, each one locked mutation. */
export interface LeaseHost {
  /** The lease's new expiry, or undefined when it is gone. */
  renewLease(id: string): Promise<number | undefined>;
  revokeLease(id: string): Promise<void>;
}

/**
 * A lease of the embedded store: a wall-clock expiry in `store.json`, renewed on an unref'd
 * timer every `ttlMs / 3`; `lost` resolves when the known expiry passes without a renewal.
 */
export class EmbeddedLease implements Lease {
  readonly lost: Promise<void>;
  private readonly lostSignal = signal();
  private renewTimer: NodeJS.Timeout | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  private renewing = false;
  /** Our best knowledge of when the lease runs out. */
  expiresAt: number;

  constructor(
    private readonly store: LeaseHost,
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
    this.expiryTimer = setTimeout(
      () => {
        if (Date.now() >= this.expiresAt) this.markLost();
        else this.armExpiry();
      },
      Math.max(0, this.expiresAt - Date.now()),
    );
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

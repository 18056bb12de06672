import { HotPatchError, describe, messageOf, parseTargetName } from '../core/index.js';
import type { KvStore, Lease } from './kv-store.js';
import { signAgentReport, storedAgentReportText } from './agent-report.js';
import type { AgentDocument, AgentTargetState, FleetHealth, FleetPhase, RolloutSigner } from './fleet-rollout.js';
import { sleep } from './fleet-timing.js';

/** What the host says about one target: the active version and its health. */
export interface TargetReport {
  target: string;
  version: string;
  /** The active patch (absent or null: the built-in implementation). */
  patchId?: string | null;
  health: FleetHealth;
  /** Overrides the phase the member tracks (rarely needed). */
  phase?: FleetPhase;
  reason?: string;
}

/** A change to one target's state; a field set to undefined is removed. */
export type TargetChange = { [K in keyof AgentTargetState]?: AgentTargetState[K] | undefined };

export interface AgentRegistrationOptions {
  /** The agent's key, `<prefix>/agents/<agentId>`. */
  key: string;
  agentId: string;
  ring: number;
  /** Written in the document as they are (checked by the caller: `parseLabels`). */
  labels?: Record<string, string>;
  ttlMs: number;
  /** The agent's own key (key id = agent id, checked by the caller): every write is then a signed report. */
  signer?: RolloutSigner;
  onError: (error: unknown) => void;
}

/**
 * An agent's presence in the fleet: its key, attached to a lease (renewed by the store, so a
 * dead agent drops out when the TTL runs out), and the document written there — per target,
 * the version, phase and health the agent runs.
 *
 * Writes: one at a time, the latest state wins, and only when the text changed. A write waits
 * for the end of the current turn of the event loop, so changes made together go out as one
 * write (an apply that answers at once: its `applying` and its outcome); a longer apply writes
 * `applying` first, which is what lets a controller wait for it.
 *
 * A lease lost while the registration is active (keep-alives failed, the lease expired) is
 * replaced: the agent registers again, retrying with a doubling delay up to half the TTL.
 *
 * With a signer, each write is the document signed as a report (agent-report.ts) with the
 * next `seq` of this registration (1, 2, …, across re-registrations: `startedAt` stays, so
 * readers keep counting), which is how a controller tells a replayed older report.
 */
export class AgentRegistration {
  readonly key: string;
  readonly #store: KvStore;
  readonly #options: AgentRegistrationOptions;
  readonly #startedAt = new Date().toISOString();
  readonly #targets = new Map<string, AgentTargetState>();
  #active = false;
  #lease: Lease | undefined;
  /** The document (as JSON) the store holds, as far as this agent knows; undefined after a lease loss. */
  #written: string | undefined;
  /** The `seq` of the last signed report written (or attempted). */
  #seq = 0;
  #dirty = false;
  #registering = false;
  #flushing: Promise<void> | undefined;

  constructor(store: KvStore, options: AgentRegistrationOptions) {
    this.#store = store;
    this.#options = options;
    this.key = options.key;
  }

  /** The document this agent writes (a copy). */
  get document(): AgentDocument {
    const targets = Object.fromEntries([...this.#targets].map(([k, v]) => [k, { ...v }]));
    const labels = this.#options.labels;
    return {
      agentId: this.#options.agentId,
      ring: this.#options.ring,
      ...(labels === undefined ? {} : { labels: { ...labels } }),
      targets,
      startedAt: this.#startedAt,
    };
  }

  target(name: string): AgentTargetState | undefined {
    return this.#targets.get(name);
  }

  /**
   * Takes a lease and writes the document under it; from now on a lost lease is replaced. The
   * key must be free: one held by another agent with this id is waited on for one lease TTL (a
   * crashed predecessor's key goes when its lease runs out), then refused — INVALID, nothing
   * written — so a second agent with the same id never takes over a live one's key, its orders
   * and its reports.
   */
  async register(): Promise<void> {
    this.#active = true;
    const deadline = Date.now() + this.#options.ttlMs + 1000;
    for (;;) {
      if (await this.#registerOnce()) return;
      if (Date.now() >= deadline) {
        this.#active = false;
        throw new HotPatchError(
          'INVALID',
          `another live agent is registered as ${this.#options.agentId} (${this.key} stayed held for longer than its lease TTL of ${this.#options.ttlMs} ms): give each agent its own agentId`,
        );
      }
      await sleep(Math.min(250, Math.max(this.#options.ttlMs / 8, 10)));
    }
  }

  /**
   * Stops writing and re-registering, and hands the lease back: the caller revokes it (a clean
   * stop: the key goes at once) or releases it (a crash: the key goes when the TTL runs out).
   */
  leave(): Lease | undefined {
    this.#active = false;
    const lease = this.#lease;
    this.#lease = undefined;
    return lease;
  }

  /** One attempt: false (lease handed back, nothing written) when another holds the key. */
  async #registerOnce(): Promise<boolean> {
    const lease = await this.#store.grantLease(this.#options.ttlMs);
    if (!this.#active) {
      lease.release();
      return true;
    }
    // No report write overtakes this one (two puts of one key in flight could land in either order).
    this.#registering = true;
    try {
      const doc = this.document;
      const body = JSON.stringify(doc);
      this.#dirty = false;
      if (!(await this.#store.create(this.key, this.#stored(doc, body), { lease }))) {
        this.#dirty = true;
        await lease.revoke();
        return false;
      }
      this.#lease = lease;
      this.#written = body;
    } catch (error) {
      this.#dirty = true;
      await lease.revoke().catch(() => undefined); // the write's failure is the one to report
      throw error;
    } finally {
      this.#registering = false;
    }
    void lease.lost.then(() => this.#onLeaseLost(lease));
    // Changes made while the registration was written.
    void this.flush();
    return true;
  }

  async #onLeaseLost(lease: Lease): Promise<void> {
    if (!this.#active || this.#lease !== lease) return;
    this.#lease = undefined;
    this.#written = undefined;
    const ttl = this.#options.ttlMs;
    for (let delay = 100; this.#active; delay = Math.min(delay * 2, Math.max(ttl / 2, 100))) {
      try {
        if (await this.#registerOnce()) return;
        this.#options.onError(new HotPatchError('INVALID', `re-registering after the lease was lost: ${this.key} is held by another agent; trying again`));
        await sleep(delay);
      } catch (error) {
        this.#options.onError(new HotPatchError('IO', `re-registering after the lease was lost failed: ${messageOf(error)}`, { cause: error }));
        await sleep(delay);
      }
    }
  }

  /**
   * The text one write puts: the document as it is, or signed with the next `seq` (every
   * attempt takes a new one: a failed write leaves a gap, never a number used twice).
   */
  #stored(doc: AgentDocument, body: string): string {
    const signer = this.#options.signer;
    if (signer === undefined) return body;
    this.#seq += 1;
    return storedAgentReportText(signAgentReport(doc, this.#seq, signer));
  }

  /** Merges what the host reported (`FleetMemberOptions.report`); a malformed entry is reported and skipped. */
  mergeReports(reports: readonly TargetReport[]): void {
    for (const r of reports) {
      if (typeof r !== 'object' || r === null || typeof r.target !== 'string' || typeof r.version !== 'string') {
        this.#options.onError(new HotPatchError('INVALID', `report() returned a malformed entry ${describe(r)}`));
        continue;
      }
      const change: TargetChange = { version: r.version, health: r.health, patchId: r.patchId ?? undefined };
      if (r.phase !== undefined) change.phase = r.phase;
      if (r.reason !== undefined && r.health === 'unhealthy') change.reason = r.reason;
      if (!this.#targets.has(r.target)) change.phase ??= 'idle';
      try {
        this.setTarget(r.target, change);
      } catch (error) {
        this.#options.onError(error);
      }
    }
  }

  /** Merges a change into a target's state; the document needs writing when anything changed. */
  setTarget(target: string, change: TargetChange): void {
    parseTargetName(target, 'report target');
    const current = this.#targets.get(target);
    const next: AgentTargetState = { version: 'unknown', phase: 'idle', health: 'unknown', ...current, updatedAt: current?.updatedAt ?? '' };
    const fields = next as unknown as Record<string, unknown>;
    for (const [k, v] of Object.entries(change)) {
      if (v === undefined) delete fields[k];
      else fields[k] = v;
    }
    if (current !== undefined && sameState(current, next)) return;
    next.updatedAt = new Date().toISOString();
    this.#targets.set(target, next);
    this.#dirty = true;
  }

  /**
   * Writes the document if it changed (see the class comment). Resolves when no write is
   * pending any more; a failed write is reported and retried by the next flush.
   */
  flush(): Promise<void> {
    if (this.#flushing !== undefined) return this.#flushing;
    if (!this.#dirty || !this.#active || this.#lease === undefined || this.#registering) return Promise.resolve();
    const run = async (): Promise<void> => {
      await new Promise<void>((resolve) => setImmediate(resolve));
      while (this.#dirty && this.#active && this.#lease !== undefined && !this.#registering) {
        this.#dirty = false;
        const doc = this.document;
        const body = JSON.stringify(doc);
        if (body === this.#written) continue;
        try {
          await this.#store.put(this.key, this.#stored(doc, body), { lease: this.#lease });
          this.#written = body;
        } catch (error) {
          this.#dirty = true;
          this.#options.onError(error);
          return;
        }
      }
    };
    const flushing: Promise<void> = run().finally(() => {
      if (this.#flushing === flushing) this.#flushing = undefined;
    });
    this.#flushing = flushing;
    return flushing;
  }
}

/** Equal but for `updatedAt` (which only moves when something else does). */
function sameState(a: AgentTargetState, b: AgentTargetState): boolean {
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  const ra = a as unknown as Record<string, unknown>;
  const rb = b as unknown as Record<string, unknown>;
  return ka.every((k) => k === 'updatedAt' || ra[k] === rb[k]);
}

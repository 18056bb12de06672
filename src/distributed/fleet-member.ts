import { HotPatchError, describe, parseTargetName, emitRedactedWarning } from '../core/index.js';
import type { KvStore, Lease } from './kv-store.js';
import {
  ROLLBACK_STATUSES,
  fleetKeys,
  newestFirst,
  parseFleetId,
  parseRing,
  parseRolloutDocument,
  type AgentDocument,
  type AgentTargetState,
  type FleetHealth,
  type FleetKeys,
  type FleetPhase,
  type RolloutDocument,
  type RolloutOrder,
} from './fleet-rollout.js';

/** How far in the future a rollout's creation time may lie (clock skew between hosts). */
const FUTURE_SKEW_MS = 60_000;

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

/** The outcome of an apply or rollback callback. */
export interface MemberReport {
  phase: FleetPhase;
  /** The version active on the target afterwards. */
  version: string;
  patchId?: string | null;
  health?: FleetHealth;
  reason?: string;
}

export interface FleetMemberOptions {
  store: KvStore;
  agentId: string;
  /** The ring this agent belongs to (0 = canary hosts). */
  ring: number;
  /** Key prefix of the fleet (default `/xps/hotpatch/fleet`). */
  prefix?: string;
  /** TTL of the registration lease (default 10 s): a dead agent drops out this long after its last renewal. */
  leaseTtlMs?: number;
  /** Applies the order's patch to its target (in a host: verify, then twoPhaseApply). Aborted by `signal` when the rollout halts. */
  apply: (order: RolloutOrder, signal: AbortSignal) => Promise<MemberReport>;
  /** Rolls the order's patch back (idempotent: nothing to do when it is not active). */
  rollback: (order: RolloutOrder) => Promise<MemberReport>;
  /** Current version and health of each target, polled every `reportIntervalMs` (changes are written). */
  report?: () => TargetReport[];
  /** How often `report` is polled (default 1000 ms). */
  reportIntervalMs?: number;
  /** Full re-read of the rollouts besides the watch (default 30 s; a safety net for lost watch events). */
  resyncMs?: number;
  /** Errors of the store or the callbacks that do not stop the member (default: a process warning). */
  onError?: (error: unknown) => void;
}

interface Work {
  rollout: string;
  kind: 'apply' | 'rollback';
  abort: AbortController;
  done: Promise<void>;
}

const DEFAULT_LEASE_TTL_MS = 10_000;

/**
 * One agent of a fleet. Registers `<prefix>/agents/<agentId>` with a lease (renewed by the
 * store; re-registered if the lease is lost while the agent lives) and writes there, per
 * target, the version, phase and health it runs. Watches `<prefix>/rollouts/` and, for each
 * target, follows the newest rollout:
 *  - `running` with `state.ring >= ring` (or `completed`): apply it once;
 *  - `paused`: start nothing (an apply under way finishes);
 *  - `halted`, `rolling-back`, `rolled-back`, `aborted`: abort an apply under way, and roll
 *    back if this agent runs the rollout's patch.
 * A failed apply is reported (`phase: failed`), never retried: the controller halts the rollout.
 */
export class FleetMember {
  readonly agentId: string;
  readonly ring: number;
  readonly key: string;
  readonly keys: FleetKeys;
  readonly #store: KvStore;
  readonly #ttl: number;
  readonly #options: FleetMemberOptions;
  readonly #onError: (error: unknown) => void;
  readonly #startedAt = new Date().toISOString();
  readonly #targets = new Map<string, AgentTargetState>();
  readonly #rollouts = new Map<string, RolloutDocument>();
  /** Rollouts this agent applied (value: the outcome phase) and rolled back. */
  readonly #applied = new Map<string, FleetPhase>();
  readonly #rolledBack = new Set<string>();
  readonly #work = new Map<string, Work>();
  #lease: Lease | undefined;
  #stopWatch: (() => Promise<void>) | undefined;
  #timers: NodeJS.Timeout[] = [];
  #state: 'new' | 'running' | 'stopped' = 'new';
  #written: string | undefined;
  #flushing: Promise<void> | undefined;
  #dirty = false;
  /** Keys changed by the watch while a list was in flight (the list's copy may be older). */
  #watchedDuringList: Set<string> | undefined;

  constructor(options: FleetMemberOptions) {
    if (typeof options !== 'object' || options === null) throw new HotPatchError('INVALID', `fleet member options must be an object, got ${describe(options)}`);
    if (typeof options.store !== 'object' || options.store === null) throw new HotPatchError('INVALID', `options.store must be a KvStore, got ${describe(options.store)}`);
    for (const fn of ['apply', 'rollback'] as const) {
      if (typeof options[fn] !== 'function') throw new HotPatchError('INVALID', `options.${fn} must be a function, got ${describe(options[fn])}`);
    }
    if (options.report !== undefined && typeof options.report !== 'function') throw new HotPatchError('INVALID', `options.report must be a function, got ${describe(options.report)}`);
    this.agentId = parseFleetId(options.agentId, 'options.agentId');
    this.ring = parseRing(options.ring, 'options.ring');
    this.keys = fleetKeys(options.prefix);
    this.key = `${this.keys.agents}${this.agentId}`;
    this.#store = options.store;
    this.#ttl = positive(options.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS, 'options.leaseTtlMs');
    positive(options.reportIntervalMs ?? 1000, 'options.reportIntervalMs');
    positive(options.resyncMs ?? 30_000, 'options.resyncMs');
    this.#options = options;
    this.#onError =
      options.onError ??
      ((error) => emitRedactedWarning(`fleet agent ${this.agentId}: ${error instanceof Error ? error.message : String(error)}`, { code: 'HOTPATCH_FLEET_AGENT' }));
  }

  /** The document this agent writes (a copy). */
  get document(): AgentDocument {
    return { agentId: this.agentId, ring: this.ring, targets: Object.fromEntries([...this.#targets].map(([k, v]) => [k, { ...v }])), startedAt: this.#startedAt };
  }

  get running(): boolean {
    return this.#state === 'running';
  }

  /** Registers, then follows the rollouts. Throws IO when the store cannot be reached. */
  async start(): Promise<void> {
    if (this.#state !== 'new') throw new HotPatchError('INVALID', `fleet agent ${this.agentId} was already started`);
    this.#state = 'running';
    try {
      this.#pollReport();
      await this.#register();
      this.#stopWatch = await this.#store.watch(this.keys.rollouts, (event) => this.#onWatch(event.type, event.key, event.value));
      await this.#resync();
    } catch (error) {
      await this.#halt(false);
      throw error;
    }
    const every = (ms: number, fn: () => void): void => {
      const t = setInterval(fn, ms);
      t.unref();
      this.#timers.push(t);
    };
    every(this.#options.reportIntervalMs ?? 1000, () => {
      this.#pollReport();
      void this.#flush();
    });
    every(this.#options.resyncMs ?? 30_000, () => void this.#resync().catch(this.#onError));
  }

  /** Leaves the fleet: aborts work under way, stops following, and revokes the lease (the key goes at once). */
  async stop(): Promise<void> {
    await this.#halt(true);
  }

  /** A crash, for tests: stops everything and releases the lease without revoking (the key goes after its TTL). */
  async kill(): Promise<void> {
    await this.#halt(false);
  }

  /** Resolves when no apply or rollback is under way (tests). */
  async idle(): Promise<void> {
    while (this.#work.size > 0) await Promise.all([...this.#work.values()].map((w) => w.done));
  }

  async #halt(revoke: boolean): Promise<void> {
    if (this.#state === 'stopped') return;
    this.#state = 'stopped';
    const lease = this.#lease;
    this.#lease = undefined;
    // A crash: the lease is simply no longer renewed; the key goes when its TTL runs out.
    if (!revoke) lease?.release();
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
    const stopWatch = this.#stopWatch;
    this.#stopWatch = undefined;
    for (const w of this.#work.values()) w.abort.abort(new HotPatchError('ABORTED', `fleet agent ${this.agentId} is stopping`));
    await stopWatch?.().catch(this.#onError);
    if (!revoke) return;
    // A clean stop lets aborted work end (bounded: a callback that ignores its signal is not waited on forever).
    await Promise.race([Promise.all([...this.#work.values()].map((w) => w.done)), sleep(this.#ttl)]);
    await lease?.revoke().catch(this.#onError);
  }

  // --- registration and reports ---

  async #register(): Promise<void> {
    const lease = await this.#store.grantLease(this.#ttl);
    if (this.#state !== 'running') {
      lease.release();
      return;
    }
    this.#lease = lease;
    const text = this.#text();
    await this.#store.put(this.key, text, { lease });
    this.#written = text;
    void lease.lost.then(() => this.#onLeaseLost(lease));
  }

  /** A lease lost while alive (keep-alive failed, expired): register again until it works. */
  async #onLeaseLost(lease: Lease): Promise<void> {
    if (this.#state !== 'running' || this.#lease !== lease) return;
    this.#lease = undefined;
    this.#written = undefined;
    for (let delay = 100; this.#state === 'running'; delay = Math.min(delay * 2, Math.max(this.#ttl / 2, 100))) {
      try {
        await this.#register();
        return;
      } catch (error) {
        this.#onError(new HotPatchError('IO', `re-registering after the lease was lost failed: ${error instanceof Error ? error.message : String(error)}`, { cause: error }));
        await sleep(delay);
      }
    }
  }

  #text(): string {
    return JSON.stringify(this.document);
  }

  #pollReport(): void {
    const report = this.#options.report;
    if (report === undefined) return;
    let reports: TargetReport[];
    try {
      reports = report();
    } catch (error) {
      this.#onError(error);
      return;
    }
    for (const r of reports) {
      if (typeof r !== 'object' || r === null || typeof r.target !== 'string' || typeof r.version !== 'string') {
        this.#onError(new HotPatchError('INVALID', `report() returned a malformed entry ${describe(r)}`));
        continue;
      }
      const current = this.#targets.get(r.target);
      const change: Partial<AgentTargetState> & { patchId?: string | undefined } = { version: r.version, health: r.health, patchId: r.patchId ?? undefined };
      if (r.phase !== undefined) change.phase = r.phase;
      if (r.reason !== undefined && r.health === 'unhealthy') change.reason = r.reason;
      if (current === undefined) change.phase ??= 'idle';
      try {
        this.#setTarget(r.target, change);
      } catch (error) {
        this.#onError(error);
      }
    }
  }

  /** Merges a change into a target's report; marks the document dirty when anything changed. */
  #setTarget(target: string, change: Partial<AgentTargetState> & { patchId?: string | undefined }): void {
    parseTargetName(target, 'report target');
    const current = this.#targets.get(target);
    const next: AgentTargetState = { version: 'unknown', phase: 'idle', health: 'unknown', ...current, updatedAt: current?.updatedAt ?? '' };
    for (const [k, v] of Object.entries(change) as [keyof AgentTargetState, string | undefined][]) {
      if (v === undefined) delete next[k];
      else (next as unknown as Record<string, string>)[k] = v;
    }
    const same = current !== undefined && JSON.stringify({ ...current, updatedAt: '' }) === JSON.stringify({ ...next, updatedAt: '' });
    if (same) return;
    next.updatedAt = new Date().toISOString();
    this.#targets.set(target, next);
    this.#dirty = true;
  }

  /** Writes the document when it changed (one write at a time; the latest state wins). */
  #flush(): Promise<void> {
    if (this.#flushing !== undefined) return this.#flushing;
    if (!this.#dirty || this.#state !== 'running' || this.#lease === undefined) return Promise.resolve();
    const run = async (): Promise<void> => {
      while (this.#dirty && this.#state === 'running' && this.#lease !== undefined) {
        this.#dirty = false;
        const text = this.#text();
        if (text === this.#written) continue;
        try {
          await this.#store.put(this.key, text, { lease: this.#lease });
          this.#written = text;
        } catch (error) {
          this.#dirty = true;
          this.#onError(error);
          return; // retried on the next report tick
        }
      }
    };
    // Cleared in a later microtask, so never before it is set (the run may end synchronously).
    const flushing: Promise<void> = run().finally(() => {
      if (this.#flushing === flushing) this.#flushing = undefined;
    });
    this.#flushing = flushing;
    return this.#flushing;
  }

  // --- rollouts ---

  #onWatch(type: 'put' | 'delete', key: string, value: string | undefined): void {
    if (this.#state !== 'running') return;
    this.#watchedDuringList?.add(key);
    const id = key.slice(this.keys.rollouts.length);
    const before = this.#rollouts.get(id);
    if (type === 'delete' || value === undefined) {
      this.#rollouts.delete(id);
      if (before !== undefined) this.#evaluate(before.target);
      return;
    }
    const doc = this.#parse(key, value);
    if (doc === undefined) return;
    this.#rollouts.set(id, doc);
    this.#evaluate(doc.target);
  }

  #parse(key: string, value: string): RolloutDocument | undefined {
    try {
      const doc = parseRolloutDocument(value);
      if (`${this.keys.rollouts}${doc.id}` !== key) throw new HotPatchError('INVALID', `rollout id ${doc.id} does not match its key ${key}`);
      return doc;
    } catch (error) {
      this.#onError(new HotPatchError('INVALID', `ignoring rollout at ${key}: ${error instanceof Error ? error.message : String(error)}`, { cause: error }));
      return undefined;
    }
  }

  /** Re-reads every rollout (at start, then as a safety net besides the watch). */
  async #resync(): Promise<void> {
    const changed = new Set<string>();
    this.#watchedDuringList = changed;
    let kvs;
    try {
      kvs = await this.#store.list(this.keys.rollouts);
    } finally {
      if (this.#watchedDuringList === changed) this.#watchedDuringList = undefined;
    }
    if (this.#state !== 'running') return;
    const present = new Set<string>();
    const targets = new Set<string>();
    for (const kv of kvs) {
      const id = kv.key.slice(this.keys.rollouts.length);
      present.add(id);
      if (changed.has(kv.key)) continue; // the watch saw a newer value
      const doc = this.#parse(kv.key, kv.value);
      if (doc === undefined) continue;
      this.#rollouts.set(id, doc);
      targets.add(doc.target);
    }
    for (const [id, doc] of this.#rollouts) {
      if (!present.has(id) && !changed.has(`${this.keys.rollouts}${id}`)) {
        this.#rollouts.delete(id);
        targets.add(doc.target);
      }
    }
    for (const t of targets) this.#evaluate(t);
    void this.#flush();
  }

  /**
   * The rollout this agent follows for `target`: the newest one — but never one dated in
   * the future, which a store writer could use to shadow every real rollout (and abort).
   */
  #current(target: string): RolloutDocument | undefined {
    const latest = Date.now() + FUTURE_SKEW_MS;
    return [...this.#rollouts.values()].filter((r) => r.target === target && Date.parse(r.createdAt) <= latest).sort(newestFirst)[0];
  }

  #evaluate(target: string): void {
    if (this.#state !== 'running') return;
    const rollout = this.#current(target);
    if (rollout === undefined) return;
    const work = this.#work.get(target);
    const status = rollout.state.status;
    const reached = status === 'completed' || (status === 'running' && rollout.state.ring >= this.ring);
    if (reached) {
      if (work !== undefined || this.#applied.has(rollout.id)) return;
      this.#startWork(target, rollout, 'apply');
      return;
    }
    if (!ROLLBACK_STATUSES.includes(status)) return; // paused: start nothing
    if (work !== undefined) {
      if (work.kind === 'apply' && work.rollout === rollout.id) work.abort.abort(new HotPatchError('ABORTED', `rollout ${rollout.id} ${status}: ${rollout.state.reason ?? 'stopped'}`));
      return; // re-evaluated when the work ends
    }
    if (this.#rolledBack.has(rollout.id)) return;
    const report = this.#targets.get(target);
    const runsIt = report?.patchId === rollout.patchId || this.#applied.get(rollout.id) === 'promoted';
    if (!runsIt) return;
    this.#startWork(target, rollout, 'rollback');
  }

  #startWork(target: string, rollout: RolloutDocument, kind: 'apply' | 'rollback'): void {
    const abort = new AbortController();
    const work: Work = { rollout: rollout.id, kind, abort, done: Promise.resolve() };
    this.#work.set(target, work);
    this.#setTarget(target, { phase: kind === 'apply' ? 'applying' : 'rolling-back', rollout: rollout.id, reason: undefined });
    void this.#flush();
    work.done = (async () => {
      let result: MemberReport;
      try {
        result = kind === 'apply' ? await this.#options.apply(rollout, abort.signal) : await this.#options.rollback(rollout);
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        const code = error instanceof HotPatchError ? `${error.code}: ` : '';
        const current = this.#targets.get(target);
        result = {
          phase: kind === 'apply' && abort.signal.aborted ? 'rolled-back' : 'failed',
          version: current?.version ?? 'unknown',
          reason: `${kind} of ${rollout.patchId} failed: ${code}${message}`,
        };
        if (current?.patchId !== undefined) result.patchId = current.patchId;
      }
      if (kind === 'apply') this.#applied.set(rollout.id, result.phase);
      else this.#rolledBack.add(rollout.id);
      this.#setTarget(target, {
        phase: result.phase,
        version: result.version,
        patchId: result.patchId ?? undefined,
        ...(result.health === undefined ? {} : { health: result.health }),
        rollout: rollout.id,
        reason: result.reason,
      });
      // The host's own view (health, version) is taken again right after the change.
      this.#pollReport();
    })()
      .catch(this.#onError)
      .finally(() => {
        if (this.#work.get(target) === work) this.#work.delete(target);
        this.#forget();
        void this.#flush();
        this.#evaluate(target);
      });
  }

  /** Drops what is remembered of rollouts that are gone from the store (bounded memory). */
  #forget(): void {
    for (const id of [...this.#applied.keys()]) if (!this.#rollouts.has(id)) this.#applied.delete(id);
    for (const id of [...this.#rolledBack]) if (!this.#rollouts.has(id)) this.#rolledBack.delete(id);
  }
}

function positive(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) throw new HotPatchError('INVALID', `${what} must be a positive number of ms, got ${describe(value)}`);
  return value;
}

const sleep = (ms: number): Promise<void> =>
  new Promise((resolve) => {
    setTimeout(resolve, ms).unref();
  });

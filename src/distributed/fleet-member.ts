import { HotPatchError, describe, emitRedactedWarning, messageOf } from '../core/index.js';
import type { CryptoPolicy } from '../crypto-agile/index.js';
import type { TrustStore } from '../verification/index.js';
import { AgentRegistration, type TargetReport } from './agent-registration.js';
import type { KvStore } from './kv-store.js';
import { PrefixMirror } from './prefix-mirror.js';
import {
  FUTURE_SKEW_MS,
  ROLLBACK_STATUSES,
  checkAgentSigner,
  fleetKeys,
  newestFirst,
  parseFleetId,
  parseLabels,
  parseRing,
  RolloutVerifier,
  type AgentDocument,
  type FleetHealth,
  type FleetKeys,
  type FleetPhase,
  type RolloutDocument,
  type RolloutOrder,
  type RolloutSigner,
} from './fleet-rollout.js';
import { everyJittered, positiveMs, sleep } from './fleet-timing.js';
import { RolloutReplayGuard } from './rollout-replay.js';

export type { TargetReport } from './agent-registration.js';

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
  /**
   * Written in the agent's registration and shown by `fleetStatus` (e.g. `{ "zone": "eu-1" }`):
   * at most 16, names 1-64 of [A-Za-z0-9._-], values 1-64 printable ASCII characters. Said
   * by the agent about itself, so never a reason to trust it.
   */
  labels?: Record<string, string>;
  /** Key prefix of the fleet (default `/xps/hotpatch/fleet`). */
  prefix?: string;
  /**
   * The trust store every rollout is verified against (its `fleet` role is required, its
   * `controllers` role signs the controllers' states): a rollout that does not verify is
   * never acted on.
   */
  trust: TrustStore;
  /** Algorithm policy of the signature checks (default: the built-in one). */
  cryptoPolicy?: CryptoPolicy;
  /**
   * This agent's own key: its key id must be the agent id. With it, every report the agent
   * writes is signed (agent-report.ts). Required when `trust` has an `agents` role, and must then
   * be that role's key of this agent id (controllers count no other report of it).
   */
  signer?: RolloutSigner;
  /** TTL of the registration lease (default 10 s): a dead agent drops out this long after its last renewal. */
  leaseTtlMs?: number;
  /**
   * Applies the order's patch to its target (in a host: `plannerFleetHooks`, a pinned plan
   * through the host's own Planner). Aborted by `signal` when the rollout halts.
   */
  apply: (order: RolloutOrder, signal: AbortSignal) => Promise<MemberReport>;
  /** Rolls the order's patch back (idempotent: nothing to do when it is not active). */
  rollback: (order: RolloutOrder) => Promise<MemberReport>;
  /** Current version and health of each target, polled every `reportIntervalMs` (changes are written). */
  report?: () => TargetReport[];
  /** How often `report` is polled (default 1000 ms). */
  reportIntervalMs?: number;
  /**
   * Full re-read of the rollouts besides the watch (default 30 s, each period drawn from 75-125 %
   * of it so a fleet started at once does not list together; a safety net for lost watch events).
   */
  resyncMs?: number;
  /** Errors of the store or the callbacks that do not stop the member (default: a process warning). */
  onError?: (error: unknown) => void;
}

/**
 * The reason work is aborted with when the member itself stops (a shutdown, a crash), as
 * opposed to its rollout stopping: the order still stands, and a restarted member gives it
 * again (`isMemberStopping` tells the two apart).
 */
function memberStopping(agentId: string): HotPatchError {
  return new HotPatchError('ABORTED', `fleet agent ${agentId} is stopping`, { detail: { memberStopping: true } });
}

/** Was an apply aborted because its member stops (not because its rollout did)? */
export function isMemberStopping(reason: unknown): boolean {
  return reason instanceof HotPatchError && reason.code === 'ABORTED' && reason.detail?.memberStopping === true;
}

interface Work {
  rollout: string;
  kind: 'apply' | 'rollback';
  abort: AbortController;
  done: Promise<void>;
}

const DEFAULT_LEASE_TTL_MS = 10_000;

/**
 * One agent of a fleet. Registers `<prefix>/agents/<agentId>` with a lease and writes there,
 * per target, the version, phase and health it runs (`AgentRegistration`), signed with its own
 * key when it has one (`signer`). Keeps a copy of
 * `<prefix>/rollouts/` current by a watch (`PrefixMirror`), verifying each rollout against the
 * trust store (rollout-verify.ts) and refusing an older state than one already seen
 * (rollout-replay.ts), and, for each target, follows the newest rollout:
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
  readonly #ttl: number;
  readonly #options: FleetMemberOptions;
  readonly #onError: (error: unknown) => void;
  readonly #registration: AgentRegistration;
  readonly #rollouts: PrefixMirror<RolloutDocument>;
  readonly #replays = new RolloutReplayGuard();
  readonly #verifier: RolloutVerifier;
  /** The rollouts of each target, by id, with their creation time in ms (what `#current` picks from). */
  readonly #byTarget = new Map<string, Map<string, { doc: RolloutDocument; createdMs: number }>>();
  /** Rollouts this agent applied (value: the outcome phase) and rolled back. */
  readonly #applied = new Map<string, FleetPhase>();
  readonly #rolledBack = new Set<string>();
  /** Expired rollouts already reported (once each). */
  readonly #expired = new Set<string>();
  readonly #work = new Map<string, Work>();
  #timers: (() => void)[] = [];
  #state: 'new' | 'running' | 'stopped' = 'new';

  constructor(options: FleetMemberOptions) {
    if (typeof options !== 'object' || options === null) throw new HotPatchError('INVALID', `fleet member options must be an object, got ${describe(options)}`);
    if (typeof options.store !== 'object' || options.store === null)
      throw new HotPatchError('INVALID', `options.store must be a KvStore, got ${describe(options.store)}`);
    for (const fn of ['apply', 'rollback'] as const) {
      if (typeof options[fn] !== 'function') throw new HotPatchError('INVALID', `options.${fn} must be a function, got ${describe(options[fn])}`);
    }
    if (options.report !== undefined && typeof options.report !== 'function')
      throw new HotPatchError('INVALID', `options.report must be a function, got ${describe(options.report)}`);
    if (typeof options.trust !== 'object' || options.trust === null || options.trust.fleet === undefined) {
      throw new HotPatchError(
        'INVALID',
        `options.trust must be a trust store with a fleet role (the operators who sign rollouts), got ${describe(options.trust)}`,
      );
    }
    this.keys = fleetKeys(options.prefix);
    // Read under this fleet's prefix: a spec signed for another fleet is refused.
    this.#verifier = new RolloutVerifier(options.trust, options.cryptoPolicy, this.keys.prefix);
    this.agentId = parseFleetId(options.agentId, 'options.agentId');
    const signer = checkAgentSigner(options.trust, this.agentId, options.signer, 'options.signer');
    this.ring = parseRing(options.ring, 'options.ring');
    const labels = options.labels === undefined ? undefined : parseLabels(options.labels, 'options.labels');
    this.key = `${this.keys.agents}${this.agentId}`;
    this.#ttl = positiveMs(options.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS, 'options.leaseTtlMs');
    positiveMs(options.reportIntervalMs ?? 1000, 'options.reportIntervalMs');
    positiveMs(options.resyncMs ?? 30_000, 'options.resyncMs');
    this.#options = options;
    this.#onError = options.onError ?? ((error) => emitRedactedWarning(`fleet agent ${this.agentId}: ${messageOf(error)}`, { code: 'HOTPATCH_FLEET_AGENT' }));
    this.#registration = new AgentRegistration(options.store, {
      key: this.key,
      agentId: this.agentId,
      ring: this.ring,
      ...(labels === undefined ? {} : { labels }),
      ...(signer === undefined ? {} : { signer }),
      ttlMs: this.#ttl,
      onError: this.#onError,
    });
    this.#rollouts = new PrefixMirror(options.store, this.keys.rollouts, {
      // A document that does not verify, or replays an older state, is reported and ignored:
      // the member keeps following the last version of it that verified, as if the bad write
      // had not happened.
      parse: (key, raw) => this.#parse(key, raw) ?? this.#rollouts.get(key),
      onChange: (_key, before, after) => this.#onRolloutChange(before, after),
    });
  }

  /** The document this agent writes (a copy). */
  get document(): AgentDocument {
    return this.#registration.document;
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
      await this.#registration.register();
      await this.#rollouts.start();
      void this.#registration.flush();
    } catch (error) {
      await this.#halt(false);
      throw error;
    }
    const reports = setInterval(() => {
      this.#pollReport();
      void this.#registration.flush();
    }, this.#options.reportIntervalMs ?? 1000);
    reports.unref();
    this.#timers.push(() => clearInterval(reports));
    this.#timers.push(everyJittered(this.#options.resyncMs ?? 30_000, () => void this.#resync().catch(this.#onError)));
  }

  /** Leaves the fleet: aborts work under way, stops following, and revokes the lease (the key goes at once). */
  async stop(): Promise<void> {
    await this.#halt(true);
  }

  /** A crash, for tests: stops everything and releases the lease without revoking (the key goes after its TTL). */
  async kill(): Promise<void> {
    await this.#halt(false);
  }

  /** Resolves when no apply or rollback is under way and the report they changed is written (tests, benchmarks). */
  async idle(): Promise<void> {
    while (this.#work.size > 0) await Promise.all([...this.#work.values()].map((w) => w.done));
    await this.#registration.flush();
  }

  async #halt(revoke: boolean): Promise<void> {
    if (this.#state === 'stopped') return;
    this.#state = 'stopped';
    const lease = this.#registration.leave();
    // A crash: the lease is simply no longer renewed; the key goes when its TTL runs out.
    if (!revoke) lease?.release();
    for (const stop of this.#timers) stop();
    this.#timers = [];
    for (const w of this.#work.values()) w.abort.abort(memberStopping(this.agentId));
    await this.#rollouts.stop().catch(this.#onError);
    if (!revoke) return;
    // A clean stop lets aborted work end (bounded: a callback that ignores its signal is not waited on forever).
    await Promise.race([Promise.all([...this.#work.values()].map((w) => w.done)), sleep(this.#ttl)]);
    await lease?.revoke().catch(this.#onError);
  }

  #pollReport(): void {
    const report = this.#options.report;
    if (report === undefined) return;
    try {
      // A target under apply or rollback is left to its outcome, written together with the
      // host's view taken right after it: a poll in between (the new version already active,
      // the plan still settling) would be one more write saying half of it.
      this.#registration.mergeReports(report().filter((r) => !this.#work.has((r as TargetReport | undefined)?.target ?? '')));
    } catch (error) {
      this.#onError(error);
    }
  }

  // --- rollouts ---

  #parse(key: string, raw: string): RolloutDocument | undefined {
    try {
      const doc = this.#verifier.verify(raw);
      if (`${this.keys.rollouts}${doc.id}` !== key) throw new HotPatchError('INVALID', `rollout id ${doc.id} does not match its key ${key}`);
      this.#replays.accept(doc);
      return doc;
    } catch (error) {
      const code = error instanceof HotPatchError ? error.code : 'INVALID';
      this.#onError(new HotPatchError(code, `ignoring rollout at ${key}: ${messageOf(error)}`, { cause: error }));
      return undefined;
    }
  }

  #onRolloutChange(before: RolloutDocument | undefined, after: RolloutDocument | undefined): void {
    if (before !== undefined) this.#byTarget.get(before.target)?.delete(before.id);
    if (after !== undefined) {
      let rollouts = this.#byTarget.get(after.target);
      if (rollouts === undefined) this.#byTarget.set(after.target, (rollouts = new Map()));
      rollouts.set(after.id, { doc: after, createdMs: Date.parse(after.createdAt) });
    }
    if (before !== undefined && before.target !== after?.target) this.#evaluate(before.target);
    if (after !== undefined) this.#evaluate(after.target);
  }

  /** Re-reads every rollout (a safety net besides the watch) and looks at every target again. */
  async #resync(): Promise<void> {
    this.#verifier.forget();
    await this.#rollouts.resync();
    for (const target of this.#byTarget.keys()) this.#evaluate(target);
    void this.#registration.flush();
  }

  /**
   * The rollout this agent follows for `target`: the newest one — but never one dated in
   * the future, which a store writer could use to shadow every real rollout (and abort).
   */
  #current(target: string): RolloutDocument | undefined {
    const latest = Date.now() + FUTURE_SKEW_MS;
    let current: RolloutDocument | undefined;
    for (const { doc, createdMs } of this.#byTarget.get(target)?.values() ?? []) {
      if (createdMs <= latest && (current === undefined || newestFirst(doc, current) < 0)) current = doc;
    }
    return current;
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
      // An expired spec is never started (a saved one put back after its abort, say); its rollback still is.
      if (Date.parse(rollout.expiresAt) <= Date.now()) {
        if (!this.#expired.has(rollout.id)) {
          this.#expired.add(rollout.id);
          this.#onError(
            new HotPatchError('EXPIRED', `not applying rollout ${rollout.id}: its spec expired at ${rollout.expiresAt}`, {
              detail: { rollout: rollout.id, expiresAt: rollout.expiresAt },
            }),
          );
        }
        return;
      }
      this.#startWork(target, rollout, 'apply');
      return;
    }
    if (!ROLLBACK_STATUSES.includes(status)) return; // paused: start nothing
    if (work !== undefined) {
      if (work.kind === 'apply' && work.rollout === rollout.id)
        work.abort.abort(new HotPatchError('ABORTED', `rollout ${rollout.id} ${status}: ${rollout.state.reason ?? 'stopped'}`));
      return; // re-evaluated when the work ends
    }
    if (this.#rolledBack.has(rollout.id)) return;
    const report = this.#registration.target(target);
    const runsIt = report?.patchId === rollout.patchId || this.#applied.get(rollout.id) === 'promoted';
    if (!runsIt) return;
    this.#startWork(target, rollout, 'rollback');
  }

  #startWork(target: string, rollout: RolloutDocument, kind: 'apply' | 'rollback'): void {
    const abort = new AbortController();
    const work: Work = { rollout: rollout.id, kind, abort, done: Promise.resolve() };
    this.#work.set(target, work);
    this.#registration.setTarget(target, { phase: kind === 'apply' ? 'applying' : 'rolling-back', rollout: rollout.id, reason: undefined });
    void this.#registration.flush();
    work.done = (async () => {
      let result: MemberReport;
      try {
        result = kind === 'apply' ? await this.#options.apply(rollout, abort.signal) : await this.#options.rollback(rollout);
      } catch (error) {
        const code = error instanceof HotPatchError ? `${error.code}: ` : '';
        const current = this.#registration.target(target);
        result = {
          phase: kind === 'apply' && abort.signal.aborted ? 'rolled-back' : 'failed',
          version: current?.version ?? 'unknown',
          reason: `${kind} of ${rollout.patchId} failed: ${code}${messageOf(error)}`,
        };
        if (current?.patchId !== undefined) result.patchId = current.patchId;
      }
      if (kind === 'apply') this.#applied.set(rollout.id, result.phase);
      else this.#rolledBack.add(rollout.id);
      this.#registration.setTarget(target, {
        phase: result.phase,
        version: result.version,
        patchId: result.patchId ?? undefined,
        ...(result.health === undefined ? {} : { health: result.health }),
        rollout: rollout.id,
        reason: result.reason,
      });
    })()
      .catch(this.#onError)
      .finally(() => {
        if (this.#work.get(target) === work) this.#work.delete(target);
        // The host's own view (health, version) is taken again right after the change, in the same write.
        this.#pollReport();
        this.#forget();
        void this.#registration.flush();
        this.#evaluate(target);
      });
  }

  /** Drops what is remembered of rollouts that are gone from the store (bounded memory). */
  #forget(): void {
    for (const id of [...this.#applied.keys()]) if (this.#rollouts.get(`${this.keys.rollouts}${id}`) === undefined) this.#applied.delete(id);
    for (const id of [...this.#rolledBack]) if (this.#rollouts.get(`${this.keys.rollouts}${id}`) === undefined) this.#rolledBack.delete(id);
    for (const id of [...this.#expired]) if (this.#rollouts.get(`${this.keys.rollouts}${id}`) === undefined) this.#expired.delete(id);
  }
}

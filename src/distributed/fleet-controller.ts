import { HotPatchError, describe, emitRedactedWarning, messageOf } from '../core/index.js';
import type { CryptoPolicy } from '../crypto-agile/index.js';
import type { TrustStore } from '../verification/index.js';
import type { KvStore, Lease, Leadership } from './kv-store.js';
import {
  OPERATOR,
  checkControllerSigner,
  fleetKeys,
  nextTrail,
  parseFleetId,
  readStoredRollout,
  signRolloutState,
  specDigest,
  specOf,
  storedAgent,
  storedRollout,
  storedRolloutText,
  type FleetKeys,
  type RolloutSigner,
  type RolloutState,
  type StoredAgent,
  type StoredRollout,
} from './fleet-rollout.js';
import { RolloutVerifier } from './rollout-verify.js';
import { RolloutReplayGuard } from './rollout-replay.js';
import { AgentReportGuard } from './agent-report-replay.js';
import { everyJittered, positiveMs, sleep } from './fleet-timing.js';
import { PrefixMirror } from './prefix-mirror.js';
import { ACTIVE_ROLLOUT_STATUSES, nextStep, type RolloutStep } from './rollout-progress.js';

export interface RolloutTransition {
  rollout: string;
  from: RolloutState;
  to: RolloutState;
  /** The controller that wrote it. */
  by: string;
}

export interface FleetControllerOptions {
  store: KvStore;
  /** This controller's name in the election (a standby uses another), and the `by` of the states it writes. */
  controllerId: string;
  /**
   * The trust store rollouts are verified against: a rollout that does not verify is never
   * acted on. With an `agents` role, so are agent reports: only one signed by its agent's own
   * key counts (agent-report.ts); without it, reports are taken as stored (the weaker mode).
   */
  trust: TrustStore;
  /** This controller's key, one of the trust store's `controllers`: it signs every state this controller writes. */
  signer: RolloutSigner;
  /** Algorithm policy of the signature checks (default: the built-in one). */
  cryptoPolicy?: CryptoPolicy;
  prefix?: string;
  /** TTL of the election lease (default 10 s): a dead leader is replaced this long after its last renewal. */
  leaseTtlMs?: number;
  /** Re-evaluation period besides the store watch (default 1000 ms); a pass reads the controller's copy of the store, not the store. */
  pollMs?: number;
  /**
   * Full re-read of the agents and rollouts besides the watch (default 30 s, each period drawn
   * from 75-125 % of it; a safety net for lost watch events).
   */
  resyncMs?: number;
  /** Clock (epoch ms) of the soak times (default Date.now). */
  now?: () => number;
  /** Store errors that do not stop the controller (default: a process warning). */
  onError?: (error: unknown) => void;
  /** Called after every state change this controller wrote. */
  onTransition?: (transition: RolloutTransition) => void;
}

/** What the leader's copy of `<prefix>/` holds: agents and rollouts (other keys are ignored). */
type FleetEntry = { kind: 'agent'; agent: StoredAgent } | { kind: 'rollout'; rollout: StoredRollout };

/**
 * Drives rollouts ring by ring. One controller acts at a time: each campaigns in the election
 * `<prefix>:controller` (slashes as colons; an etcd election on a fleet); the others wait as standbys and the
 * first to win takes over when the leader's lease ends. All progress lives in the rollout
 * documents (ring, soak start, status), each changed by compare-and-swap against the exact
 * text read, so a restarted controller or a standby resumes where the last one stopped, and
 * two controllers can never both apply a transition (the second CAS fails).
 *
 * Every rollout is verified against the trust store (and an older state than one already seen
 * refused, rollout-replay.ts) before it is acted on, and every state written is signed by this
 * controller's key (`seq` + 1, the previous state appended to the trail). With an `agents` role,
 * agent reports are verified too (agent-report.ts, agent-report-replay.ts); one refused is
 * reported once (`onError`) and leaves the agent's last accepted report in place: junk written
 * over an agent's key neither speaks for it nor hides it.
 *
 * The leader reads a copy of `<prefix>/` kept current by one watch (`PrefixMirror`): a pass
 * costs no request, and each agent report is parsed once. A pass runs after each batch of
 * changes (one per turn of the event loop, however many reports the batch held), every
 * `pollMs`, and when a soak ends. The copy may lag the store by the watch's delay; a pass
 * acting on an old document only loses its compare-and-swap.
 *
 * Per running rollout, on every pass (`rollout-progress.ts` has the rules as code):
 *  1. any agent (any ring) that failed the rollout or runs it unhealthy → `halted`, then
 *     `rolling-back`: every agent that applied the patch rolls it back;
 *  2. the current ring's alive agents all run the rollout's version, promoted and healthy →
 *     the soak clock starts (`healthySince`); one agent not ready → the clock is cleared;
 *  3. the clock has run `soakMs` → the next ring opens, or after the last ring `completed`
 *     (with `soakMs` 0 the ring passes in the same pass, without writing the clock);
 *  4. a ring with no alive agent waits (`emptyRings: 'wait'`, the default: never widen the
 *     exposure without evidence) or is skipped (`emptyRings: 'skip'`).
 * `rolling-back` becomes `rolled-back` once no alive agent runs the patch (or is still busy).
 * `paused`, `completed`, `rolled-back` and `aborted` rollouts are left alone.
 */
export class FleetController {
  readonly controllerId: string;
  readonly keys: FleetKeys;
  readonly #store: KvStore;
  readonly #verifier: RolloutVerifier;
  readonly #signer: RolloutSigner;
  /** Outlives each term's copy of the fleet: a replay is refused even by a controller that led before. */
  readonly #replays = new RolloutReplayGuard();
  readonly #reportReplays = new AgentReportGuard();
  /**
   * Per rollout id, the newest document accepted (highest seq; bounded like the replay guard):
   * what a replayed older state is healed with.
   */
  readonly #newest = new Map<string, StoredRollout>();
  /** Expired rollouts already reported (once each, bounded). */
  readonly #expired = new Set<string>();
  /** What agent reports are read against (verified when the trust store has an agents role). */
  readonly #agentTrust: { trust: TrustStore; cryptoPolicy?: CryptoPolicy };
  readonly #ttl: number;
  readonly #pollMs: number;
  readonly #resyncMs: number;
  readonly #now: () => number;
  readonly #onError: (error: unknown) => void;
  readonly #onTransition: ((t: RolloutTransition) => void) | undefined;
  #state: 'new' | 'running' | 'stopped' = 'new';
  #leading = false;
  #lease: Lease | undefined;
  #leadership: Leadership | undefined;
  /** The leader's copy of the fleet; undefined while not leading. */
  #view: PrefixMirror<FleetEntry> | undefined;
  /**
   * Per rollout key, the texts this controller replaced whose replacement the watch has not
   * brought back yet: a pass skips a rollout whose copy is one of them (its swap would fail).
   */
  readonly #superseded = new Map<string, Set<string>>();
  #timers: (() => void)[] = [];
  #soakTimer: NodeJS.Timeout | undefined;
  #ticking: Promise<void> | undefined;
  #again = false;
  #leadWaiters: (() => void)[] = [];
  #loop: Promise<void> | undefined;

  constructor(options: FleetControllerOptions) {
    if (typeof options !== 'object' || options === null)
      throw new HotPatchError('INVALID', `fleet controller options must be an object, got ${describe(options)}`);
    if (typeof options.store !== 'object' || options.store === null)
      throw new HotPatchError('INVALID', `options.store must be a KvStore, got ${describe(options.store)}`);
    this.controllerId = parseFleetId(options.controllerId, 'options.controllerId');
    // `by: "operator"` is how readers tell operators' states from controllers'.
    if (this.controllerId === OPERATOR) throw new HotPatchError('INVALID', `options.controllerId cannot be ${JSON.stringify(OPERATOR)}`);
    this.keys = fleetKeys(options.prefix);
    this.#store = options.store;
    this.#signer = checkControllerSigner(options.trust, options.signer);
    // Read under this fleet's prefix: a spec signed for another fleet is refused.
    this.#verifier = new RolloutVerifier(options.trust, options.cryptoPolicy, this.keys.prefix);
    this.#agentTrust = { trust: options.trust, ...(options.cryptoPolicy === undefined ? {} : { cryptoPolicy: options.cryptoPolicy }) };
    this.#ttl = positiveMs(options.leaseTtlMs ?? 10_000, 'options.leaseTtlMs');
    this.#pollMs = positiveMs(options.pollMs ?? 1000, 'options.pollMs');
    this.#resyncMs = positiveMs(options.resyncMs ?? 30_000, 'options.resyncMs');
    this.#now = options.now ?? Date.now;
    this.#onError =
      options.onError ?? ((error) => emitRedactedWarning(`fleet controller ${this.controllerId}: ${messageOf(error)}`, { code: 'HOTPATCH_FLEET_CONTROLLER' }));
    this.#onTransition = options.onTransition;
  }

  /** True while this controller leads (and acts). */
  get leading(): boolean {
    return this.#leading;
  }

  /** Starts campaigning in the background; the leader acts, a standby waits its turn. */
  start(): void {
    if (this.#state !== 'new') throw new HotPatchError('INVALID', `fleet controller ${this.controllerId} was already started`);
    this.#state = 'running';
    this.#loop = this.#campaignLoop();
  }

  /** Resolves once this controller leads and has read the fleet. */
  whenLeading(): Promise<void> {
    if (this.#leading && this.#view !== undefined) return Promise.resolve();
    return new Promise((resolve) => this.#leadWaiters.push(resolve));
  }

  /** Stops acting, resigns and revokes the election lease (a standby takes over at once). */
  async stop(): Promise<void> {
    if (this.#state === 'stopped') return;
    this.#state = 'stopped';
    this.#stepDown();
    const leadership = this.#leadership;
    this.#leadership = undefined;
    if (leadership !== undefined) await leadership.resign().catch(this.#onError);
    const lease = this.#lease;
    this.#lease = undefined;
    if (lease !== undefined) await lease.revoke().catch(this.#onError);
    await this.#ticking?.catch(() => {});
    // The campaign loop ends once the lease is gone (bounded: a store that hangs is not waited on).
    await Promise.race([this.#loop, sleep(this.#ttl)]);
  }

  /** A crash, for tests: stops acting at once and releases the lease without revoking (a standby takes over after its TTL). */
  kill(): void {
    if (this.#state === 'stopped') return;
    this.#state = 'stopped';
    this.#stepDown();
    this.#leadership = undefined;
    this.#lease?.release();
    this.#lease = undefined;
  }

  async #campaignLoop(): Promise<void> {
    let delay = 100;
    while (this.#state === 'running') {
      let lease: Lease | undefined;
      try {
        lease = await this.#store.grantLease(this.#ttl);
        if (this.#state !== 'running') {
          await lease.revoke().catch(() => {});
          return;
        }
        this.#lease = lease;
        const leadership = await this.#store.campaign(this.keys.controller, this.controllerId, lease);
        if (this.#state !== 'running' || this.#lease !== lease) {
          await leadership.resign().catch(() => {});
          return;
        }
        this.#leadership = leadership;
        const lost = Promise.race([leadership.lost, lease.lost]);
        this.#leading = true;
        // Leadership lost: stop acting at once (the flag is also checked before every write).
        void lost.then(() => this.#stepDown());
        await this.#lead();
        await lost;
        delay = 100;
      } catch (error) {
        if (this.#state !== 'running') return;
        this.#onError(error);
      } finally {
        this.#stepDown();
        // Whatever is left of this term is given up before campaigning again.
        if (this.#state === 'running' && lease !== undefined && this.#lease === lease) {
          this.#leadership = undefined;
          this.#lease = undefined;
          await lease.revoke().catch(() => {});
        }
      }
      if (this.#state === 'running') {
        await sleep(delay);
        delay = Math.min(delay * 2, this.#ttl);
      }
    }
  }

  /** Reads the fleet into a copy kept by the watch, then acts on every change, every `pollMs` and after every resync. */
  async #lead(): Promise<void> {
    const view: PrefixMirror<FleetEntry> = new PrefixMirror<FleetEntry>(this.#store, `${this.keys.prefix}/`, {
      parse: (key, raw) => this.#parse(key, raw, view),
      onChange: () => this.#schedule(),
    });
    await view.start();
    if (!this.#leading) {
      await view.stop().catch(this.#onError);
      return;
    }
    this.#view = view;
    const poll = setInterval(() => this.#schedule(), this.#pollMs);
    poll.unref();
    this.#timers.push(() => clearInterval(poll));
    this.#timers.push(
      everyJittered(this.#resyncMs, () => {
        this.#verifier.forget();
        void view.resync().then(() => this.#schedule(), this.#onError);
      }),
    );
    for (const w of this.#leadWaiters.splice(0)) w();
    this.#schedule();
  }

  /** Agents and rollouts that verify, each named by its key; anything else is not acted on. */
  #parse(key: string, raw: string, view: PrefixMirror<FleetEntry>): FleetEntry | undefined {
    if (key.startsWith(this.keys.agents)) {
      try {
        const agent = storedAgent({ key, value: raw }, this.keys, this.#agentTrust);
        this.#reportReplays.accept(agent);
        return { kind: 'agent', agent };
      } catch (error) {
        // Reported once per stored text (the copy keeps the text); the agent's last accepted report stands.
        this.#onError(
          new HotPatchError(error instanceof HotPatchError ? error.code : 'INVALID', `ignoring agent report at ${key}: ${messageOf(error)}`, { cause: error }),
        );
        return view.get(key);
      }
    }
    if (!key.startsWith(this.keys.rollouts)) return undefined;
    let rollout: StoredRollout | undefined;
    try {
      rollout = storedRollout({ key, value: raw }, this.keys, this.#verifier);
      this.#replays.accept(rollout);
      this.#remember(rollout);
      return { kind: 'rollout', rollout };
    } catch (error) {
      if (rollout !== undefined) this.#heal(rollout);
      // Reported once per stored text (the copy keeps the text): a forged or replayed rollout is worth knowing about.
      this.#onError(
        new HotPatchError(error instanceof HotPatchError ? error.code : 'INVALID', `ignoring rollout at ${key}: ${messageOf(error)}`, { cause: error }),
      );
      return undefined;
    }
  }

  #remember(r: StoredRollout): void {
    const seen = this.#newest.get(r.id);
    if (seen !== undefined && seen.seq > r.seq) return;
    this.#newest.delete(r.id); // re-inserted: the Map's order is the order of last use
    this.#newest.set(r.id, r);
    if (this.#newest.size > 4096) this.#newest.delete(this.#newest.keys().next().value!);
  }

  /**
   * A replay (an older signed state put back, `replayed` verified but refused as older than one
   * accepted): writes the newest accepted document's state again, signed by this controller at
   * seq = highest + 1 with the trail continued, by compare-and-swap against the replayed text,
   * so the rollout goes on and no later writer reuses a seq. An operators' state (paused, say),
   * which a controller may not sign, is put back as it was signed. Only while leading.
   */
  #heal(replayed: StoredRollout): void {
    const newest = this.#newest.get(replayed.id);
    if (!this.#leading || newest === undefined || newest.seq <= replayed.seq || newest.key !== replayed.key) return;
    let text: string;
    let healed: RolloutState | undefined;
    if (newest.stateSigners.role === 'controller') {
      const spec = readStoredRollout(newest.raw).spec;
      const state: RolloutState = { ...newest.state, by: this.controllerId, updatedAt: new Date(this.#now()).toISOString() };
      delete state.actor;
      text = storedRolloutText(spec, signRolloutState(newest, specDigest(spec), state, [this.#signer]));
      healed = state;
    } else {
      text = newest.raw;
    }
    void this.#store.compareAndSwap(replayed.key, replayed.raw, text).then((swapped) => {
      if (!swapped) return;
      this.#onError(
        new HotPatchError(
          'INVALID',
          `rollout ${replayed.id}: replayed state ${replayed.seq} replaced by state ${newest.seq} again${healed === undefined ? '' : ` (as ${newest.seq + 1})`}`,
          {
            detail: { rollout: replayed.id, replayed: replayed.seq, restored: healed === undefined ? newest.seq : newest.seq + 1 },
          },
        ),
      );
      if (healed !== undefined) this.#onTransition?.({ rollout: replayed.id, from: replayed.state, to: healed, by: this.controllerId });
    }, this.#onError);
  }

  #stepDown(): void {
    this.#leading = false;
    for (const stop of this.#timers) stop();
    this.#timers = [];
    if (this.#soakTimer !== undefined) clearTimeout(this.#soakTimer);
    this.#soakTimer = undefined;
    this.#superseded.clear();
    const view = this.#view;
    this.#view = undefined;
    void view?.stop().catch(this.#onError);
  }

  /**
   * Coalesces passes: one runs at a time, after the rest of the current turn's changes have
   * arrived (a batch of reports is one pass, not one each), and one more follows if anything
   * happened meanwhile.
   */
  #schedule(): void {
    if (!this.#leading) return;
    this.#again = true;
    if (this.#ticking !== undefined) return;
    const run = async (): Promise<void> => {
      while (this.#again && this.#leading) {
        await new Promise<void>((resolve) => setImmediate(resolve));
        this.#again = false;
        await this.tick().catch(this.#onError);
      }
    };
    const ticking: Promise<void> = run().finally(() => {
      if (this.#ticking === ticking) this.#ticking = undefined;
    });
    this.#ticking = ticking;
  }

  /** One pass over every active rollout, on the leader's copy of the fleet (does nothing unless leading). */
  async tick(): Promise<void> {
    const view = this.#view;
    if (!this.#leading || view === undefined) return;
    const agents: StoredAgent[] = [];
    const rollouts: StoredRollout[] = [];
    for (const entry of view.values()) {
      if (entry.kind === 'agent') agents.push(entry.agent);
      else rollouts.push(entry.rollout);
    }
    for (const r of rollouts.sort((a, b) => (a.createdAt < b.createdAt ? -1 : a.createdAt > b.createdAt ? 1 : 0))) {
      if (!this.#leading) return;
      // Superseded first: the check also forgets the texts the copy has moved past.
      if (this.#isSuperseded(r) || !ACTIVE_ROLLOUT_STATUSES.includes(r.state.status)) continue;
      const step = this.#unexpired(r, nextStep(r, agents, this.#now(), this.controllerId));
      if (step === undefined) continue;
      let current: StoredRollout | undefined = r;
      for (const state of step.writes) {
        current = await this.#write(current, state);
        if (current === undefined) break;
      }
      if (current !== undefined && step.wakeAfterMs !== undefined) this.#wakeAfter(step.wakeAfterMs);
    }
  }

  /**
   * `step` without any write that opens a new ring when `r`'s spec has expired (the rollout is
   * left where it is: no halt, nothing rolled back; reported once through onError).
   */
  #unexpired(r: StoredRollout, step: RolloutStep | undefined): RolloutStep | undefined {
    if (step === undefined || Date.parse(r.expiresAt) > this.#now()) return step;
    const opens = step.writes.findIndex((w) => w.status === 'running' && w.ring > r.state.ring);
    if (opens === -1) return step;
    if (!this.#expired.has(r.id)) {
      this.#expired.add(r.id);
      if (this.#expired.size > 4096) this.#expired.delete(this.#expired.values().next().value!);
      this.#onError(
        new HotPatchError('EXPIRED', `rollout ${r.id} expired at ${r.expiresAt}: not opening ring ${step.writes[opens]!.ring}`, {
          detail: { rollout: r.id, expiresAt: r.expiresAt, ring: r.state.ring },
        }),
      );
    }
    const writes = step.writes.slice(0, opens);
    return writes.length === 0 ? undefined : { writes };
  }

  /** Whether the copy still shows a text this controller already replaced (the watch has not caught up). */
  #isSuperseded(r: StoredRollout): boolean {
    const replaced = this.#superseded.get(r.key);
    if (replaced === undefined) return false;
    if (replaced.has(r.raw)) return true;
    this.#superseded.delete(r.key);
    return false;
  }

  /** The next state, signed, by CAS of the whole document against the exact text read; nothing is written unless leading. */
  async #write(r: StoredRollout, state: RolloutState): Promise<StoredRollout | undefined> {
    if (!this.#leading) return undefined;
    const spec = readStoredRollout(r.raw).spec;
    const raw = storedRolloutText(spec, signRolloutState(r, specDigest(spec), state, [this.#signer]));
    if (!(await this.#store.compareAndSwap(r.key, r.raw, raw))) return undefined;
    let replaced = this.#superseded.get(r.key);
    if (replaced === undefined) this.#superseded.set(r.key, (replaced = new Set()));
    replaced.add(r.raw);
    this.#onTransition?.({ rollout: r.id, from: r.state, to: state, by: this.controllerId });
    const stateSigners = { role: 'controller' as const, keyids: [this.#signer.keyid] };
    return { ...specOf(r), state, seq: r.seq + 1, trail: nextTrail(r), signers: r.signers, stateSigners, raw, key: r.key };
  }

  #wakeAfter(ms: number): void {
    if (this.#soakTimer !== undefined) clearTimeout(this.#soakTimer);
    this.#soakTimer = setTimeout(
      () => {
        this.#soakTimer = undefined;
        this.#schedule();
        // Capped at the longest delay a Node timer keeps (a longer one would fire after 1 ms and
        // spin): a long soak wakes early, finds the soak not over, and sleeps again (chained).
      },
      Math.min(2 ** 31 - 1, Math.max(1, ms + 1)),
    );
    this.#soakTimer.unref();
  }
}

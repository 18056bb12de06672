import { HotPatchError, describe, emitRedactedWarning } from '../core/index.js';
import type { KvStore, Lease, Leadership } from './kv-store.js';
import {
  failureOf,
  fleetKeys,
  listAgents,
  listRollouts,
  parseFleetId,
  readyFor,
  runsRollout,
  type FleetKeys,
  type RolloutDocument,
  type RolloutState,
  type StoredAgent,
  type StoredRollout,
} from './fleet-rollout.js';

export interface RolloutTransition {
  rollout: string;
  from: RolloutState;
  to: RolloutState;
  /** The controller that wrote it. */
  by: string;
}

export interface FleetControllerOptions {
  store: KvStore;
  /** This controller's name in the election (a standby uses another). */
  controllerId: string;
  prefix?: string;
  /** TTL of the election lease (default 10 s): a dead leader is replaced this long after its last renewal. */
  leaseTtlMs?: number;
  /** Re-evaluation period besides the store watch (default 1000 ms). */
  pollMs?: number;
  /** Clock (epoch ms) of the soak times (default Date.now). */
  now?: () => number;
  /** Store errors that do not stop the controller (default: a process warning). */
  onError?: (error: unknown) => void;
  /** Called after every state change this controller wrote. */
  onTransition?: (transition: RolloutTransition) => void;
}

const ACTIVE: readonly string[] = ['running', 'halted', 'rolling-back'];

/**
 * Drives rollouts ring by ring. One controller acts at a time: each campaigns in the election
 * `<prefix>:controller` (slashes as colons; an etcd election on a fleet); the others wait as standbys and the
 * first to win takes over when the leader's lease ends. All progress lives in the rollout
 * documents (ring, soak start, status), each changed by compare-and-swap against the exact
 * text read, so a restarted controller or a standby resumes where the last one stopped, and
 * two controllers can never both apply a transition (the second CAS fails).
 *
 * Per running rollout, on every pass (watch event or `pollMs`):
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
  readonly #ttl: number;
  readonly #pollMs: number;
  readonly #now: () => number;
  readonly #onError: (error: unknown) => void;
  readonly #onTransition: ((t: RolloutTransition) => void) | undefined;
  #state: 'new' | 'running' | 'stopped' = 'new';
  #leading = false;
  #lease: Lease | undefined;
  #leadership: Leadership | undefined;
  #stopWatch: (() => Promise<void>) | undefined;
  #poll: NodeJS.Timeout | undefined;
  #soakTimer: NodeJS.Timeout | undefined;
  #ticking: Promise<void> | undefined;
  #again = false;
  #leadWaiters: (() => void)[] = [];
  #loop: Promise<void> | undefined;

  constructor(options: FleetControllerOptions) {
    if (typeof options !== 'object' || options === null) throw new HotPatchError('INVALID', `fleet controller options must be an object, got ${describe(options)}`);
    if (typeof options.store !== 'object' || options.store === null) throw new HotPatchError('INVALID', `options.store must be a KvStore, got ${describe(options.store)}`);
    this.controllerId = parseFleetId(options.controllerId, 'options.controllerId');
    this.keys = fleetKeys(options.prefix);
    this.#store = options.store;
    this.#ttl = positive(options.leaseTtlMs ?? 10_000, 'options.leaseTtlMs');
    this.#pollMs = positive(options.pollMs ?? 1000, 'options.pollMs');
    this.#now = options.now ?? Date.now;
    this.#onError =
      options.onError ??
      ((error) => emitRedactedWarning(`fleet controller ${this.controllerId}: ${error instanceof Error ? error.message : String(error)}`, { code: 'HOTPATCH_FLEET_CONTROLLER' }));
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

  /** Resolves once this controller leads. */
  whenLeading(): Promise<void> {
    if (this.#leading) return Promise.resolve();
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
        for (const w of this.#leadWaiters.splice(0)) w();
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

  async #lead(): Promise<void> {
    const stop = await this.#store.watch(`${this.keys.prefix}/`, (event) => {
      if (event.key.startsWith(this.keys.agents) || event.key.startsWith(this.keys.rollouts)) this.#schedule();
    });
    if (!this.#leading) {
      await stop().catch(this.#onError);
      return;
    }
    this.#stopWatch = stop;
    this.#poll = setInterval(() => this.#schedule(), this.#pollMs);
    this.#poll.unref();
    this.#schedule();
  }

  #stepDown(): void {
    this.#leading = false;
    if (this.#poll !== undefined) clearInterval(this.#poll);
    if (this.#soakTimer !== undefined) clearTimeout(this.#soakTimer);
    this.#poll = undefined;
    this.#soakTimer = undefined;
    const stop = this.#stopWatch;
    this.#stopWatch = undefined;
    void stop?.().catch(this.#onError);
  }

  /** Coalesces passes: one runs at a time, and one more follows if anything happened meanwhile. */
  #schedule(): void {
    if (!this.#leading) return;
    if (this.#ticking !== undefined) {
      this.#again = true;
      return;
    }
    const run = async (): Promise<void> => {
      do {
        this.#again = false;
        await this.tick().catch(this.#onError);
      } while (this.#again && this.#leading);
    };
    const ticking: Promise<void> = run().finally(() => {
      if (this.#ticking === ticking) this.#ticking = undefined;
    });
    this.#ticking = ticking;
  }

  /** One pass over every active rollout (does nothing unless leading). */
  async tick(): Promise<void> {
    if (!this.#leading) return;
    const [{ agents }, { rollouts }] = await Promise.all([listAgents(this.#store, { prefix: this.keys.prefix }), listRollouts(this.#store, { prefix: this.keys.prefix })]);
    for (const r of rollouts.sort((a, b) => (a.createdAt < b.createdAt ? -1 : a.createdAt > b.createdAt ? 1 : 0))) {
      if (!this.#leading) return;
      if (ACTIVE.includes(r.state.status)) await this.#step(r, agents);
    }
  }

  async #step(r: StoredRollout, agents: StoredAgent[]): Promise<void> {
    const now = this.#now();
    const at = new Date(now).toISOString();
    const base = (status: RolloutState['status'], reason: string | undefined, extra: Partial<RolloutState> = {}): RolloutState => {
      const s: RolloutState = { status, ring: r.state.ring, by: this.controllerId, updatedAt: at, ...extra };
      if (r.state.ringStartedAt !== undefined && s.ringStartedAt === undefined) s.ringStartedAt = r.state.ringStartedAt;
      if (reason !== undefined) s.reason = reason;
      return s;
    };

    if (r.state.status === 'halted') {
      await this.#write(r, base('rolling-back', r.state.reason));
      return;
    }

    if (r.state.status === 'rolling-back') {
      const pending = agents.filter((a) => {
        const rep = a.targets[r.target];
        return runsRollout(rep, r) || (rep?.rollout === r.id && (rep.phase === 'applying' || rep.phase === 'rolling-back'));
      });
      if (pending.length === 0) await this.#write(r, base('rolled-back', r.state.reason));
      return;
    }

    // running
    // step 1: a failure anywhere halts, then every ring rolls back.
    for (const a of agents) {
      const why = failureOf(a.targets[r.target], r);
      if (why === undefined) continue;
      const reason = `agent ${a.agentId} (ring ${a.ring}) failed ${r.patchId}: ${why}`;
      const halted = await this.#write(r, base('halted', reason));
      if (halted !== undefined) await this.#write(halted, { ...halted.state, status: 'rolling-back', updatedAt: new Date(this.#now()).toISOString() });
      return;
    }

    const ring = r.state.ring;
    const members = agents.filter((a) => a.ring === ring);
    // step 4: an empty ring waits or is skipped.
    if (members.length === 0) {
      if (r.emptyRings === 'skip') {
        await this.#advance(r, base, `ring ${ring} has no alive agent: skipped`);
      } else {
        const reason = `waiting: ring ${ring} has no alive agent`;
        if (r.state.reason !== reason || r.state.healthySince !== undefined) await this.#write(r, base('running', reason));
      }
      return;
    }
    // step 2: every agent of the ring ready, or the soak clock is cleared.
    const waiting = members.filter((a) => !readyFor(a.targets[r.target], r));
    if (waiting.length > 0) {
      if (r.state.healthySince !== undefined || r.state.reason?.startsWith('waiting: ring') === true) {
        await this.#write(r, base('running', `ring ${ring}: ${waiting.length}/${members.length} agent(s) not yet promoted and healthy`));
      }
      return;
    }
    if (r.soakMs === 0) {
      await this.#advance(r, base, `ring ${ring} passed: ${members.length} agent(s) promoted and healthy (no soak)`);
      return;
    }
    if (r.state.healthySince === undefined) {
      const reason = `ring ${ring}: all ${members.length} agent(s) promoted and healthy; soaking ${r.soakMs} ms`;
      if (await this.#write(r, base('running', reason, { healthySince: at }))) this.#wakeAfter(r.soakMs);
      return;
    }
    // step 3: soaked long enough → next ring (or completed).
    const soaked = now - Date.parse(r.state.healthySince);
    if (soaked >= r.soakMs) {
      await this.#advance(r, base, `ring ${ring} passed: ${members.length} agent(s) healthy for ${soaked} ms`);
    } else {
      this.#wakeAfter(r.soakMs - soaked);
    }
  }

  async #advance(r: StoredRollout, base: (status: RolloutState['status'], reason: string | undefined, extra?: Partial<RolloutState>) => RolloutState, reason: string): Promise<void> {
    const next = r.state.ring + 1;
    if (next >= r.rings) {
      await this.#write(r, { ...base('completed', `${reason}; all ${r.rings} ring(s) done`), ring: r.rings });
      return;
    }
    const at = new Date(this.#now()).toISOString();
    if (await this.#write(r, { ...base('running', `${reason}; ring ${next} opened`), ring: next, ringStartedAt: at })) this.#schedule();
  }

  /** CAS of the whole document against the exact text read; nothing is written unless leading. */
  async #write(r: StoredRollout, state: RolloutState): Promise<StoredRollout | undefined> {
    if (!this.#leading) return undefined;
    const doc: RolloutDocument = {
      id: r.id,
      target: r.target,
      patchId: r.patchId,
      version: r.version,
      payloadHash: r.payloadHash,
      rings: r.rings,
      soakMs: r.soakMs,
      emptyRings: r.emptyRings,
      ...(r.zdt === undefined ? {} : { zdt: r.zdt }),
      createdAt: r.createdAt,
      state,
    };
    const raw = JSON.stringify(doc);
    if (!(await this.#store.compareAndSwap(r.key, r.raw, raw))) return undefined;
    this.#onTransition?.({ rollout: r.id, from: r.state, to: state, by: this.controllerId });
    return { ...doc, raw, key: r.key };
  }

  #wakeAfter(ms: number): void {
    if (this.#soakTimer !== undefined) clearTimeout(this.#soakTimer);
    this.#soakTimer = setTimeout(() => {
      this.#soakTimer = undefined;
      this.#schedule();
      // Capped at the longest delay a Node timer keeps (a longer one would fire after 1 ms and
      // spin): a long soak wakes early, finds the soak not over, and sleeps again (chained).
    }, Math.min(2 ** 31 - 1, Math.max(1, ms + 1)));
    this.#soakTimer.unref();
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

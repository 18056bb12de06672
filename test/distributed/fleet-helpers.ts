import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { runCli } from '../../src/cli/main.js';
import { Registries, type VerifiedManifest } from '../../src/core/index.js';
import {
  FleetController,
  FleetMember,
  plannerFleetHooks,
  type FleetControllerOptions,
  type KvStore,
  type MemberReport,
  type RolloutActionOptions,
  type RolloutOrder,
  type RolloutSigner,
  type RolloutTransition,
} from '../../src/distributed/index.js';
import { Planner, type PlanZdtOptions } from '../../src/orchestration/index.js';
import { FileSystemRepository } from '../../src/repo/index.js';
import { SecurityGate } from '../../src/security/index.js';
import { DefaultVerifier, parseTrustStore, type TrustStore } from '../../src/verification/index.js';
import type { Target } from '../../src/zero-downtime/index.js';
import { AGENT_KEYS, FLEET_TRUST, OPERATORS, agentSigner, controllerSigner } from '../support/fleet-keys.js';
import { CI_TRUST, publishPatch } from '../support/patches.js';
import { signedPatch, world, type World } from '../zero-downtime/fixtures.js';

// The fleet's keys and trust store live in test/support (fleet processes and joined agents use them too).
export {
  AGENT_IDS,
  AGENT_KEYS,
  FLEET_AGENTS_TRUST,
  FLEET_AGENTS_TRUST_DOCUMENT,
  FLEET_TRUST,
  FLEET_TRUST_DOCUMENT,
  KEYS,
  OPERATORS,
  agentSigner,
  controllerSigner,
  signerOf,
  writeAgentKeyFile,
  writeFleetFiles,
} from '../support/fleet-keys.js';

/** The target every test agent declares: a SHA-256 hex digest service. */
export const T = 'xps.crypto.hash.sha256';
export type DigestApi = { digest(s: string): string };

export const sha256hex = (s: string): string => createHash('sha256').update(s).digest('hex');
const ABC = 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad';

/** What an operator's call needs, signed by both operators unless `signers` says otherwise. */
export function ops(prefix: string, signers: RolloutSigner[] = OPERATORS): RolloutActionOptions {
  return { prefix, trust: FLEET_TRUST, signers };
}

/** A correct implementation, as a really signed patch. */
export const GOOD_SOURCE = `import { createHash } from 'node:crypto';
export const api = { digest: (s) => createHash('sha256').update(s).digest('hex') };
export function selfTest() { if (api.digest('abc') !== '${ABC}') throw new Error('KAT abc'); }`;

/** Fails its own known-answer test: never takes a live call anywhere. */
export const SELF_TEST_FAILS_SOURCE = `import { createHash } from 'node:crypto';
export const api = { digest: (s) => createHash('sha256').update(s + ' ').digest('hex') };
export function selfTest() { if (api.digest('abc') !== '${ABC}') throw new Error('KAT abc: wrong digest'); }`;

/** Correct for ordinary input, throws for input starting with "#": passes the canary, fails later traffic. */
export const POISONED_SOURCE = `import { createHash } from 'node:crypto';
export const api = { digest: (s) => { if (s.startsWith('#')) throw new Error('cannot digest ' + s); return createHash('sha256').update(s).digest('hex'); } };`;

export interface TestPatch {
  verified: VerifiedManifest;
  payload: Uint8Array;
  id: string;
  version: string;
  payloadHash: string;
  /** The ES module `startFleet` publishes, ci-signed, into the fleet's repository. */
  source: string;
}

export function patch(id: string, version: string, source: string): TestPatch {
  const p = signedPatch(id, T, version, source);
  return { ...p, id, version, payloadHash: p.verified.manifest.payload_hash, source };
}

/** Fast canary: two steps, short intervals, no jitter (the load below gives enough calls). The agents' own canary options. */
export const CANARY: PlanZdtOptions = {
  steps: [0.5, 1],
  canaryInterval: 25,
  backoffFactor: 1,
  jitterRatio: 0,
  minCallsPerStep: 5,
  minCalls: 0,
  maxInconclusiveExtensions: 60,
  probationMs: 0,
  drainTimeoutMs: 1000,
};

/** What agents did, in order, across the whole fleet. */
export interface LogEntry {
  agent: string;
  ring: number;
  rollout: string;
  event: 'apply-start' | 'apply-end' | 'rollback';
  phase?: string;
  at: number;
}

/** Steady traffic on a target (a few calls every few ms), as a live service would have. */
export class Traffic {
  calls = 0;
  failures = 0;
  /** Inputs start with "#" while true. */
  poisoned = false;
  #timer: NodeJS.Timeout;
  constructor(target: Target<DigestApi>, everyMs = 10, perTick = 5) {
    this.#timer = setInterval(() => {
      for (let i = 0; i < perTick; i++) {
        const input = `${this.poisoned ? '#' : 'm'}${this.calls}`;
        this.calls += 1;
        try {
          if (target.api.digest(input) !== sha256hex(input)) this.failures += 1;
        } catch {
          this.failures += 1;
        }
      }
    }, everyMs);
  }
  stop(): void {
    clearInterval(this.#timer);
  }
}

export interface TestAgent {
  id: string;
  ring: number;
  store: KvStore;
  world: World;
  target: Target<DigestApi>;
  /** The agent's own Planner (journal in its state directory): every order runs as one of its plans. */
  planner: Planner;
  member: FleetMember;
  traffic: Traffic;
  /** Set to hold this agent's applies until released (a hung host). */
  hold: Promise<void> | undefined;
}

export interface FleetOptions {
  openStore: () => Promise<KvStore>;
  prefix: string;
  /** Agents per ring, e.g. [4, 10, 16]. */
  rings: readonly number[];
  /** Published, really signed by the ci key, into the repository every agent fetches from. */
  patches: readonly TestPatch[];
  leaseTtlMs?: number;
  reportIntervalMs?: number;
  /**
   * Default FLEET_TRUST (no agents role: reports are read unchecked). FLEET_AGENTS_TRUST makes
   * the members require their signer, and the controllers given it count signed reports only.
   */
  trust?: TrustStore;
}

export interface Fleet {
  agents: TestAgent[];
  log: LogEntry[];
  errors: unknown[];
  /** The repository directory every agent's `default` repository reads. */
  repoDir: string;
  /** Publishes one more patch into the fleet's repository. */
  publish(p: TestPatch): Promise<void>;
  ring(n: number): TestAgent[];
  close(): Promise<void>;
}

/** Components as an agent's `defaults` register them: each agent fetches, verifies and gates for itself. */
function agentRegistries(repoDir: string, w: World): Registries {
  const registries = new Registries();
  registries.repositories.register('default', new FileSystemRepository(repoDir));
  registries.verifiers.register('default', new DefaultVerifier(parseTrustStore(CI_TRUST)));
  registries.security.register('default', new SecurityGate());
  registries.installers.register('default', w.installer);
  return registries;
}

/**
 * Starts in-process agents, each with its own store client, runtime, state directory, Planner
 * and traffic. Every agent applies orders as a production agent does (`plannerFleetHooks`):
 * a plan fetched from the shared repository, verified against the ci key, gated, journaled,
 * canaried with the agents' own CANARY options under the rollout's.
 */
export async function startFleet(options: FleetOptions): Promise<Fleet> {
  const log: LogEntry[] = [];
  const errors: unknown[] = [];
  const agents: TestAgent[] = [];
  const repoDir = await mkdtemp(join(tmpdir(), 'hotpatch-fleet-repo-'));
  const publish = (p: TestPatch): Promise<void> => publishPatch(repoDir, p.id, T, p.version, p.source);
  const fleet: Fleet = {
    agents,
    log,
    errors,
    repoDir,
    publish,
    ring: (n) => agents.filter((a) => a.ring === n),
    async close() {
      await Promise.all(
        agents.map(async (a) => {
          a.traffic.stop();
          await a.member.stop().catch(() => {});
          await a.store.close().catch(() => {});
          a.planner.close();
          await a.world.close();
        }),
      );
      await rm(repoDir, { recursive: true, force: true });
    },
  };
  try {
    for (const p of options.patches) await publish(p);
    const specs = options.rings.flatMap((count, ring) =>
      Array.from({ length: count }, (_, i) => ({ ring, id: `agent-r${ring}-${String(i).padStart(2, '0')}` })),
    );
    await Promise.all(
      specs.map(async ({ ring, id }) => {
        const store = await options.openStore();
        const w = await world();
        const target = w.runtime.target<DigestApi>(T, {
          version: '1.0.0',
          impl: { digest: sha256hex },
          deterministic: true,
          selfTest: (api) => {
            if (api.digest('abc') !== ABC) throw new Error('host KAT abc');
          },
        });
        const planner = await Planner.open({ runtime: w.runtime, registries: agentRegistries(repoDir, w), stateDir: w.dir }).catch(async (error: unknown) => {
          await store.close().catch(() => {});
          await w.close();
          throw error;
        });
        // A plan left waiting (a busy target) is looked at again soon: tests wait on outcomes, not on timers.
        const hooks = plannerFleetHooks(planner, { zdt: CANARY, retryMs: 50 });
        const agent: TestAgent = {
          id,
          ring,
          store,
          world: w,
          target,
          planner,
          traffic: new Traffic(target),
          hold: undefined,
          member: undefined as unknown as FleetMember,
        };
        agent.member = new FleetMember({
          store,
          agentId: id,
          ring,
          prefix: options.prefix,
          trust: options.trust ?? FLEET_TRUST,
          // Every test agent signs its reports with its own key (AGENT_KEYS), as a production agent with `fleet.key`.
          ...(AGENT_KEYS.has(id) ? { signer: agentSigner(id) } : {}),
          leaseTtlMs: options.leaseTtlMs ?? 1500,
          reportIntervalMs: options.reportIntervalMs ?? 100,
          resyncMs: 2000,
          report: hooks.report,
          onError: (e) => errors.push(e),
          async apply(order: RolloutOrder, signal: AbortSignal): Promise<MemberReport> {
            log.push({ agent: id, ring, rollout: order.id, event: 'apply-start', at: Date.now() });
            if (agent.hold !== undefined) {
              await Promise.race([
                agent.hold,
                new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true })),
              ]);
            }
            try {
              const r = await hooks.apply(order, signal);
              log.push({ agent: id, ring, rollout: order.id, event: 'apply-end', phase: r.phase, at: Date.now() });
              return r;
            } catch (error) {
              log.push({ agent: id, ring, rollout: order.id, event: 'apply-end', phase: 'threw', at: Date.now() });
              throw error;
            }
          },
          async rollback(order: RolloutOrder): Promise<MemberReport> {
            log.push({ agent: id, ring, rollout: order.id, event: 'rollback', at: Date.now() });
            return hooks.rollback(order);
          },
        });
        agents.push(agent);
      }),
    );
    agents.sort((a, b) => a.ring - b.ring || (a.id < b.id ? -1 : 1));
    await Promise.all(agents.map((a) => a.member.start()));
    return fleet;
  } catch (error) {
    await fleet.close();
    throw error;
  }
}

export interface TestController {
  controller: FleetController;
  store: KvStore;
  transitions: RolloutTransition[];
  close(): Promise<void>;
}

/** A controller signing with its own key (`controllerSigner`) and trusting FLEET_TRUST, unless told otherwise (errors are dropped unless `onError` is given). */
export async function startController(
  openStore: () => Promise<KvStore>,
  options: Omit<FleetControllerOptions, 'store' | 'trust' | 'signer'> & Partial<Pick<FleetControllerOptions, 'trust' | 'signer'>>,
  transitions: RolloutTransition[] = [],
): Promise<TestController> {
  const store = await openStore();
  const controller = new FleetController({
    leaseTtlMs: 2000,
    pollMs: 50,
    trust: FLEET_TRUST,
    signer: controllerSigner(options.controllerId),
    ...options,
    store,
    onTransition: (t) => transitions.push(t),
    onError: options.onError ?? (() => {}),
  });
  controller.start();
  return {
    controller,
    store,
    transitions,
    async close() {
      await controller.stop().catch(() => {});
      await store.close().catch(() => {});
    },
  };
}

/** Polls `check` until it returns a value other than undefined/false, or fails after `timeoutMs` saying what it waited for. */
export { waitFor } from '../support/wait.js';

/** Unique key prefix per test, so tests sharing one store never see each other's documents. */
let seq = 0;
export function testPrefix(name: string): string {
  return `/test/fleet/${name}-${process.pid}-${++seq}`;
}

/**
 * Ring order: no agent of ring r started applying before every agent of ring r-1 that
 * applied had promoted. Returns, per ring, when its first apply started and last promotion ended.
 */
export function assertRingOrder(
  log: readonly LogEntry[],
  rollout: string,
  rings: number,
  expectedPerRing?: readonly number[],
): { firstStart: number; lastPromoted: number }[] {
  const out: { firstStart: number; lastPromoted: number }[] = [];
  for (let r = 0; r < rings; r++) {
    const entries = log.filter((e) => e.rollout === rollout && e.ring === r);
    const starts = entries.filter((e) => e.event === 'apply-start');
    const promoted = entries.filter((e) => e.event === 'apply-end' && e.phase === 'promoted');
    if (expectedPerRing !== undefined) {
      if (promoted.length !== expectedPerRing[r]) throw new Error(`ring ${r}: ${promoted.length} agents promoted, expected ${expectedPerRing[r]}`);
    }
    if (starts.length === 0) throw new Error(`ring ${r}: no agent applied ${rollout}`);
    out.push({ firstStart: Math.min(...starts.map((e) => e.at)), lastPromoted: Math.max(...promoted.map((e) => e.at)) });
    if (r > 0 && out[r]!.firstStart < out[r - 1]!.lastPromoted) {
      throw new Error(`ring ${r} started applying at ${out[r]!.firstStart}, before ring ${r - 1}'s last promotion at ${out[r - 1]!.lastPromoted}`);
    }
  }
  return out;
}

/** Runs `hotpatch …args --json` in-process; the last stdout line parsed. */
export async function cli(args: string[]): Promise<{ status: number; stdout: string; stderr: string; json: Record<string, unknown> }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (c: Buffer) => (out += c.toString()));
  stderr.on('data', (c: Buffer) => (err += c.toString()));
  const status = await runCli([...args, '--json'], { stdout, stderr });
  const last = out.trimEnd().split('\n').at(-1) ?? '{}';
  return { status, stdout: out, stderr: err, json: JSON.parse(last) as Record<string, unknown> };
}

import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { runCli } from '../../src/cli/main.js';
import { HotPatchError, type VerifiedManifest } from '../../src/core/index.js';
import {
  FleetController,
  FleetMember,
  runtimeFleetHooks,
  type FleetControllerOptions,
  type KvStore,
  type MemberReport,
  type RolloutActionOptions,
  type RolloutOrder,
  type RolloutSigner,
  type RolloutTransition,
} from '../../src/distributed/index.js';
import { parseTrustStore, type TrustStore, type TrustStoreDocument } from '../../src/verification/index.js';
import type { Target, ZdtOptions } from '../../src/zero-downtime/index.js';
import { testKey, type TestKey } from '../support/patches.js';
import { signedPatch, world, type World } from '../zero-downtime/fixtures.js';

/** The target every test agent declares: a SHA-256 hex digest service. */
export const T = 'xps.crypto.hash.sha256';
export type DigestApi = { digest(s: string): string };

export const sha256hex = (s: string): string => createHash('sha256').update(s).digest('hex');
const ABC = 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad';

// --- the fleet's keys ---------------------------------------------------------------------

/**
 * Operators alice and bob (a rollout or a resume needs both: fleet.threshold 2; a pause or an
 * abort either: stopThreshold 1), carol (a fleet key restricted to xps.net.*), the controllers
 * ctl-a and ctl-b, and outsider (in the trust store, in no role).
 */
export const KEYS = {
  alice: testKey('ops-alice'),
  bob: testKey('ops-bob'),
  carol: testKey('ops-carol'),
  ctlA: testKey('ctl-a'),
  ctlB: testKey('ctl-b'),
  outsider: testKey('outsider'),
};
export const signerOf = (k: TestKey): RolloutSigner => ({ keyid: k.keyid, privateKey: k.privateKey });
export const FLEET_TRUST_DOCUMENT: TrustStoreDocument = {
  keys: Object.fromEntries(
    Object.values(KEYS).map((k) => [k.keyid, { alg: k.alg, public_key: k.publicPem, ...(k === KEYS.carol ? { targets: ['xps.net.*'] } : {}) }]),
  ),
  threshold: 1,
  fleet: { keys: ['ops-alice', 'ops-bob', 'ops-carol'], threshold: 2, stopThreshold: 1 },
  controllers: { keys: ['ctl-a', 'ctl-b'] },
};
export const FLEET_TRUST: TrustStore = parseTrustStore(FLEET_TRUST_DOCUMENT);
/** Both operators: enough for anything. */
export const OPERATORS: RolloutSigner[] = [signerOf(KEYS.alice), signerOf(KEYS.bob)];
/** The controllers' keys by controller id (any other id signs with ctl-a's key). */
const CONTROLLER_SIGNERS: Record<string, RolloutSigner> = { 'ctl-a': signerOf(KEYS.ctlA), 'ctl-b': signerOf(KEYS.ctlB) };
export const controllerSigner = (controllerId: string): RolloutSigner => CONTROLLER_SIGNERS[controllerId] ?? signerOf(KEYS.ctlA);

/** What an operator's call needs, signed by both operators unless `signers` says otherwise. */
export function ops(prefix: string, signers: RolloutSigner[] = OPERATORS): RolloutActionOptions {
  return { prefix, trust: FLEET_TRUST, signers };
}

/** The trust store and the operators' key files, as the CLI reads them: `--trust` and `--key` arguments. */
export async function writeFleetFiles(dir: string): Promise<{ trust: string; alice: string; bob: string; signing: string[] }> {
  const trust = join(dir, 'fleet-trust.json');
  await writeFile(trust, JSON.stringify(FLEET_TRUST_DOCUMENT));
  const files: Record<string, string> = {};
  for (const k of [KEYS.alice, KEYS.bob]) {
    files[k.keyid] = join(dir, `${k.keyid}.key`);
    await writeFile(files[k.keyid]!, k.privateKey.toPem(), { mode: 0o600 });
  }
  const alice = files['ops-alice']!;
  const bob = files['ops-bob']!;
  return { trust, alice, bob, signing: ['--trust', trust, '--key', alice, '--key', bob] };
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
}

export function patch(id: string, version: string, source: string): TestPatch {
  const p = signedPatch(id, T, version, source);
  return { ...p, id, version, payloadHash: p.verified.manifest.payload_hash };
}

/** Fast canary: two steps, short intervals, no jitter (the load below gives enough calls). */
export const CANARY: Omit<ZdtOptions, 'signal'> = {
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
  patches: readonly TestPatch[];
  leaseTtlMs?: number;
  reportIntervalMs?: number;
  /** Default FLEET_TRUST. */
  trust?: TrustStore;
}

export interface Fleet {
  agents: TestAgent[];
  log: LogEntry[];
  errors: unknown[];
  ring(n: number): TestAgent[];
  close(): Promise<void>;
}

/** Starts in-process agents, each with its own store client, runtime, state directory and traffic. */
export async function startFleet(options: FleetOptions): Promise<Fleet> {
  const log: LogEntry[] = [];
  const errors: unknown[] = [];
  const agents: TestAgent[] = [];
  const byId = new Map(options.patches.map((p) => [p.id, p]));
  const fleet: Fleet = {
    agents,
    log,
    errors,
    ring: (n) => agents.filter((a) => a.ring === n),
    async close() {
      await Promise.all(
        agents.map(async (a) => {
          a.traffic.stop();
          await a.member.stop().catch(() => {});
          await a.store.close().catch(() => {});
          await a.world.close();
        }),
      );
    },
  };
  try {
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
        const hooks = runtimeFleetHooks(
          w.runtime,
          w.installer,
          (order) => {
            const p = byId.get(order.patchId);
            if (p === undefined) throw new HotPatchError('NOT_FOUND', `no patch ${order.patchId} in the test repository`);
            return p;
          },
          { applyOptions: CANARY },
        );
        const agent: TestAgent = {
          id,
          ring,
          store,
          world: w,
          target,
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

/** A controller signing with its own key (`controllerSigner`) and trusting FLEET_TRUST, unless told otherwise. */
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
    onError: () => {},
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

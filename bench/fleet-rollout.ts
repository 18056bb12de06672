/*
 * Benchmark 6 — fleet rollout coordination on etcd: convergence time and etcd requests per
 * agent for 50, 200 and 1,000 in-process agents.
 *
 * A real 3-member etcd cluster on loopback (test/distributed/etcd-cluster.ts). Each agent is
 * a FleetMember with its own EtcdStore client (its own gRPC channels), report poll 1 s, in 3
 * rings of 10 % / 30 % / 60 % of the agents. Time-driven traffic is kept out of the measured
 * rollouts and stated in the note instead: a 10 min lease (keep-alives go every 200 s, 3 per
 * TTL per agent whatever happens; a 1,000-agent rollout takes seconds, so a shorter lease would
 * count keep-alives as rollout traffic) and a 10 min resync (one list of the rollouts per agent
 * per period; 30 s by default). One FleetController (default lease, poll 1 s; it acts on watch
 * events, from its own copy of the fleet). Soak 0 ms, so a ring passes as soon as its last
 * agent reports. Everything (the agents, their gRPC clients and the controller) shares this
 * one process and its 2 cores with the 3 etcd members, so the convergence time includes N
 * clients' event handling on this machine's cores.
 *
 * Each agent applies every order as a production agent does (`plannerFleetHooks`): a plan of
 * its own Planner (journal in its own state directory), its patch fetched from a repository
 * directory every agent reads, verified against the agent's trust store, security gate,
 * staged and loaded by its own DynamicInstaller, one canary step at 100 % judged on the
 * calls a pump gives every target under apply (one look after 1 ms), promoted. So the
 * convergence time includes N real applies on these cores (journal and staging fsyncs, one
 * module load per agent), and an agent writes `applying` before its outcome: two report
 * writes per agent per rollout.
 *
 * Per size: start the agents, 50 at a time (a fleet does not boot in one instant, and 1,000
 * clients connecting at once from one process starve each other past the 3 s call deadline;
 * the start-up time and its requests are reported apart), then one unmeasured warm-up rollout
 * (each client opens its channels to the other members on first use), then ROLLOUTS rollouts
 * one after another, each of a new version. Measured per rollout: convergence = from
 * `createRollout` returning to the controller's compare-and-swap to `completed`; requests
 * per agent = the growth of every agent store's `requestCount` from before `createRollout`
 * until every agent is idle with its last report written, divided by the agent count (unary
 * RPCs, watch/keep-alive streams and keep-alive messages, retries included); controller
 * requests = its store's growth. Median over the rollouts. Each rollout's patch is packed and
 * signed into the repository before the clock starts.
 *
 * Ratios are against 50 agents. Goals, at 1,000 agents (20× the agents): requests per agent
 * stay flat (<= 1.1×: the per-agent cost is O(1), whatever the fleet size), and convergence
 * takes no more than twice as long (<= 2×). 200 agents are shown for the shape of the curve.
 *
 * Rollouts are signed as in production: the spec by one operator key (ed25519), each state by
 * the controller's key; every agent verifies each rollout document it receives (the spec's
 * and the state's signature), so the convergence time includes those verifications.
 *
 * --quick: 50 and 1,000 agents (the goals keep their meaning), 2 measured rollouts each.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EventBus, Registries } from '../src/core/index.js';
import { generateKeyPair, type PrivateKey } from '../src/crypto-agile/index.js';
import { FleetController, FleetMember, createRollout, plannerFleetHooks, type RolloutSigner } from '../src/distributed/index.js';
import { DynamicInstaller } from '../src/installer/index.js';
import { Planner, type PlanZdtOptions } from '../src/orchestration/index.js';
import { FileSystemRepository, packPatch } from '../src/repo/index.js';
import { SecurityGate } from '../src/security/index.js';
import { DefaultVerifier, parseTrustStore, signPatch, type TrustStore } from '../src/verification/index.js';
import { HotPatchRuntime, type Target } from '../src/zero-downtime/index.js';
import { EtcdStore } from '../src/distributed/etcd-store.js';
import { startEtcdCluster, type EtcdCluster } from '../test/distributed/etcd-cluster.js';
import { judge, median, type Row } from './harness.js';

const NAME = 'fleet-rollout';
const FULL = { sizes: [50, 200, 1000], rollouts: 5 };
const QUICK = { sizes: [50, 1000], rollouts: 2 };
const TARGET = 'bench.fleet.target';
const TIMEOUT_MS = 60_000;
const LEASE_TTL_MS = 600_000;
const RESYNC_MS = 600_000;
/** Agents started together: see the header. */
const START_BATCH = 50;
const REQUESTS_GOAL = '<= 1.1';
const CONVERGENCE_GOAL = '<= 2';
/** Every agent's canary: one step at 100 %, judged once it has a call (the pump below gives them). */
const CANARY: PlanZdtOptions = {
  steps: [1],
  canaryInterval: 1,
  backoffFactor: 1,
  jitterRatio: 0,
  minCallsPerStep: 1,
  minCalls: 0,
  probationMs: 0,
  drainTimeoutMs: 1000,
};

type BenchApi = { double(n: number): number };
const builtin: BenchApi = { double: (n) => n * 2 };
/** The patch of version `v`: the same answers (the target is deterministic: its outputs are compared). */
const patchSource = (v: string): string => `// ${v}\nexport const api = { double: (n) => n * 2 };\n`;

/** One operator key (the fleet role, threshold 1), one controller key, one key signing patches. */
function signingKeys(): { trust: TrustStore; operator: RolloutSigner; controller: RolloutSigner; patches: PrivateKey } {
  const operator = generateKeyPair('ed25519');
  const controller = generateKeyPair('ed25519');
  const patches = generateKeyPair('ed25519');
  const trust = parseTrustStore({
    keys: {
      'bench-operator': { alg: 'ed25519', public_key: operator.publicKey.toPem() },
      'bench-controller': { alg: 'ed25519', public_key: controller.publicKey.toPem() },
      'bench-ci': { alg: 'ed25519', public_key: patches.publicKey.toPem() },
    },
    threshold: 1,
    rules: [{ targets: ['bench.*'], threshold: 1, keys: ['bench-ci'] }],
    fleet: { keys: ['bench-operator'], threshold: 1 },
    controllers: { keys: ['bench-controller'] },
  });
  return {
    trust,
    operator: { keyid: 'bench-operator', privateKey: operator.privateKey },
    controller: { keyid: 'bench-controller', privateKey: controller.privateKey },
    patches: patches.privateKey,
  };
}

interface Figures {
  convergenceMs: number[];
  requestsPerAgent: number[];
  controllerRequests: number[];
  registrationPerAgent: number;
  startMs: number;
}

/** One service: a runtime with the target, its Planner and the FleetMember applying orders through it. */
interface BenchAgent {
  store: EtcdStore;
  runtime: HotPatchRuntime;
  target: Target<BenchApi>;
  planner: Planner;
  member: FleetMember;
}

async function benchAgent(
  store: EtcdStore,
  id: string,
  ring: number,
  prefix: string,
  dirs: { state: string; repo: string },
  trust: TrustStore,
  errors: unknown[],
): Promise<BenchAgent> {
  await mkdir(dirs.state, { mode: 0o700 });
  const installer = new DynamicInstaller(dirs.state);
  const runtime = new HotPatchRuntime({ stateDir: dirs.state, bus: new EventBus(), installer });
  const target = runtime.target<BenchApi>(TARGET, { version: '1.0.0', impl: builtin, deterministic: true });
  const registries = new Registries();
  registries.repositories.register('default', new FileSystemRepository(dirs.repo));
  registries.verifiers.register('default', new DefaultVerifier(trust));
  registries.security.register('default', new SecurityGate());
  registries.installers.register('default', installer);
  const planner = await Planner.open({ runtime, registries, stateDir: dirs.state });
  const hooks = plannerFleetHooks(planner, { zdt: CANARY });
  const member = new FleetMember({
    store,
    agentId: id,
    ring,
    prefix,
    trust,
    leaseTtlMs: LEASE_TTL_MS,
    resyncMs: RESYNC_MS,
    ...hooks,
    onError: (error) => errors.push(error),
  });
  return { store, runtime, target, planner, member };
}

function ringOf(i: number, n: number): number {
  const f = i / n;
  return f < 0.1 ? 0 : f < 0.4 ? 1 : 2;
}

const requestsOf = (agents: readonly BenchAgent[]): number => agents.reduce((sum, a) => sum + a.store.requestCount, 0);

async function measure(cluster: EtcdCluster, n: number, rollouts: number): Promise<Figures> {
  const prefix = `/bench/fleet/n${n}-${process.pid}`;
  const agents: BenchAgent[] = [];
  const errors: unknown[] = [];
  const controllerStore = new EtcdStore({ endpoints: cluster.endpoints });
  const operator = new EtcdStore({ endpoints: cluster.endpoints });
  const keys = signingKeys();
  const root = await mkdtemp(join(tmpdir(), `hotpatch-bench-fleet-${n}-`));
  const repo = join(root, 'repo');
  await mkdir(repo);
  // Calls for the canaries: every target under apply gets a few each millisecond (idle ones none).
  const pump = setInterval(() => {
    for (const a of agents) if (a.target.applying !== undefined) for (let i = 0; i < 4; i++) a.target.api.double(i);
  }, 1);
  let completed: ((id: string) => void) | undefined;
  const controller = new FleetController({
    store: controllerStore,
    controllerId: 'bench-controller',
    prefix,
    trust: keys.trust,
    signer: keys.controller,
    resyncMs: RESYNC_MS,
    onError: (error) => errors.push(error),
    onTransition: (t) => {
      if (t.to.status === 'completed') completed?.(t.rollout);
      else if (t.to.status !== 'running') errors.push(new Error(`rollout ${t.rollout} became ${t.to.status}: ${t.to.reason}`));
    },
  });
  const checkErrors = (): void => {
    if (errors.length > 0) throw new Error(`${errors.length} agent/controller error(s), first: ${String(errors[0])}`);
  };
  /** One rollout of version 1.0.k over every agent: its convergence time and request counts. */
  const rollout = async (k: number): Promise<{ ms: number; perAgent: number; controller: number }> => {
    const agentRequests = requestsOf(agents);
    const controllerRequests = controllerStore.requestCount;
    const version = `1.0.${k}`;
    const patchId = `bench-patch-${k}`;
    const packed = await packPatch(repo, { id: patchId, target: TARGET, version, type: 'esm', payload: new TextEncoder().encode(patchSource(version)) });
    await signPatch(repo, patchId, keys.patches, { keyid: 'bench-ci' });
    let timer: NodeJS.Timeout | undefined;
    const done = new Promise<string>((resolve, reject) => {
      completed = resolve;
      timer = setTimeout(() => reject(new Error(`rollout ${version} over ${n} agents did not complete within ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
    });
    const t0 = performance.now();
    const r = await createRollout(
      operator,
      {
        id: `bench-${n}-${k}`,
        target: TARGET,
        patchId,
        version,
        payloadHash: packed.manifest.payload_hash,
        rings: 3,
        soakMs: 0,
      },
      { prefix, trust: keys.trust, signers: [keys.operator] },
    );
    const id = await done.finally(() => clearTimeout(timer));
    const ms = performance.now() - t0;
    if (id !== r.id) throw new Error(`completed ${id}, expected ${r.id}`);
    // Every agent runs the version (the controller saw them all promoted).
    const behind = agents.filter((a) => a.target.active.version !== version).length;
    if (behind > 0) throw new Error(`${behind} agent(s) of ${n} do not run ${version} after completion`);
    // Every agent's last report is written before counting.
    await Promise.all(agents.map((a) => a.member.idle()));
    checkErrors();
    return { ms, perAgent: (requestsOf(agents) - agentRequests) / n, controller: controllerStore.requestCount - controllerRequests };
  };
  try {
    for (let i = 0; i < n; i++) {
      const id = `agent-${String(i).padStart(4, '0')}`;
      const store = new EtcdStore({ endpoints: cluster.endpoints });
      agents.push(await benchAgent(store, id, ringOf(i, n), prefix, { state: join(root, id), repo }, keys.trust, errors));
    }
    const startedAt = performance.now();
    for (let i = 0; i < n; i += START_BATCH) await Promise.all(agents.slice(i, i + START_BATCH).map((a) => a.member.start()));
    const startMs = performance.now() - startedAt;
    const registration = requestsOf(agents) / n;
    controller.start();
    await controller.whenLeading();

    const figures: Figures = { convergenceMs: [], requestsPerAgent: [], controllerRequests: [], registrationPerAgent: registration, startMs };
    await rollout(0);
    for (let k = 1; k <= rollouts; k++) {
      const one = await rollout(k);
      figures.convergenceMs.push(one.ms);
      figures.requestsPerAgent.push(one.perAgent);
      figures.controllerRequests.push(one.controller);
    }
    return figures;
  } finally {
    await controller.stop().catch(() => {});
    await Promise.all(
      agents.map(async (a) => {
        await a.member.stop().catch(() => {});
        await a.store.close().catch(() => {});
        a.planner.close();
        a.runtime.close();
      }),
    );
    clearInterval(pump);
    await rm(root, { recursive: true, force: true });
    await controllerStore.close().catch(() => {});
    await operator.close().catch(() => {});
  }
}

export async function run(options: { quick?: boolean } = {}): Promise<Row[]> {
  const { sizes, rollouts } = options.quick === true ? QUICK : FULL;
  const first = sizes[0]!;
  const largest = sizes[sizes.length - 1]!;
  const cluster = await startEtcdCluster();
  const results = new Map<number, Figures>();
  try {
    for (const n of sizes) results.set(n, await measure(cluster, n, rollouts));
  } finally {
    await cluster.stop();
  }
  const base = results.get(first)!;
  const baseConv = median(base.convergenceMs);
  const baseReq = median(base.requestsPerAgent);
  const rows: Row[] = [];
  for (const n of sizes) {
    const f = results.get(n)!;
    const conv = median(f.convergenceMs);
    const req = median(f.requestsPerAgent);
    const isBase = n === first;
    const convRow: Row = {
      benchmark: NAME,
      case: `${n} agents: rollout convergence (3 rings)`,
      unit: 'ms',
      median: conv,
      best: Math.min(...f.convergenceMs),
      rounds: f.convergenceMs.length,
      status: isBase ? 'baseline' : 'info',
      note: `start-up (${START_BATCH} agents at a time) ${f.startMs.toFixed(0)} ms, ${(f.startMs / n).toFixed(2)} ms per agent`,
    };
    const reqRow: Row = {
      benchmark: NAME,
      case: `${n} agents: etcd requests per agent per rollout`,
      unit: 'req/agent',
      median: req,
      best: Math.min(...f.requestsPerAgent),
      rounds: f.requestsPerAgent.length,
      status: isBase ? 'baseline' : 'info',
      note: `registration ${f.registrationPerAgent.toFixed(1)} req/agent; controller ${median(f.controllerRequests).toFixed(0)} req per rollout; idle cost per agent: 3 keep-alives per lease TTL + 1 list per resync period (30 s by default)`,
    };
    if (!isBase) {
      const convRatio = conv / baseConv;
      const reqRatio = req / baseReq;
      const last = n === largest;
      Object.assign(convRow, {
        ratio: convRatio,
        baseline: `${first} agents`,
        ...(last ? { goal: CONVERGENCE_GOAL, status: judge(convRatio, CONVERGENCE_GOAL) } : {}),
      });
      Object.assign(reqRow, { ratio: reqRatio, baseline: `${first} agents`, ...(last ? { goal: REQUESTS_GOAL, status: judge(reqRatio, REQUESTS_GOAL) } : {}) });
    }
    rows.push(convRow, reqRow);
  }
  return rows;
}

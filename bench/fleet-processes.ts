/*
 * Benchmark 11 — fleet-processes: how long a rollout takes to converge over a fleet of 20
 * separate agent processes, beyond the soak time its rings must wait by design.
 *
 * One etcd member on loopback (test/distributed/etcd-cluster.ts; Debian's etcd-server on PATH).
 * 20 service processes (test/support/fleet-host.ts: a runtime with one hot-swappable target,
 * SHA-256, called 4,000 times a second by the process itself, and an agent that joins the
 * fleet by configuration, `startAgent({ fleet })`, with the agent's default lease (10 s) and
 * report poll (1 s); the host sets resync 3 s), half in ring 0 and half in ring 1. They read
 * one repository directory, where each rollout's patch is published really signed by the ci
 * key (test/support/patches.ts), and one trust store file holding the ci key (rule xps.*) and
 * the fleet's roles (test/support/fleet-keys.ts: operators alice and bob, threshold 2;
 * controllers ctl-a, ctl-b). Every order goes through each agent's own Planner: fetch, verify
 * against its trust store, security gate, journal, audit, stage, load, self-test, canary, promote.
 * In this process: one FleetController (ctl-a's key, default lease and poll) and the operators,
 * who sign each rollout (createRollout, alice + bob): 2 rings, soak S, canary zdt `steps [1]`,
 * canary interval 100 ms, and `probationMs: 0` (as fleet-rollout.ts): the rollouts follow each
 * other seconds apart, inside the previous patch's default 60 s probation, whose watch compares
 * latency after promotion with the canary's — across time, so with 20 processes on 2 cores it
 * took a ×8 swing for a regression, rolled an agent back and halted the next rollout (seen).
 *
 * The processes are all spawned at once; reported: until every one printed `ready` (its agent
 * registered in etcd), and the median per process. Then R rollouts one after another, each of
 * a new version, its patch published before the clock starts. Per rollout, from createRollout's
 * return: until every process printed `Activated` for the patch (arrival of its line here), and
 * until the controller wrote `completed`; the fleet overhead = completed − rings × S (all but
 * the soak the rings wait by design: applies, reports, the controller's reactions). Per agent:
 * its own events' timestamps, `Requested` (action fleet-apply, this rollout) → `Activated`.
 * Medians over the rollouts (apply: over every agent of every rollout). Each rollout's timeline
 * (ring opened, every order received, all activated, soak clock started) is printed, and the
 * median time from an agent's order to each stage of its apply (Fetched, Verified, …).
 *
 * Goal (reported, never asserted): fleet overhead < 2 s (ratio to 2000 ms ≤ 1). Everything — 20
 * Node processes, etcd, the controller — shares this machine's cores.
 *
 * A process that exits early fails the benchmark with its stderr tail. Every process and etcd is
 * stopped and the temp directory removed in `finally`, and on SIGINT / SIGTERM.
 *
 * This file sets the run up and drives it; fleet-processes-hosts.ts has the processes (and the
 * cleanup on interrupt), fleet-processes-report.ts the figures and rows.
 *
 * --quick: 6 processes, S = 1000 ms, 2 rollouts. Full: 20 processes, S = 2000 ms, 5 rollouts.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { FleetController, createRollout, listAgents, type KvStore } from '../src/distributed/index.js';
import { EtcdStore } from '../src/distributed/etcd-store.js';
import { parseTrustStore, type TrustStore } from '../src/verification/index.js';
import { findEtcd, startEtcdCluster, type EtcdCluster } from '../test/distributed/etcd-cluster.js';
import { FLEET_TRUST_DOCUMENT, OPERATORS, controllerSigner } from '../test/support/fleet-keys.js';
import { HOST_TARGET } from '../test/support/fleet-processes.js';
import { CI_TRUST, publishPatch, sha256Hex } from '../test/support/patches.js';
import { HOST_MAIN, HostFleet, lineOf, onInterrupt, removeNow, type Host } from './fleet-processes-hosts.js';
import {
  applyStages,
  isActivated,
  lastEvent,
  isOrder,
  ms,
  reportRows,
  span,
  type Figures,
  type Params,
  type RolloutFigures,
} from './fleet-processes-report.js';
import { median, type Row } from './harness.js';

const ZDT = { steps: [1], canaryInterval: 100, probationMs: 0 };
const FULL: Params = { agents: 20, rings: 2, soakMs: 2000, rollouts: 5, canaryInterval: ZDT.canaryInterval };
const QUICK: Params = { agents: 6, rings: 2, soakMs: 1000, rollouts: 2, canaryInterval: ZDT.canaryInterval };
/** Only stop a wait that hangs for good; nothing is judged by them. */
const READY_TIMEOUT_MS = 120_000;
const ROLLOUT_TIMEOUT_MS = 60_000;
const CONTROLLER_ID = 'ctl-a';
const ABC = sha256Hex('abc');
const patchSource = (tag: string): string => `import { createHash } from 'node:crypto';
// ${tag}
export const api = { digest: (s) => createHash('sha256').update(s).digest('hex') };
export function selfTest() { if (api.digest('abc') !== '${ABC}') throw new Error('KAT'); }
`;

/** When the controller wrote what, per rollout (performance.now()). */
interface Progress {
  opened: Map<number, number>;
  soaking: Map<number, number>;
  completed?: number;
}

interface World {
  p: Params;
  fleet: HostFleet;
  operator: KvStore;
  trust: TrustStore;
  progressOf: (rollout: string) => Progress;
  checkErrors: () => void;
}

const names = (hosts: readonly Host[]): string => hosts.map((h) => h.config.agentId).join(', ');

/** Spawns every process at once; resolves once each printed `ready`, with the registration figures. */
async function startHosts(w: World, dir: string, repo: string, trustFile: string, store: string): Promise<Pick<Figures, 'allReadyMs' | 'readyMs'>> {
  const { p, fleet } = w;
  const configs = await Promise.all(
    Array.from({ length: p.agents }, async (_, i) => {
      const ring = Math.floor((i * p.rings) / p.agents);
      const agentId = `agent-r${ring}-${String(i).padStart(2, '0')}`;
      const stateDir = join(dir, agentId);
      await mkdir(stateDir, { mode: 0o700 });
      return { stateDir, repository: repo, trustStore: trustFile, store, ring, agentId, leaseTtlMs: 10_000, reportIntervalMs: 1000 };
    }),
  );
  const spawnedAt = performance.now();
  for (const c of configs) fleet.spawn(c);
  const isReady = (h: Host): { at: number } | undefined => lineOf(h, (l) => l.event === 'ready');
  const readyMs = await fleet.waitFor(
    `${p.agents} agent processes ready`,
    READY_TIMEOUT_MS,
    () => (fleet.hosts.every((h) => isReady(h) !== undefined) ? fleet.hosts.map((h) => isReady(h)!.at - h.spawnedAt) : undefined),
    () => `not ready: ${names(fleet.hosts.filter((h) => isReady(h) === undefined))}`,
  );
  const allReadyMs = Math.max(...fleet.hosts.map((h) => isReady(h)!.at)) - spawnedAt;
  const registered = (await listAgents(w.operator)).agents.length;
  if (registered !== p.agents) throw new Error(`${registered} agents registered in etcd, expected ${p.agents}`);
  console.log(`${p.agents} agent processes ready ${ms(allReadyMs)} after spawning (per process ${span(readyMs)}); ${p.rings} rings, soak ${p.soakMs} ms`);
  return { allReadyMs, readyMs };
}

/** One rollout of `patch` over the fleet, timed from createRollout's return. */
async function rollout(w: World, patch: { id: string; version: string; source: string }): Promise<RolloutFigures> {
  const { p, fleet } = w;
  const r = await createRollout(
    w.operator,
    {
      target: HOST_TARGET,
      patchId: patch.id,
      version: patch.version,
      payloadHash: `sha256:${sha256Hex(patch.source)}`,
      rings: p.rings,
      soakMs: p.soakMs,
      zdt: ZDT,
    },
    { trust: w.trust, signers: OPERATORS },
  );
  const t0 = performance.now();
  const x = w.progressOf(r.id);
  const activated = isActivated(patch.id);
  const completedAt = await fleet.waitFor(
    `rollout ${r.id} completed`,
    ROLLOUT_TIMEOUT_MS,
    () => {
      w.checkErrors();
      return x.completed;
    },
    () =>
      `rings opened after 0: [${[...x.opened.keys()].join(', ')}]; last event per agent: ${fleet.hosts.map((h) => `${h.config.agentId} ${lastEvent(h, patch.id)}`).join(', ')}`,
  );
  await fleet.waitFor(
    `every agent activated ${patch.id}`,
    ROLLOUT_TIMEOUT_MS,
    () => (fleet.hosts.every((h) => lineOf(h, activated) !== undefined) ? true : undefined),
    () => `not activated: ${names(fleet.hosts.filter((h) => lineOf(h, activated) === undefined))}`,
  );
  w.checkErrors();
  const stages = new Map<string, number[]>();
  const applyMs = fleet.hosts.map((h) => {
    const mine = applyStages(h, r.id, patch.id);
    for (const [stage, at] of mine) stages.set(stage, [...(stages.get(stage) ?? []), at]);
    return mine.get('Activated')!;
  });
  const latest = (hosts: readonly Host[], match: Parameters<typeof lineOf>[1]): number => Math.max(...hosts.map((h) => lineOf(h, match)!.at)) - t0;
  const rel = (at: number | undefined): string => (at === undefined ? '?' : `+${ms(at - t0)}`);
  const rings = Array.from({ length: p.rings }, (_, ring) => {
    const hosts = fleet.hosts.filter((h) => h.config.ring === ring);
    return (
      `ring ${ring}: opened ${ring === 0 ? '+0 ms' : rel(x.opened.get(ring))}, every order in +${ms(latest(hosts, isOrder(r.id)))}, ` +
      `all activated +${ms(latest(hosts, activated))}, soak from ${rel(x.soaking.get(ring))}`
    );
  });
  const f: RolloutFigures = {
    activatedMs: latest(fleet.hosts, activated),
    completedMs: completedAt - t0,
    applyMs,
    stages,
    timeline: `${rings.join('; ')}; completed ${rel(completedAt)}`,
  };
  console.log(
    `  ${patch.id}: every agent activated +${ms(f.activatedMs)}, completed +${ms(f.completedMs)}, overhead ${ms(f.completedMs - p.rings * p.soakMs)}; ` +
      `apply per agent median ${ms(median(applyMs))} (${span(applyMs)})\n    ${f.timeline}`,
  );
  return f;
}

async function measure(cluster: EtcdCluster, dir: string, fleet: HostFleet, p: Params): Promise<Figures> {
  const repo = join(dir, 'repo');
  await mkdir(repo);
  // One trust store: the ci key signs patches (xps.*), the fleet roles sign rollouts and states.
  const trustDocument = {
    ...FLEET_TRUST_DOCUMENT,
    keys: { ...FLEET_TRUST_DOCUMENT.keys, ...CI_TRUST.keys },
    rules: [{ targets: ['xps.*'], threshold: 1, keys: ['ci'] }],
  };
  const trustFile = join(dir, 'trust.json');
  await writeFile(trustFile, JSON.stringify(trustDocument));
  const trust = parseTrustStore(trustDocument);
  const patches = Array.from({ length: p.rollouts }, (_, i) => ({ id: `bench-fix-${i + 1}`, version: `1.0.${i + 1}`, source: patchSource(`fix ${i + 1}`) }));
  for (const x of patches) await publishPatch(repo, x.id, HOST_TARGET, x.version, x.source);

  const errors: unknown[] = [];
  const progress = new Map<string, Progress>();
  const progressOf = (id: string): Progress => {
    let x = progress.get(id);
    if (x === undefined) progress.set(id, (x = { opened: new Map(), soaking: new Map() }));
    return x;
  };
  const controllerStore = new EtcdStore({ endpoints: cluster.endpoints });
  const operator = new EtcdStore({ endpoints: cluster.endpoints });
  const controller = new FleetController({
    store: controllerStore,
    controllerId: CONTROLLER_ID,
    trust,
    signer: controllerSigner(CONTROLLER_ID),
    onError: (error) => errors.push(error),
    onTransition: (t) => {
      const at = performance.now();
      const x = progressOf(t.rollout);
      if (t.to.status === 'completed') x.completed = at;
      else if (t.to.status !== 'running') errors.push(new Error(`rollout ${t.rollout} became ${t.to.status}: ${t.to.reason}`));
      else if (t.to.ring !== t.from.ring) x.opened.set(t.to.ring, at);
      else if (t.to.healthySince !== undefined && t.from.healthySince === undefined) x.soaking.set(t.to.ring, at);
      fleet.wake();
    },
  });
  const checkErrors = (): void => {
    fleet.check();
    if (errors.length > 0) throw new Error(`${errors.length} controller error(s), first: ${String(errors[0])}`);
  };
  const w: World = { p, fleet, operator, trust, progressOf, checkErrors };
  try {
    controller.start();
    await controller.whenLeading();
    const store = `etcd://${cluster.endpoints.map((e) => e.slice('http://'.length)).join(',')}`;
    const registration = await startHosts(w, dir, repo, trustFile, store);
    checkErrors();
    const rollouts: RolloutFigures[] = [];
    for (const patch of patches) rollouts.push(await rollout(w, patch));
    // Every host's own count of its calls (printed each second), all answers checked against SHA-256.
    let calls = 0;
    let failed = 0;
    for (const h of fleet.hosts) {
      const last = h.lines.filter((l) => l.event === 'calls').pop();
      calls += Number(last?.calls ?? 0);
      failed += Number(last?.failed ?? 0);
    }
    return { ...registration, rollouts, calls, failed };
  } finally {
    await controller.stop().catch(() => {});
    await fleet.stop();
    await controllerStore.close().catch(() => {});
    await operator.close().catch(() => {});
  }
}

export async function run(options: { quick?: boolean } = {}): Promise<Row[]> {
  const p = options.quick === true ? QUICK : FULL;
  if (!existsSync(HOST_MAIN)) throw new Error(`${HOST_MAIN} is missing: run \`npm run build\` first`);
  findEtcd(); // throws "etcd not found: install it with apt-get install -y etcd-server"
  const fleet = new HostFleet();
  let dir: string | undefined;
  let cluster: EtcdCluster | undefined;
  const release = onInterrupt(() => {
    fleet.killAll();
    for (const m of cluster?.members ?? []) void m.kill();
    if (dir !== undefined) removeNow(dir);
    if (cluster?.members[0] !== undefined) removeNow(dirname(cluster.members[0].dataDir));
  });
  try {
    cluster = await startEtcdCluster({ members: 1 });
    dir = await mkdtemp(join(tmpdir(), 'xps-bench-fleet-procs-'));
    return reportRows(p, await measure(cluster, dir, fleet, p));
  } finally {
    await fleet.stop();
    await cluster?.stop();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true, maxRetries: 5 });
    release();
  }
}

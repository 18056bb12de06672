import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  createRollout,
  fleetStatus,
  getRollout,
  type KvStore,
  type RolloutDocument,
  type RolloutStatus,
  type RolloutTransition,
} from '../../src/distributed/index.js';
import { EtcdStore } from '../../src/distributed/etcd-store.js';
import { startEtcdCluster, type EtcdCluster } from './etcd-cluster.js';
import {
  FLEET_TRUST,
  GOOD_SOURCE,
  POISONED_SOURCE,
  SELF_TEST_FAILS_SOURCE,
  T,
  assertRingOrder,
  cli,
  ops,
  patch,
  startController,
  startFleet,
  testPrefix,
  waitFor,
  writeFleetFiles,
  type Fleet,
  type TestController,
  type TestPatch,
} from './fleet-helpers.js';
import { withDeadline } from '../support/wait.js';

// A real 3-member etcd cluster on loopback; every agent and controller has its own client.
let cluster: EtcdCluster;
const open = async (): Promise<KvStore> => new EtcdStore({ endpoints: cluster.endpoints });

const GOOD = patch('fleet-good-101', '1.0.1', GOOD_SOURCE);
const GOOD2 = patch('fleet-good-102', '1.0.2', GOOD_SOURCE.replace('KAT abc', 'KAT abc (1.0.2)'));
const BAD_KAT = patch('fleet-bad-kat-103', '1.0.3', SELF_TEST_FAILS_SOURCE);
const POISONED = patch('fleet-poisoned-104', '1.0.4', POISONED_SOURCE);
const PATCHES = [GOOD, GOOD2, BAD_KAT, POISONED];
const RINGS = [4, 10, 16]; // 30 agents: ring 0 = canary hosts, then wider rings

/** The CLI's --trust and --key files (fleet-helpers' keys). */
let keysDir: string;
let files: Awaited<ReturnType<typeof writeFleetFiles>>;
before(async () => {
  cluster = await startEtcdCluster();
  keysDir = await mkdtemp(join(tmpdir(), 'hotpatch-fleet-etcd-keys-'));
  files = await writeFleetFiles(keysDir);
});
after(async () => {
  await cluster?.stop();
  if (keysDir !== undefined) await rm(keysDir, { recursive: true, force: true });
});

async function rollout(store: KvStore, prefix: string, p: TestPatch, soakMs: number): Promise<RolloutDocument> {
  return createRollout(store, { target: T, patchId: p.id, version: p.version, payloadHash: p.payloadHash, rings: 3, soakMs }, ops(prefix));
}

/** Waits until the rollout reaches one of `ends`; fails at once if it reaches any other final state. */
async function settle(store: KvStore, prefix: string, id: string, ends: readonly RolloutStatus[], timeoutMs = 30_000): Promise<RolloutDocument> {
  return waitFor(
    `rollout ${id} to become ${ends.join(' or ')}`,
    async () => {
      const r = await getRollout(store, id, { prefix, trust: FLEET_TRUST });
      if (ends.includes(r.state.status)) return r;
      if (['completed', 'rolled-back', 'aborted'].includes(r.state.status)) throw new Error(`rollout ${id} ended ${r.state.status}: ${r.state.reason}`);
      return undefined;
    },
    timeoutMs,
  );
}

/** The controllers' record of a transition (its CAS may land before the controller hears back). */
async function recorded(transitions: RolloutTransition[], id: string, status: RolloutStatus): Promise<void> {
  await waitFor(`the controller to record ${id} ${status}`, () => transitions.some((t) => t.rollout === id && t.to.status === status));
}

const started = (fleet: Fleet, id: string, ring: number): number =>
  fleet.log.filter((e) => e.rollout === id && e.ring === ring && e.event === 'apply-start').length;

describe('a 30-agent fleet over 3 rings on a 3-member etcd cluster', () => {
  const prefix = testPrefix('etcd-rings');
  let fleet: Fleet;
  let a: TestController;
  let b: TestController;
  let operator: KvStore;
  const transitions: RolloutTransition[] = [];

  before(async () => {
    fleet = await startFleet({ openStore: open, prefix, rings: RINGS, patches: PATCHES });
    a = await startController(open, { controllerId: 'ctl-a', prefix }, transitions);
    b = await startController(open, { controllerId: 'ctl-b', prefix }, transitions);
    operator = await open();
    await Promise.race([a.controller.whenLeading(), b.controller.whenLeading()]);
  });
  after(async () => {
    await operator?.close();
    await a?.close();
    await b?.close();
    await fleet?.close();
  });

  test('a good patch reaches every agent ring by ring, with no call failed', async () => {
    const r = await rollout(operator, prefix, GOOD, 200);
    const done = await settle(operator, prefix, r.id, ['completed']);
    assert.equal(done.state.ring, 3);
    await recorded(transitions, r.id, 'completed');
    // No ring-1 agent applied before all ring-0 agents promoted; likewise ring 2 after ring 1.
    assertRingOrder(fleet.log, r.id, 3, RINGS);
    await waitFor('every agent on 1.0.1', () => fleet.agents.every((x) => x.target.active.version === '1.0.1'));
    assert.equal(
      fleet.agents.reduce((n, x) => n + x.traffic.failures, 0),
      0,
    );
    const mine = transitions.filter((t) => t.rollout === r.id);
    // Each ring opened once, in order (compare-and-swap: never twice, whoever led).
    assert.deepEqual(
      mine.filter((t) => t.to.ring !== t.from.ring).map((t) => t.to.ring),
      [1, 2, 3],
    );
    // Each ring soaked at least soakMs after its last agent was ready.
    for (const t of mine.filter((x) => x.to.ring !== x.from.ring)) {
      assert.ok(Date.parse(t.to.updatedAt!) - Date.parse(t.from.healthySince!) >= 200, `ring ${t.from.ring} soaked too briefly`);
    }
    const status = await waitFor('every agent to report 1.0.1, promoted and healthy', async () => {
      const s = await fleetStatus(operator, { prefix, trust: FLEET_TRUST });
      return s.agents.length === 30 &&
        s.agents.every((x) => x.targets[T]?.version === '1.0.1' && x.targets[T]?.phase === 'promoted' && x.targets[T]?.health === 'healthy')
        ? s
        : undefined;
    });
    assert.deepEqual(
      RINGS.map((_, ring) => status.agents.filter((x) => x.ring === ring).length),
      RINGS,
    );
    // The operator's view, through --store etcd://…
    const spec = `etcd://${cluster.endpoints.map((e) => e.replace('http://', '')).join(',')}`;
    const shown = await cli(['fleet', 'status', '--store', spec, '--prefix', prefix, '--trust', files.trust]);
    assert.equal(shown.status, 0, shown.stderr);
    assert.equal((shown.json.agents as unknown[]).length, 30);
    assert.equal((shown.json.rollouts as { id: string; state: { status: string; ring: number } }[])[0]?.state.status, 'completed');
    assert.ok(['ctl-a', 'ctl-b'].includes(shown.json.controller as string));
  });

  test("a rollout's canary options round-trip through etcd: the CLI writes them, every reader parses them back, operator actions keep them", async () => {
    const elsewhere = testPrefix('etcd-zdt'); // no agent or controller there: the document is only stored and read
    const spec = `etcd://${cluster.endpoints.map((e) => e.replace('http://', '')).join(',')}`;
    const created = await cli([
      'fleet',
      'rollout',
      '--store',
      spec,
      '--prefix',
      elsewhere,
      '--id',
      'etcd-zdt-1',
      '--target',
      T,
      '--patch',
      GOOD.id,
      '--version',
      GOOD.version,
      '--payload-hash',
      GOOD.payloadHash,
      '--rings',
      '3',
      '--soak',
      '0',
      '--confidence',
      '0.995',
      '--min-calls',
      '300',
      '--max-latency-shift',
      '0.5',
      '--no-probation-watch',
      ...files.signing,
    ]);
    assert.equal(created.status, 0, created.stderr);
    const zdt = { confidence: 0.995, maxLatencyShift: 0.5, minCalls: 300, probationWatch: false };
    assert.deepEqual((created.json.rollout as { zdt: unknown }).zdt, zdt);
    assert.deepEqual((await getRollout(operator, 'etcd-zdt-1', { prefix: elsewhere })).zdt, zdt);
    const status = await fleetStatus(operator, { prefix: elsewhere });
    assert.deepEqual(status.problems, []);
    assert.deepEqual(status.rollouts[0]?.zdt, zdt);
    const aborted = await cli([
      'fleet',
      'abort',
      '--store',
      spec,
      '--prefix',
      elsewhere,
      '--rollout',
      'etcd-zdt-1',
      '--trust',
      files.trust,
      '--key',
      files.bob,
    ]);
    assert.equal(aborted.status, 0, aborted.stderr);
    assert.deepEqual((await getRollout(operator, 'etcd-zdt-1', { prefix: elsewhere })).zdt, zdt);
  });

  test('a patch that fails its self-test in ring 0 never reaches ring 1 and is rolled back', async () => {
    const before = new Map(fleet.agents.map((x) => [x.id, x.target.active.version]));
    const r = await rollout(operator, prefix, BAD_KAT, 200);
    const done = await settle(operator, prefix, r.id, ['rolled-back']);
    await recorded(transitions, r.id, 'rolled-back');
    assert.match(done.state.reason ?? '', /ring 0\) failed fleet-bad-kat-103: .*SELF_TEST_FAILED/);
    assert.equal(done.state.ring, 0);
    const statuses = transitions.filter((t) => t.rollout === r.id).map((t) => t.to.status);
    assert.deepEqual(
      statuses.filter((s, i) => s !== statuses[i - 1]),
      ['halted', 'rolling-back', 'rolled-back'],
    );
    assert.ok(started(fleet, r.id, 0) >= 1);
    assert.equal(started(fleet, r.id, 1), 0, 'no ring-1 agent was told to apply');
    assert.equal(started(fleet, r.id, 2), 0);
    await Promise.all(fleet.agents.map((x) => x.member.idle()));
    for (const agent of fleet.agents) assert.equal(agent.target.active.version, before.get(agent.id), `${agent.id} ends on its old version`);
    assert.equal(
      fleet.agents.reduce((n, x) => n + x.traffic.failures, 0),
      0,
    );
  });

  test('a patch promoted in ring 0 that turns unhealthy while soaking is rolled back on every ring-0 agent', async () => {
    const before = new Map(fleet.agents.map((x) => [x.id, x.target.active.version]));
    const r = await rollout(operator, prefix, POISONED, 5000);
    // Every canary host promoted it (it serves ordinary input correctly) and the soak began.
    await waitFor('ring 0 to soak', async () => (await getRollout(operator, r.id, { prefix, trust: FLEET_TRUST })).state.healthySince !== undefined);
    for (const agent of fleet.ring(0)) assert.equal(agent.target.active.version, '1.0.4');
    const sick = fleet.ring(0)[1]!;
    sick.traffic.poisoned = true; // traffic it cannot serve: its error rate climbs
    try {
      const done = await settle(operator, prefix, r.id, ['rolled-back']);
      assert.match(done.state.reason ?? '', new RegExp(`agent ${sick.id} \\(ring 0\\) failed fleet-poisoned-104: .*failed \\d+ of \\d+ calls`));
      assert.equal(done.state.ring, 0);
    } finally {
      sick.traffic.poisoned = false;
    }
    await Promise.all(fleet.agents.map((x) => x.member.idle()));
    const rolledBack = fleet.log
      .filter((e) => e.rollout === r.id && e.event === 'rollback')
      .map((e) => e.agent)
      .sort();
    assert.deepEqual(
      rolledBack,
      fleet
        .ring(0)
        .map((x) => x.id)
        .sort(),
      'every ring-0 agent rolled the promoted patch back',
    );
    for (const agent of fleet.agents) assert.equal(agent.target.active.version, before.get(agent.id), `${agent.id} ends on its old version`);
    assert.equal(started(fleet, r.id, 1), 0);
    assert.equal(started(fleet, r.id, 2), 0);
  });
});

describe('failures of fleet members during a rollout (30 agents, 3 rings, etcd)', () => {
  const prefix = testPrefix('etcd-kills');
  let fleet: Fleet;
  let a: TestController;
  let b: TestController;
  let operator: KvStore;
  const transitions: RolloutTransition[] = [];

  before(async () => {
    fleet = await startFleet({ openStore: open, prefix, rings: RINGS, patches: PATCHES });
    a = await startController(open, { controllerId: 'ctl-a', prefix }, transitions);
    b = await startController(open, { controllerId: 'ctl-b', prefix }, transitions);
    operator = await open();
    await Promise.race([a.controller.whenLeading(), b.controller.whenLeading()]);
  });
  after(async () => {
    await operator?.close();
    await a?.close();
    await b?.close();
    await fleet?.close();
  });

  test('an agent killed mid-rollout is dropped when its lease expires, and the rollout completes', async () => {
    const victim = fleet.ring(1)[3]!;
    let release: () => void = () => {};
    victim.hold = new Promise((resolve) => (release = resolve)); // its apply hangs: ring 1 cannot pass while it is alive
    try {
      const r = await rollout(operator, prefix, GOOD, 200);
      await waitFor('the victim to start applying', () => started(fleet, r.id, 1) > 0 && fleet.log.some((e) => e.agent === victim.id && e.rollout === r.id));
      await waitFor('the rest of ring 1 to promote', () =>
        fleet
          .ring(1)
          .filter((x) => x !== victim)
          .every((x) => x.target.active.version === '1.0.1'),
      );
      const killedAt = Date.now();
      await victim.member.kill(); // releases its lease without revoking: a crash
      const listed = await fleetStatus(operator, { prefix, trust: FLEET_TRUST });
      assert.ok(
        listed.agents.some((x) => x.agentId === victim.id),
        'a dead agent stays listed until its lease expires',
      );
      assert.equal((await getRollout(operator, r.id, { prefix, trust: FLEET_TRUST })).state.ring, 1, 'ring 1 waits for the silent agent');
      await waitFor(
        'the dead agent to drop out',
        async () => !(await fleetStatus(operator, { prefix, trust: FLEET_TRUST })).agents.some((x) => x.agentId === victim.id),
        10_000,
      );
      const droppedAt = Date.now();
      assert.ok(droppedAt - killedAt >= 500, `dropped ${droppedAt - killedAt} ms after the kill: only by lease expiry`);
      const done = await settle(operator, prefix, r.id, ['completed']);
      assert.equal(done.state.ring, 3);
      await recorded(transitions, r.id, 'completed');
      const ring1Passed = transitions.find((t) => t.rollout === r.id && t.from.ring === 1 && t.to.ring === 2);
      assert.ok(ring1Passed !== undefined && Date.parse(ring1Passed.to.updatedAt!) >= killedAt, 'ring 1 passed only after the kill');
      for (const agent of fleet.agents) if (agent !== victim) assert.equal(agent.target.active.version, '1.0.1', agent.id);
      assert.equal(victim.target.active.version, '1.0.0', 'the killed agent never applied');
      assert.equal((await fleetStatus(operator, { prefix, trust: FLEET_TRUST })).agents.length, 29);
    } finally {
      release();
    }
  });

  test('the controller killed mid-rollout is replaced by the standby, which resumes from the stored state and finishes', async () => {
    const r = await rollout(operator, prefix, GOOD2, 300);
    await waitFor('ring 1 to open', async () => (await getRollout(operator, r.id, { prefix, trust: FLEET_TRUST })).state.ring >= 1);
    const leader = a.controller.leading ? a : b;
    const standby = leader === a ? b : a;
    assert.equal(standby.controller.leading, false);
    const killedAt = Date.now();
    const ringAtKill = (await getRollout(operator, r.id, { prefix, trust: FLEET_TRUST })).state.ring;
    leader.controller.kill(); // releases its election lease without resigning: a crash
    assert.equal(leader.controller.leading, false, 'a killed controller stops acting at once');
    // Takes over once the dead leader's lease runs out; the deadline only catches a standby that never does.
    await withDeadline(standby.controller.whenLeading(), 20_000, 'the standby to take over');
    const done = await settle(operator, prefix, r.id, ['completed']);
    assert.equal(done.state.ring, 3);
    // The standby signed what it wrote with its own key, which every agent took.
    assert.deepEqual(done.stateSigners, { role: 'controller', keyids: [standby.controller.controllerId] });
    await recorded(transitions, r.id, 'completed');
    const mine = transitions.filter((t) => t.rollout === r.id);
    const afterKill = mine.filter((t) => Date.parse(t.to.updatedAt!) > killedAt);
    assert.ok(afterKill.length > 0);
    assert.ok(
      afterKill.every((t) => t.by === standby.controller.controllerId),
      'only the standby acted after the kill',
    );
    // It resumed where the stored state was: no ring was opened twice, none went back.
    const opened = mine.filter((t) => t.to.ring !== t.from.ring).map((t) => t.to.ring);
    assert.deepEqual(opened, [1, 2, 3]);
    assert.ok(afterKill[0]!.from.ring >= ringAtKill);
    assertRingOrder(fleet.log, r.id, 3, [4, 9, 16]);
    for (const agent of fleet.agents.filter((x) => x.member.running)) assert.equal(agent.target.active.version, '1.0.2', agent.id);
  });
});

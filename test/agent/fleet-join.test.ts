/*
 * An agent joins a fleet by configuration (`startAgent({ fleet })`) and applies signed
 * rollouts through its own Planner: the plan, the journal, the audit log and the fleet's
 * report all say the same thing.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { startAgent, type Agent } from '../../src/agent/index.js';
import { createRollout, fleetPlanId, fleetStatus, openStore, type KvStore } from '../../src/distributed/index.js';
import { CI_TRUST } from '../support/patches.js';
import { isCode } from '../support/assertions.js';
import { FLEET_TRUST, FLEET_TRUST_DOCUMENT, OPERATORS } from '../support/fleet-keys.js';
import { startController, testPrefix, type TestController } from '../distributed/fleet-helpers.js';
import { FAST_ZDT, T, call, endpointOf, faultySource, hostRuntime, makeFixture, until, type Fixture } from './helpers.js';

/** One trust store for both jobs: the ci key signs patches, the fleet's operators and controllers sign rollouts. */
async function writeAgentTrust(f: Fixture): Promise<string> {
  const file = join(f.dir, 'agent-trust.json');
  await writeFile(
    file,
    JSON.stringify({
      ...FLEET_TRUST_DOCUMENT,
      keys: { ...FLEET_TRUST_DOCUMENT.keys, ...CI_TRUST.keys },
      rules: [{ targets: ['xps.*'], threshold: 1, keys: ['ci'] }],
    }),
  );
  return file;
}

async function payloadHashOf(f: Fixture, id: string): Promise<string> {
  return `sha256:${createHash('sha256')
    .update(await readFile(join(f.repoDir, `${id}.bin`)))
    .digest('hex')}`;
}

interface Setup {
  f: Fixture;
  store: KvStore;
  agent: Agent;
  controller: TestController;
  prefix: string;
  stopTraffic(): void;
  close(): Promise<void>;
}

async function setup(name: string): Promise<Setup> {
  const f = await makeFixture('hotpatch-fleet-join-');
  const storeDir = join(f.dir, 'fleet-store');
  const prefix = testPrefix(name);
  const trustStore = await writeAgentTrust(f);
  const { runtime, target } = hostRuntime(f.stateDir);
  const agent = await startAgent({
    stateDir: f.stateDir,
    runtime,
    defaults: { repository: f.repoDir, trustStore },
    log: false,
    fleet: { store: `file:${storeDir}`, ring: 0, agentId: 'host-a', labels: { zone: 'eu-1', role: 'api' }, prefix, leaseTtlMs: 2000, reportIntervalMs: 50 },
  });
  // Live calls for the canary to judge.
  const traffic = setInterval(() => {
    for (let i = 0; i < 20; i++) target.api.digest(`call ${Math.random()}`);
  }, 2);
  const store = await openStore(`file:${storeDir}`);
  const controller = await startController(() => openStore(`file:${storeDir}`), { controllerId: 'ctl-a', prefix });
  return {
    f,
    store,
    agent,
    controller,
    prefix,
    stopTraffic: () => clearInterval(traffic),
    async close() {
      clearInterval(traffic);
      await controller.close();
      await agent.close();
      await store.close();
      await f.close();
    },
  };
}

test('an agent started with `fleet` registers, and applies a signed rollout through its own Planner: plan, journal, audit and report agree', async () => {
  const s = await setup('join');
  try {
    assert.deepEqual([s.agent.fleet?.agentId, s.agent.fleet?.ring], ['host-a', 0]);
    await until(async () => (await fleetStatus(s.store, { prefix: s.prefix })).agents.some((a) => a.agentId === 'host-a' && a.targets[T]?.version === '1.0.0'));
    // Its labels are in its registration, as the fleet's status shows it.
    const registered = (await fleetStatus(s.store, { prefix: s.prefix })).agents.find((a) => a.agentId === 'host-a');
    assert.deepEqual(registered?.labels, { role: 'api', zone: 'eu-1' });

    await s.f.publish('fix-201', '1.0.1');
    const rollout = await createRollout(
      s.store,
      { target: T, patchId: 'fix-201', version: '1.0.1', payloadHash: await payloadHashOf(s.f, 'fix-201'), rings: 1, soakMs: 0, zdt: FAST_ZDT },
      { prefix: s.prefix, trust: FLEET_TRUST, signers: OPERATORS },
    );
    await until(
      async () =>
        (await fleetStatus(s.store, { prefix: s.prefix, trust: FLEET_TRUST })).rollouts.find((r) => r.id === rollout.id)?.state.status === 'completed',
    );

    // The plan the order became, run by the agent's planner (its journal entry too).
    const plan = s.agent.planner.plan(fleetPlanId(rollout.id));
    assert.equal(plan.status, 'activated', plan.reason);
    assert.deepEqual(plan.plan.pin, { version: '1.0.1', payloadHash: rollout.payloadHash });
    const journal = JSON.parse(await readFile(join(s.f.stateDir, 'journal.json'), 'utf8')) as { plans: { plan: { id: string } }[] };
    assert.ok(JSON.stringify(journal).includes(fleetPlanId(rollout.id)), 'the journal holds the fleet plan');
    assert.equal(s.agent.runtime.get(T).active.patchId, 'fix-201');
    // The order is in the audit log before the plan's own events, with its signers.
    const audit = (await readFile(join(s.f.stateDir, 'audit.log'), 'utf8')).trim().split('\n');
    const order = audit.findIndex((l) => l.includes('"action":"fleet-apply"'));
    const planned = audit.findIndex((l) => l.includes('"Planned"') && l.includes(fleetPlanId(rollout.id)));
    assert.ok(order !== -1 && planned > order, 'fleet-apply is recorded before the plan is added');
    assert.match(audit[order]!, /"credential":"fleet-rollout"/);
    assert.match(audit[order]!, /"signers":\["ops-alice","ops-bob"\]/);
    // The fleet sees it promoted.
    const me = (await fleetStatus(s.store, { prefix: s.prefix })).agents.find((a) => a.agentId === 'host-a');
    assert.deepEqual([me?.targets[T]?.phase, me?.targets[T]?.version, me?.targets[T]?.patchId], ['promoted', '1.0.1', 'fix-201']);
    // The agent's own API shows the fleet as its store holds it (what the dashboard draws).
    const fleet = await call(endpointOf(s.agent.address), 'GET', '/v1/fleet');
    assert.equal(fleet.status, 200, fleet.text);
    const body = fleet.json as unknown as {
      self: { agentId: string };
      agents: { agentId: string; targets: Record<string, { patchId?: string }> }[];
      rollouts: { id: string; status: string }[];
    };
    assert.equal(body.self.agentId, 'host-a');
    assert.equal(body.agents.find((a) => a.agentId === 'host-a')?.targets[T]?.patchId, 'fix-201');
    assert.ok(body.rollouts.some((r) => r.id === rollout.id && r.status === 'completed'));
  } finally {
    await s.close();
  }
});

test("a rollout whose payload hash is not the repository's signed manifest's is refused by the agent's plan (HASH_MISMATCH), reported failed, and the rollout halts", async () => {
  const s = await setup('mismatch');
  try {
    await s.f.publish('fix-301', '1.0.1');
    const rollout = await createRollout(
      s.store,
      { target: T, patchId: 'fix-301', version: '1.0.1', payloadHash: `sha256:${'ab'.repeat(32)}`, rings: 2, soakMs: 0, zdt: FAST_ZDT },
      { prefix: s.prefix, trust: FLEET_TRUST, signers: OPERATORS },
    );
    await until(async () => {
      const r = (await fleetStatus(s.store, { prefix: s.prefix, trust: FLEET_TRUST })).rollouts.find((x) => x.id === rollout.id);
      return r !== undefined && ['halted', 'rolling-back', 'rolled-back'].includes(r.state.status);
    });
    const plan = s.agent.planner.plan(fleetPlanId(rollout.id));
    assert.deepEqual([plan.status, plan.code], ['failed', 'HASH_MISMATCH'], plan.reason);
    assert.equal(s.agent.runtime.get(T).active.patchId, null, 'nothing applied');
    const me = (await fleetStatus(s.store, { prefix: s.prefix })).agents.find((a) => a.agentId === 'host-a');
    assert.equal(me?.targets[T]?.phase, 'failed');
    assert.match(me?.targets[T]?.reason ?? '', /HASH_MISMATCH/);
  } finally {
    await s.close();
  }
});

test('a faulty patch rolled out to the agent fails its canary there and is reported failed; the agent keeps serving the built-in', async () => {
  const s = await setup('faulty');
  try {
    await s.f.publish('bad-401', '1.0.1', faultySource('bad-401'));
    const rollout = await createRollout(
      s.store,
      { target: T, patchId: 'bad-401', version: '1.0.1', payloadHash: await payloadHashOf(s.f, 'bad-401'), rings: 1, soakMs: 0, zdt: FAST_ZDT },
      { prefix: s.prefix, trust: FLEET_TRUST, signers: OPERATORS },
    );
    await until(() => ['rolled-back', 'failed'].includes(s.agent.planner.plans().find((p) => p.plan.id === fleetPlanId(rollout.id))?.status ?? ''));
    const plan = s.agent.planner.plan(fleetPlanId(rollout.id));
    assert.deepEqual([plan.status, plan.code], ['rolled-back', 'CANARY_FAILED'], plan.reason);
    assert.equal(s.agent.runtime.get(T).active.patchId, null);
    await until(async () => (await fleetStatus(s.store, { prefix: s.prefix })).agents.find((a) => a.agentId === 'host-a')?.targets[T]?.phase === 'failed');
  } finally {
    await s.close();
  }
});

test('joining a fleet needs a trust store with a fleet role and well-formed labels; a refused start leaves the state directory free', async () => {
  const f = await makeFixture('hotpatch-fleet-join-bad-');
  try {
    const storeDir = join(f.dir, 'fleet-store');
    const { runtime } = hostRuntime(f.stateDir);
    // The fixture's trust store signs patches only: no fleet role, no rollout could ever verify.
    await assert.rejects(
      startAgent({
        stateDir: f.stateDir,
        runtime,
        defaults: { repository: f.repoDir, trustStore: f.trustFile },
        log: false,
        fleet: { store: `file:${storeDir}`, ring: 0, agentId: 'x' },
      }),
      isCode('INVALID'),
    );
    await assert.rejects(
      startAgent({
        stateDir: f.stateDir,
        runtime,
        defaults: { repository: f.repoDir },
        log: false,
        fleet: { store: `file:${storeDir}`, ring: 0, agentId: 'x' },
      }),
      (e: Error) => isCode('INVALID')(e) && /trust store is needed/.test(e.message),
    );
    await assert.rejects(
      startAgent({
        stateDir: f.stateDir,
        runtime,
        defaults: { repository: f.repoDir, trustStore: await writeAgentTrust(f) },
        log: false,
        fleet: { store: `file:${storeDir}`, ring: 0, agentId: 'x', colour: 'blue' } as never,
      }),
      isCode('INVALID'),
    );
    // Labels are checked with the other fleet options, before the agent claims anything.
    for (const labels of [{ 'my zone': 'eu' }, { zone: '' }, { zone: 'eu\n1' }, Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`l${i}`, 'x']))]) {
      await assert.rejects(
        startAgent({
          stateDir: f.stateDir,
          runtime,
          defaults: { repository: f.repoDir, trustStore: await writeAgentTrust(f) },
          log: false,
          fleet: { store: `file:${storeDir}`, ring: 0, agentId: 'x', labels },
        }),
        (e: Error) => isCode('INVALID')(e) && /fleet\.labels/.test(e.message),
        JSON.stringify(labels),
      );
    }
    // The directory is free again: a correct start works.
    const agent = await startAgent({
      stateDir: f.stateDir,
      runtime,
      defaults: { repository: f.repoDir, trustStore: await writeAgentTrust(f) },
      log: false,
      fleet: { store: `file:${storeDir}`, ring: 0, agentId: 'x' },
    });
    await agent.close();
  } finally {
    await f.close();
  }
});

test("a second agent started with a live agent's id is refused after one lease TTL, and the live agent keeps its registration", async () => {
  const s = await setup('duplicate-id');
  try {
    const key = `${s.prefix}/agents/host-a`;
    const before = await s.store.get(key);
    assert.ok(before !== undefined, 'host-a is registered');
    const other = await makeFixture('hotpatch-fleet-dup-');
    try {
      const { runtime } = hostRuntime(other.stateDir);
      await assert.rejects(
        startAgent({
          stateDir: other.stateDir,
          runtime,
          defaults: { repository: other.repoDir, trustStore: await writeAgentTrust(other) },
          log: false,
          fleet: { store: `file:${join(s.f.dir, 'fleet-store')}`, ring: 1, agentId: 'host-a', prefix: s.prefix, leaseTtlMs: 500 },
        }),
        isCode('INVALID', /another live agent is registered as host-a .*give each agent its own agentId/),
      );
      runtime.close();
    } finally {
      await other.close();
    }
    // Still the live agent's document (ring 0), not the refused one's.
    const after = JSON.parse((await s.store.get(key))!) as { ring?: number; document?: { ring?: number } };
    assert.equal(after.document?.ring ?? after.ring, 0);
  } finally {
    await s.close();
  }
});

/*
 * plannerFleetHooks directly, over the embedded store, in-process: a fleet member whose
 * orders run as plans of its host's own Planner — a plan left waiting for an approval, a
 * rollout halted while its plan waits, the same order after a restart, and plan ids of long
 * rollout ids.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { after, before, test } from 'node:test';
import { EventBus, HotPatchError, Registries, isPatchId, type Approver, type ApprovalRequest, type HotPatchEvent } from '../../src/core/index.js';
import {
  EmbeddedStore,
  FleetMember,
  createRollout,
  fleetKeys,
  fleetPlanId,
  fleetStatus,
  plannerFleetHooks,
  readStoredRollout,
  signRolloutState,
  specDigest,
  storedRolloutText,
  verifyRolloutDocument,
  type AgentTargetState,
  type KvStore,
  type RolloutDocument,
} from '../../src/distributed/index.js';
import { DynamicInstaller } from '../../src/installer/index.js';
import { Planner } from '../../src/orchestration/index.js';
import { FileSystemRepository } from '../../src/repo/index.js';
import { SecurityGate } from '../../src/security/index.js';
import { DefaultVerifier, parseTrustStore } from '../../src/verification/index.js';
import { HotPatchRuntime, type Target } from '../../src/zero-downtime/index.js';
import { FLEET_TRUST, controllerSigner } from '../support/fleet-keys.js';
import { CI_TRUST, publishPatch } from '../support/patches.js';
import { until, waitFor } from '../support/wait.js';
import { CANARY, GOOD_SOURCE, T, Traffic, ops, patch, sha256hex, testPrefix, type DigestApi, type TestPatch } from './fleet-helpers.js';

let dir: string;
let repoDir: string;
let store: KvStore;
let hostSeq = 0;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hotpatch-fleet-planner-'));
  repoDir = join(dir, 'repo');
  await mkdir(repoDir);
  store = await EmbeddedStore.open(join(dir, 'store'), { pollMs: 10 });
});
after(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

/**
 * Says no until `open` is set, as a quorum not yet reached does; with `hang`, waits instead
 * (as a `DistributedApproval` waiting for votes) until approved or its signal aborts.
 */
class GatedApprover implements Approver {
  open = false;
  asked = 0;
  constructor(readonly hang = false) {}
  async approve(request: ApprovalRequest, signal?: AbortSignal): Promise<Record<string, unknown>> {
    this.asked += 1;
    if (this.hang && !this.open) {
      await new Promise((_, reject) => {
        const stop = (): void => reject(new HotPatchError('ABORTED', `waiting for votes on ${request.patchId} was aborted`));
        if (signal?.aborted === true) stop();
        signal?.addEventListener('abort', stop, { once: true });
      });
    }
    if (!this.open) throw new HotPatchError('APPROVAL_MISSING', `${request.patchId} ${request.version} is not approved yet`);
    return { by: 'test quorum' };
  }
}

/** One service process: runtime, Planner (journal in `stateDir`), fleet member, traffic. */
interface Host {
  runtime: HotPatchRuntime;
  target: Target<DigestApi>;
  planner: Planner;
  member: FleetMember;
  events: HotPatchEvent[];
  /** The orders the hooks acted on (`onOrder`), as `<action> <rollout>`. */
  orders: string[];
  errors: unknown[];
  /** A process exit: the member leaves, the journal is flushed, the runtime closed; the state directory stays. */
  close(): Promise<void>;
}

interface HostOptions {
  /** Registered as `quorum` and named by every fleet plan. */
  approver?: Approver;
  /** How soon the hooks run a waiting plan again (default 20 ms; long: a waiting plan is left alone). */
  retryMs?: number;
}

async function startHost(stateDir: string, prefix: string, options: HostOptions = {}): Promise<Host> {
  const { approver } = options;
  const bus = new EventBus();
  const events: HotPatchEvent[] = [];
  bus.subscribe((e) => events.push(e));
  const installer = new DynamicInstaller(stateDir);
  const runtime = new HotPatchRuntime({ stateDir, bus, installer });
  const target = runtime.target<DigestApi>(T, { version: '1.0.0', impl: { digest: sha256hex }, deterministic: true });
  // After a restart: what state.json says was active is active again.
  await runtime.restore();
  const registries = new Registries();
  registries.repositories.register('default', new FileSystemRepository(repoDir));
  registries.verifiers.register('default', new DefaultVerifier(parseTrustStore(CI_TRUST)));
  registries.security.register('default', new SecurityGate());
  registries.installers.register('default', installer);
  if (approver !== undefined) registries.approvers.register('quorum', approver);
  const planner = await Planner.open({ runtime, registries, stateDir });
  const orders: string[] = [];
  const errors: unknown[] = [];
  const hooks = plannerFleetHooks(planner, {
    zdt: CANARY,
    retryMs: options.retryMs ?? 20,
    ...(approver === undefined ? {} : { components: { approver: 'quorum' } }),
    onOrder: (order, action) => void orders.push(`${action} ${order.id}`),
  });
  const member = new FleetMember({
    store,
    // The state directory is the host: a restarted process is the same agent.
    agentId: basename(stateDir),
    ring: 0,
    prefix,
    trust: FLEET_TRUST,
    reportIntervalMs: 50,
    ...hooks,
    onError: (e) => errors.push(e),
  });
  const traffic = new Traffic(target);
  await member.start();
  return {
    runtime,
    target,
    planner,
    member,
    events,
    orders,
    errors,
    async close() {
      traffic.stop();
      await member.stop();
      await planner.flush();
      planner.close();
      runtime.close();
    },
  };
}

async function published(id: string, version: string): Promise<TestPatch> {
  const p = patch(id, version, GOOD_SOURCE.replace('KAT abc', `KAT abc (${id})`));
  await publishPatch(repoDir, p.id, T, p.version, p.source);
  return p;
}

function rollout(prefix: string, p: TestPatch, id?: string): Promise<RolloutDocument> {
  return createRollout(
    store,
    { ...(id === undefined ? {} : { id }), target: T, patchId: p.id, version: p.version, payloadHash: p.payloadHash, rings: 1, soakMs: 0 },
    ops(prefix),
  );
}

/** What the fleet sees of `host` for T (its registration, as fleetStatus lists it). */
async function reported(prefix: string, host: Host): Promise<AgentTargetState | undefined> {
  return (await fleetStatus(store, { prefix })).agents.find((a) => a.agentId === host.member.agentId)?.targets[T];
}

const stateDirOf = async (name: string): Promise<string> => {
  const d = join(dir, `${name}-${++hostSeq}`);
  await mkdir(d, { mode: 0o700 });
  return d;
};

/** Events of the apply pipeline about patch `id` (fetching, verifying, staging, canary). */
const applyEvents = (events: readonly HotPatchEvent[], id: string): string[] =>
  events.filter((e) => e.id === id && ['Fetched', 'Verified', 'Staged', 'CanaryStarted'].includes(e.type)).map((e) => e.type);

test('a plan left waiting for its approval keeps the member applying; it completes when the approval arrives', async () => {
  const prefix = testPrefix('planner-approval');
  const approver = new GatedApprover();
  const host = await startHost(await stateDirOf('approval'), prefix, { approver });
  try {
    const p = await published('fleet-planner-approve-1', '1.0.1');
    const r = await rollout(prefix, p);
    const planId = fleetPlanId(r.id);
    await waitFor('the plan to wait for its approval', () => host.planner.plans().find((s) => s.plan.id === planId)?.status === 'waiting');
    const waiting = host.planner.plan(planId);
    assert.equal(waiting.code, 'APPROVAL_MISSING', waiting.reason);
    assert.equal(waiting.plan.approver, 'quorum');
    assert.deepEqual(waiting.plan.pin, { version: '1.0.1', payloadHash: p.payloadHash });
    await waitFor('the member to report applying', async () => {
      const t = await reported(prefix, host);
      return t?.phase === 'applying' && t.rollout === r.id;
    });
    assert.equal(host.target.active.patchId, null, 'nothing runs before the approval');
    // Still waiting after the hooks asked again: not reported failed, not given up.
    const asked = approver.asked;
    await until(() => approver.asked > asked + 1, 15_000, 'the hooks to ask the approver again');
    assert.equal((await reported(prefix, host))?.phase, 'applying');

    approver.open = true;
    await waitFor('the member to report promoted', async () => {
      const t = await reported(prefix, host);
      return t?.phase === 'promoted' && t.version === '1.0.1';
    });
    assert.equal(host.planner.plan(planId).status, 'activated');
    assert.equal(host.target.active.patchId, p.id);
    assert.ok(
      host.events.some((e) => e.type === 'Approved' && e.detail?.plan === planId),
      'the approval is recorded as the plan’s',
    );
    assert.deepEqual(host.orders, [`apply ${r.id}`]);
  } finally {
    await host.close();
  }
});

test('a rollout halted while its plan waits cancels the plan: it never runs later, even once approved', async () => {
  const prefix = testPrefix('planner-halted');
  const approver = new GatedApprover();
  // No second look on its own: the plan is waiting, not running, when the rollout halts.
  const host = await startHost(await stateDirOf('halted'), prefix, { approver, retryMs: 60_000 });
  try {
    const p = await published('fleet-planner-halt-1', '1.0.1');
    const r = await rollout(prefix, p);
    const planId = fleetPlanId(r.id);
    await waitFor('the plan to wait for its approval', () => host.planner.plans().find((s) => s.plan.id === planId)?.status === 'waiting');

    // The controller halts the rollout (as when another agent of the ring failed): a state signed by its key.
    const key = `${fleetKeys(prefix).rollouts}${r.id}`;
    const raw = (await store.get(key))!;
    const doc = verifyRolloutDocument(raw, FLEET_TRUST);
    const { spec } = readStoredRollout(raw);
    const halted = signRolloutState(
      doc,
      specDigest(spec),
      { status: 'halted', ring: 0, by: 'ctl-a', updatedAt: new Date().toISOString(), reason: 'agent elsewhere failed' },
      [controllerSigner('ctl-a')],
    );
    await store.put(key, storedRolloutText(spec, halted));

    await waitFor('the plan to be cancelled', () => host.planner.plan(planId).status === 'failed');
    const cancelled = host.planner.plan(planId);
    assert.match(cancelled.reason ?? '', /cancelled/);
    assert.match(cancelled.reason ?? '', new RegExp(`rollout ${r.id} halted`));
    await waitFor('the member to report the apply stopped', async () => {
      const t = await reported(prefix, host);
      return t?.phase === 'rolled-back' && t.rollout === r.id;
    });

    // The approval arriving later changes nothing: the plan has ended, nothing picks it up.
    approver.open = true;
    const again = await host.planner.runOnce(planId);
    assert.equal(again.status, 'failed');
    assert.deepEqual(await host.planner.runWaiting(T), []);
    await host.member.idle();
    assert.equal(host.target.active.patchId, null);
    assert.deepEqual(applyEvents(host.events, p.id), ['Fetched', 'Verified'], 'verified before the approval, never staged or canaried');
    assert.deepEqual(host.orders, [`apply ${r.id}`]);
    assert.deepEqual(host.errors, []);
  } finally {
    await host.close();
  }
});

test('the same order after a restart (new member and planner over the same state directory) is not applied again: the planner returns the ended plan', async () => {
  const prefix = testPrefix('planner-restart');
  const stateDir = await stateDirOf('restart');
  const p = await published('fleet-planner-restart-1', '1.0.1');
  const first = await startHost(stateDir, prefix);
  let r: RolloutDocument;
  let attempts: number;
  try {
    r = await rollout(prefix, p);
    await waitFor('the first process to promote', () => first.member.document.targets[T]?.phase === 'promoted');
    assert.equal(first.planner.plan(fleetPlanId(r.id)).status, 'activated');
    attempts = first.planner.plan(fleetPlanId(r.id)).attempts;
    assert.deepEqual(
      applyEvents(first.events, p.id).filter((t) => t === 'Staged'),
      ['Staged'],
    );
  } finally {
    await first.close();
  }

  const second = await startHost(stateDir, prefix);
  try {
    assert.equal(second.target.active.patchId, p.id, 'restored from state.json');
    // The rollout still orders ring 0 to apply: the new member acts on it once more...
    await until(() => second.orders.length === 1, 15_000, 'the new member to act on the order');
    await second.member.idle();
    assert.deepEqual(second.orders, [`apply ${r.id}`]);
    // ...and the planner answers with the plan that ended before the restart.
    const plan = second.planner.plan(fleetPlanId(r.id));
    assert.equal(plan.status, 'activated');
    assert.equal(plan.attempts, attempts, 'the plan did not run again');
    assert.deepEqual(applyEvents(second.events, p.id), [], 'nothing fetched, staged or canaried again');
    const t = second.member.document.targets[T];
    assert.deepEqual([t?.phase, t?.version, t?.patchId, t?.rollout], ['promoted', '1.0.1', p.id, r.id]);
    await waitFor('the fleet to see it promoted', async () => (await reported(prefix, second))?.phase === 'promoted');
  } finally {
    await second.close();
  }
});

for (const [when, hang] of [
  ['while its plan waits for an approval', false],
  ['while its run waits in the approval phase', true],
] as const) {
  test(`a member stopped ${when} drops the plan (nothing runs it meanwhile); restarted, the same order makes it afresh and completes once approved`, async () => {
    const prefix = testPrefix(`planner-stop-${hang ? 'run' : 'wait'}`);
    const stateDir = await stateDirOf('stop');
    const p = await published(`fleet-planner-stop-${hang ? 'run' : 'wait'}-1`, '1.0.1');
    const approver = new GatedApprover(hang);
    const first = await startHost(stateDir, prefix, { approver, retryMs: 60_000 });
    let r: RolloutDocument;
    try {
      r = await rollout(prefix, p);
      if (hang) await until(() => approver.asked === 1, 15_000, 'the run to reach the approval');
      else await waitFor('the plan to wait for its approval', () => first.planner.plans().find((s) => s.plan.id === fleetPlanId(r.id))?.status === 'waiting');
      await first.member.stop(); // a shutdown: the rollout still orders this ring to apply
      assert.equal(
        first.planner.plans().find((s) => s.plan.id === fleetPlanId(r.id)),
        undefined,
        'the plan is dropped',
      );
      assert.deepEqual(await first.planner.runWaiting(T), [], 'so an unfreeze finds nothing to run');
      assert.equal(first.target.active.patchId, null);
    } finally {
      await first.close();
    }

    approver.open = true;
    const second = await startHost(stateDir, prefix, { approver });
    try {
      await waitFor('the restarted member to promote', () => second.member.document.targets[T]?.phase === 'promoted');
      const plan = second.planner.plan(fleetPlanId(r.id));
      assert.equal(plan.status, 'activated', plan.reason);
      assert.equal(second.target.active.patchId, p.id);
      assert.deepEqual(second.orders, [`apply ${r.id}`]);
      assert.deepEqual(applyEvents(second.events, p.id), ['Fetched', 'Verified', 'Staged', 'CanaryStarted']);
    } finally {
      await second.close();
    }
  });
}

test('a rollout id too long for a plan id still makes a valid, distinct plan id, and that plan runs', async () => {
  assert.equal(fleetPlanId('r-1'), 'fleet-r-1');
  // Up to 122 characters the plan id is the rollout id prefixed; past that, a head and a digest.
  const fits = 'a'.repeat(122);
  assert.equal(fleetPlanId(fits), `fleet-${fits}`);
  const longest = 'a'.repeat(128);
  const near = `${'a'.repeat(127)}b`;
  const ids = [fleetPlanId(fits), fleetPlanId('a'.repeat(123)), fleetPlanId(longest), fleetPlanId(near), fleetPlanId(`${'a'.repeat(96)}.x`)];
  for (const id of ids) assert.ok(isPatchId(id) && id.length <= 128 && id.startsWith('fleet-a'), id);
  assert.equal(new Set(ids).size, ids.length, 'every rollout id has its own plan id');
  assert.equal(fleetPlanId(longest), fleetPlanId(longest), 'derived, so the same after a restart');

  const prefix = testPrefix('planner-long-id');
  const host = await startHost(await stateDirOf('long-id'), prefix);
  try {
    const p = await published('fleet-planner-long-1', '1.0.1');
    const id = `release-2026.12.01-${'x'.repeat(109)}`;
    assert.equal(id.length, 128);
    const r = await rollout(prefix, p, id);
    await waitFor('the member to promote', () => host.member.document.targets[T]?.phase === 'promoted');
    const plan = host.planner.plan(fleetPlanId(r.id));
    assert.equal(plan.status, 'activated', plan.reason);
    assert.ok(plan.plan.id.startsWith('fleet-release-2026.12.01-'));
    assert.equal(host.target.active.patchId, p.id);
  } finally {
    await host.close();
  }
});

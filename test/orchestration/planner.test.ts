import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { HotPatchError, type Approver, type ApprovalRequest } from '../../src/core/index.js';
import { Planner, type PatchPlan } from '../../src/orchestration/index.js';
import { FAST_ZDT, FLAKY, OTHER, T, makeEnv, planOf, types, withTraffic, type Env, type Proc } from './helpers.js';
import { isCode } from '../support/assertions.js';

async function setup(): Promise<{ env: Env; proc: Proc; planner: Planner }> {
  const env = await makeEnv();
  const proc = env.process();
  const planner = await proc.open();
  return { env, proc, planner };
}

/** An approver that says no until `grant()` is called, recording what it was asked. */
function gatedApprover(): Approver & { grant(): void; requests: ApprovalRequest[] } {
  let granted = false;
  const requests: ApprovalRequest[] = [];
  return {
    requests,
    grant: () => (granted = true),
    async approve(request) {
      requests.push(request);
      if (!granted) throw new HotPatchError('APPROVAL_MISSING', `1 of 2 approvals for ${request.patchId}`);
      return { votes: 2, quorum: 2 } as unknown as void;
    },
  };
}

test('a plan runs Fetch → Verify → Gate → Approve → Stage → Canary → Activate, with its events in order and the journal written before each phase', async () => {
  const { env, proc, planner } = await setup();
  try {
    const approver = gatedApprover();
    approver.grant();
    proc.registries.approvers.register('quorum', approver);
    await env.publish('fix-101', '1.0.1');
    // At each of these events the journal on disk must already name the phase in progress.
    const seen: string[] = [];
    proc.runtime.bus.subscribe(
      (e) => {
        const plan = (JSON.parse(readFileSync(join(env.stateDir, 'journal.json'), 'utf8')) as { plans: { status: string; phase?: string }[] }).plans[0]!;
        seen.push(`${e.type}:${plan.status}/${plan.phase ?? '-'}`);
      },
      { types: ['Fetched', 'Approved', 'Staged', 'CanaryStarted'] },
    );

    planner.addPlan(planOf('p1', { patch: 'fix-101', approver: 'quorum' }) as PatchPlan);
    const { result, errors } = await withTraffic(proc, planner.runOnce('p1'));

    assert.equal(result.status, 'activated', result.reason);
    assert.deepEqual([result.patchId, result.version, result.apply?.outcome], ['fix-101', '1.0.1', 'promoted']);
    assert.equal(errors, 0);
    assert.equal(proc.target.active.version, '1.0.1');
    assert.deepEqual(types(proc.events), [
      'Planned',
      'Fetched',
      'Verified',
      'Approved',
      'Staged',
      'CanaryStarted',
      'CanaryStep',
      'CanaryStep',
      'Promoted',
      'Activated',
    ]);
    const verified = proc.events.find((e) => e.type === 'Verified')!;
    assert.deepEqual(verified.detail, { plan: 'p1', signers: ['ci'], threshold: 1 });
    assert.deepEqual([verified.id, verified.target, verified.version], ['fix-101', T, '1.0.1']);
    assert.equal(proc.events.find((e) => e.type === 'Fetched')!.detail?.repo, 'fs');
    assert.deepEqual(proc.events.find((e) => e.type === 'Approved')!.detail, { plan: 'p1', votes: 2, quorum: 2, approver: 'quorum' });
    assert.equal(approver.requests.length, 1);
    assert.match(approver.requests[0]!.payloadHash, /^sha256:[0-9a-f]{64}$/);
    assert.deepEqual(seen, ['Fetched:running/fetch', 'Approved:running/approve', 'Staged:running/apply', 'CanaryStarted:running/apply']);

    const journal = await env.journal();
    assert.equal(journal.format, 1);
    assert.deepEqual(
      (({ status, phase, patchId, version, attempts }) => ({ status, phase, patchId, version, attempts }))(journal.plans[0] as Record<string, unknown>),
      { status: 'activated', phase: 'apply', patchId: 'fix-101', version: '1.0.1', attempts: 1 },
    );
    assert.deepEqual(planner.plan('p1').status, 'activated');
  } finally {
    await env.close();
  }
});

test('re-applying the version that serves after a rollback to it is "already active", not a downgrade of a later version once recorded', async () => {
  const { env, proc, planner } = await setup();
  try {
    await env.publish('fix-201', '1.0.1');
    await env.publish('fix-202', '1.0.2');
    planner.addPlan(planOf('a', { patch: 'fix-201', zdt: { ...FAST_ZDT, probationMs: 0 } }) as PatchPlan);
    assert.equal((await withTraffic(proc, planner.runOnce('a'))).result.status, 'activated');
    planner.addPlan(planOf('b', { patch: 'fix-202', zdt: { ...FAST_ZDT, probationMs: 0 } }) as PatchPlan);
    assert.equal((await withTraffic(proc, planner.runOnce('b'))).result.status, 'activated');
    await proc.runtime.rollback(T, 'back to 1.0.1');
    assert.equal(proc.target.active.version, '1.0.1');
    planner.addPlan(planOf('a-again', { patch: 'fix-201' }) as PatchPlan);
    const again = await planner.runOnce('a-again');
    assert.deepEqual([again.status, again.code], ['activated', undefined], again.reason);
    assert.match(again.reason, /^fix-201 1\.0\.1 is already active$/);
  } finally {
    await env.close();
  }
});

test('running a plan twice is harmless: the second run is a no-op; the same patch under another plan is already active', async () => {
  const { env, proc, planner } = await setup();
  try {
    await env.publish('fix-101', '1.0.1');
    const plan = planOf('p1', { patch: 'fix-101' }) as PatchPlan;
    planner.addPlan(plan);
    assert.equal(planner.addPlan({ ...plan }).status, 'pending', 're-adding the same plan is harmless');
    assert.throws(() => planner.addPlan({ ...plan, patch: 'fix-999' }), isCode('INVALID'));
    const first = await withTraffic(proc, planner.runOnce('p1'));
    assert.equal(first.result.status, 'activated');
    const count = proc.events.length;

    const again = await planner.runOnce('p1');
    assert.deepEqual([again.status, again.patchId, again.version], ['activated', 'fix-101', '1.0.1']);
    assert.equal(proc.events.length, count, 'no event: nothing ran');
    assert.equal(planner.plan('p1').attempts, 1);
    assert.equal(planner.addPlan(plan).status, 'activated');

    planner.addPlan(planOf('p1-again', { patch: 'fix-101' }) as PatchPlan);
    const dup = await planner.runOnce('p1-again');
    assert.equal(dup.status, 'activated');
    assert.match(dup.reason, /already active/);
    assert.ok(!types(proc.events.slice(count)).includes('Staged'));
  } finally {
    await env.close();
  }
});

test('a bad signature fails the plan with BAD_SIGNATURE and leaves the runtime untouched', async () => {
  const { env, proc, planner } = await setup();
  try {
    await env.publish('evil-1', '1.0.1', { forged: true });
    planner.addPlan(planOf('p1', { patch: 'evil-1' }) as PatchPlan);
    const result = await planner.runOnce('p1');
    assert.deepEqual([result.status, result.code], ['failed', 'BAD_SIGNATURE']);
    assert.match(result.reason, /^verify failed: /);
    assert.equal(proc.target.active.version, '1.0.0');
    assert.equal(proc.target.active.patchId, null);
    assert.deepEqual(types(proc.events), ['Planned', 'Fetched', 'Failed']);
    assert.equal(proc.events.at(-1)!.detail?.code, 'BAD_SIGNATURE');
    assert.deepEqual(await proc.runtime.highestVersion(T), undefined);
    // Final: running it again changes nothing.
    assert.equal((await planner.runOnce('p1')).code, 'BAD_SIGNATURE');
    assert.equal(planner.plan('p1').attempts, 1);
  } finally {
    await env.close();
  }
});

test('a plan outside its weekly window waits with the next opening; a window in the past fails it', async () => {
  const env = await makeEnv();
  try {
    const proc = env.process();
    let now = Date.parse('2030-01-07T12:00:00Z'); // a Monday
    const planner = await proc.open({ now: () => now });
    await env.publish('fix-101', '1.0.1');
    planner.addPlan(planOf('p1', { patch: 'fix-101', window: { weekly: [{ days: ['Tue', 'Wed', 'Thu'], start: '09:00', end: '16:00' }] } }) as PatchPlan);
    const waiting = await planner.runOnce('p1');
    assert.equal(waiting.status, 'waiting');
    assert.equal(waiting.nextOpenMs, Date.parse('2030-01-08T09:00:00Z'));
    assert.match(waiting.reason, /outside its time window: outside Tue-Thu 09:00-16:00 UTC; next opening 2030-01-08T09:00:00.000Z/);
    assert.deepEqual(types(proc.events), ['Planned'], 'nothing fetched while the window is closed');

    now = Date.parse('2030-01-08T09:30:00Z');
    assert.equal((await withTraffic(proc, planner.runOnce('p1'))).result.status, 'activated');

    planner.addPlan(planOf('late', { patch: 'fix-101', window: { notBefore: '2020-01-01T00:00:00Z', notAfter: '2020-01-02T00:00:00Z' } }) as PatchPlan);
    const late = await planner.runOnce('late');
    assert.equal(late.status, 'failed');
    assert.match(late.reason, /time window: the time window closed at 2020-01-02T00:00:00Z/);
    assert.equal(proc.events.at(-1)!.type, 'Failed');
  } finally {
    await env.close();
  }
});

test('dependsOn: a dependent waits until its dependency activates, then runs', async () => {
  const { env, proc, planner } = await setup();
  try {
    await env.publish('core-1', '1.0.1', { target: OTHER });
    await env.publish('fix-101', '1.0.1');
    planner.addPlan(planOf('core', { target: OTHER, patch: 'core-1' }) as PatchPlan);
    planner.addPlan(planOf('app', { patch: 'fix-101', dependsOn: ['core'] }) as PatchPlan);
    const early = await planner.runOnce('app');
    assert.equal(early.status, 'waiting');
    assert.match(early.reason, /waiting for dependency core \(pending\) to activate/);
    assert.equal((await withTraffic(proc, planner.runOnce('core'))).result.status, 'activated');
    assert.equal((await withTraffic(proc, planner.runOnce('app'))).result.status, 'activated');
    assert.deepEqual([proc.other.active.version, proc.target.active.version], ['1.0.1', '1.0.1']);
  } finally {
    await env.close();
  }
});

test('a failed dependency fails its dependents; a rolled-back one too', async () => {
  const { env, proc, planner } = await setup();
  try {
    await env.publish('evil-1', '1.0.1', { forged: true, target: OTHER });
    await env.publish('flaky-1', '1.0.1', { source: FLAKY });
    await env.publish('fix-102', '1.0.2');
    planner.addPlan(planOf('core', { target: OTHER, patch: 'evil-1' }) as PatchPlan);
    planner.addPlan(planOf('app', { patch: 'fix-102', dependsOn: ['core'] }) as PatchPlan);
    planner.addPlan(planOf('flaky', { patch: 'flaky-1', zdt: { steps: [0.5, 1], canaryInterval: 10, minCallsPerStep: 5 } }) as PatchPlan);
    planner.addPlan(planOf('after-flaky', { patch: 'fix-102', dependsOn: ['flaky'] }) as PatchPlan);

    assert.equal((await planner.runOnce('core')).status, 'failed');
    const app = await planner.runOnce('app');
    assert.equal(app.status, 'failed');
    assert.match(app.reason, /^dependency core failed: verify failed/);

    const flaky = await withTraffic(proc, planner.runOnce('flaky'));
    assert.deepEqual([flaky.result.status, flaky.result.code], ['rolled-back', 'CANARY_FAILED']);
    assert.equal(proc.target.active.version, '1.0.0');
    const after = await planner.runOnce('after-flaky');
    assert.equal(after.status, 'failed');
    assert.match(after.reason, /^dependency flaky was rolled back/);
    assert.equal(proc.target.active.version, '1.0.0');
  } finally {
    await env.close();
  }
});

test('an approver that says APPROVAL_MISSING makes the plan wait; once it approves the plan activates', async () => {
  const { env, proc, planner } = await setup();
  try {
    const approver = gatedApprover();
    proc.registries.approvers.register('quorum', approver);
    await env.publish('fix-101', '1.0.1');
    planner.addPlan(planOf('p1', { patch: 'fix-101', approver: 'quorum' }) as PatchPlan);
    const waiting = await planner.runOnce('p1');
    assert.deepEqual([waiting.status, waiting.code], ['waiting', 'APPROVAL_MISSING']);
    assert.match(waiting.reason, /waiting for approval of fix-101 1.0.1 by quorum: 1 of 2 approvals/);
    assert.equal(proc.target.active.version, '1.0.0');
    assert.equal((await planner.runOnce('p1')).status, 'waiting');

    approver.grant();
    const done = await withTraffic(proc, planner.runOnce('p1'));
    assert.equal(done.result.status, 'activated');
    assert.equal(approver.requests.length, 3);
    // The retries re-verify, but publish Fetched / Verified once.
    assert.deepEqual(types(proc.events).slice(0, 5), ['Planned', 'Fetched', 'Verified', 'Approved', 'Staged']);

    // An approver that fails otherwise fails the plan.
    proc.registries.approvers.register('broken', {
      approve: async () => {
        throw new HotPatchError('IO', 'vote store unreachable');
      },
    });
    planner.addPlan(planOf('p2', { patch: 'fix-101', approver: 'broken', target: T }) as PatchPlan);
    // fix-101 is active now, so p2 finishes before asking; use a fresh patch for the failing approver.
    await env.publish('fix-102', '1.0.2');
    planner.addPlan(planOf('p3', { patch: 'fix-102', approver: 'broken' }) as PatchPlan);
    assert.equal((await planner.runOnce('p2')).status, 'activated');
    const broken = await planner.runOnce('p3');
    assert.deepEqual([broken.status, broken.code], ['failed', 'IO']);
    assert.match(broken.reason, /^approve failed: vote store unreachable/);
  } finally {
    await env.close();
  }
});

test('with `patch` omitted the plan applies the highest version for its target; forged, other-target and failed patches are passed over', async () => {
  const { env, proc, planner } = await setup();
  try {
    planner.addPlan(planOf('poll') as PatchPlan);
    const none = await planner.runOnce('poll');
    assert.deepEqual([none.status, none.code], ['waiting', 'NOT_FOUND']);
    assert.match(none.reason, /no acceptable patch for xps.crypto.hash.sha256 in repository fs yet/);
    assert.equal(planner.plan('poll').attempts, 0);

    await env.publish('fix-101', '1.0.1');
    await env.publish('fix-103', '1.0.3');
    await env.publish('fix-102', '1.0.2');
    await env.publish('forged-9', '9.9.9', { forged: true });
    await env.publish('other-5', '5.0.0', { target: OTHER });
    const { result } = await withTraffic(proc, planner.runOnce('poll'));
    assert.deepEqual([result.status, result.patchId, result.version], ['activated', 'fix-103', '1.0.3']);
    assert.equal(proc.target.active.patchId, 'fix-103');
    assert.equal(proc.other.active.version, '1.0.0');
  } finally {
    await env.close();
  }
});

test('a patch not published yet makes the plan wait; published, it runs', async () => {
  const { env, proc, planner } = await setup();
  try {
    planner.addPlan(planOf('p1', { patch: 'fix-101' }) as PatchPlan);
    const waiting = await planner.runOnce('p1');
    assert.deepEqual([waiting.status, waiting.code], ['waiting', 'NOT_FOUND']);
    assert.match(waiting.reason, /patch fix-101 not published in repository fs yet/);
    await env.publish('fix-101', '1.0.1');
    assert.equal((await withTraffic(proc, planner.runOnce('p1'))).result.status, 'activated');
  } finally {
    await env.close();
  }
});

test('addPlan validates strictly: fields, ids, dependencies, components, canary options', async () => {
  const { env, planner } = await setup();
  try {
    const base = planOf('p1', { patch: 'fix-101' });
    assert.throws(() => planner.addPlan({ ...base, extra: 1 } as unknown as PatchPlan), isCode('INVALID'));
    assert.throws(() => planner.addPlan({ ...base, id: '../etc' } as PatchPlan), isCode('INVALID'));
    assert.throws(() => planner.addPlan({ ...base, target: 'no spaces' } as PatchPlan), isCode('INVALID'));
    assert.throws(() => planner.addPlan({ ...base, patch: 'a..b' } as PatchPlan), isCode('INVALID'));
    assert.throws(() => planner.addPlan({ ...base, dependsOn: ['ghost'] } as PatchPlan), isCode('INVALID'));
    assert.throws(
      () => planner.addPlan({ ...base, dependsOn: ['p1'] } as PatchPlan),
      (e) => isCode('INVALID')(e) && /cycle/.test((e as Error).message),
    );
    assert.throws(() => planner.addPlan({ ...base, repo: 'http' } as PatchPlan), isCode('NOT_FOUND'));
    assert.throws(() => planner.addPlan({ ...base, approver: 'nobody' } as PatchPlan), isCode('NOT_FOUND'));
    assert.throws(() => planner.addPlan({ ...base, zdt: { steps: [0.5, 0.25] } } as PatchPlan), isCode('INVALID'));
    assert.throws(() => planner.addPlan({ ...base, zdt: { signal: new AbortController().signal } } as unknown as PatchPlan), isCode('INVALID'));
    assert.throws(() => planner.addPlan({ ...base, window: { weekly: ['Tue-Thu 09:00-16:00 UTC'] } } as unknown as PatchPlan), isCode('INVALID'));
    assert.throws(() => planner.addPlan({ ...base, installer: 'fake' } as PatchPlan), isCode('NOT_FOUND'));
    assert.deepEqual(planner.plans(), [], 'nothing was added');
    assert.throws(() => planner.plan('p1'), isCode('NOT_FOUND'));
    await assert.rejects(planner.runOnce('p1'), isCode('NOT_FOUND'));
  } finally {
    await env.close();
  }
});

test('a plan already running refuses a concurrent run with ABORTED; a second plan for a busy target waits', async () => {
  const { env, proc, planner } = await setup();
  try {
    await env.publish('fix-101', '1.0.1');
    planner.addPlan(planOf('p1', { patch: 'fix-101' }) as PatchPlan);
    planner.addPlan(planOf('p2', { patch: 'fix-101' }) as PatchPlan);
    const first = planner.runOnce('p1');
    await assert.rejects(planner.runOnce('p1'), (e) => isCode('ABORTED')(e) && /already running/.test((e as Error).message));
    const second = await planner.runOnce('p2');
    assert.equal(second.status, 'waiting');
    assert.match(second.reason, /busy with plan p1/);
    assert.equal((await withTraffic(proc, first)).result.status, 'activated');
    assert.equal((await planner.runOnce('p2')).status, 'activated');
  } finally {
    await env.close();
  }
});

test("a run aborted through the caller's signal fails with ABORTED and keeps the baseline", async () => {
  const { env, proc, planner } = await setup();
  try {
    await env.publish('fix-101', '1.0.1');
    planner.addPlan(planOf('p1', { patch: 'fix-101', zdt: { steps: [0.5, 1], canaryInterval: 60_000, minCallsPerStep: 5 } }) as PatchPlan);
    const controller = new AbortController();
    proc.runtime.bus.subscribe(() => controller.abort(new Error('operator stop')), { types: ['CanaryStarted'] });
    const { result } = await withTraffic(proc, planner.runOnce('p1', controller.signal));
    assert.deepEqual([result.status, result.code], ['failed', 'ABORTED']);
    assert.match(result.reason, /^aborted during apply: /);
    assert.equal(proc.target.active.version, '1.0.0');
    assert.equal(proc.target.canary, null);
  } finally {
    await env.close();
  }
});

test('a planner without a journal works in memory; one with a journal must be opened', async () => {
  const env = await makeEnv();
  try {
    const proc = env.process();
    assert.throws(
      () => new Planner({ runtime: proc.runtime, registries: proc.registries }).plans(),
      (e) => isCode('INVALID')(e) && /Planner.open/.test((e as Error).message),
    );
    const memory = new Planner({ runtime: proc.runtime, registries: proc.registries, stateDir: null });
    await env.publish('fix-101', '1.0.1');
    memory.addPlan(planOf('p1', { patch: 'fix-101' }) as PatchPlan);
    assert.equal((await withTraffic(proc, memory.runOnce('p1'))).result.status, 'activated');
    await assert.rejects(env.journal(), /ENOENT/);
    assert.throws(() => new Planner({ runtime: {} as never }), isCode('INVALID'));
  } finally {
    await env.close();
  }
});

import { existsSync } from 'node:fs';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { HotPatchError } from '../../src/core/index.js';
import type { PatchPlan } from '../../src/orchestration/index.js';
import { OTHER, makeEnv, planOf, types, until, withTraffic } from './helpers.js';

test('runLoop picks up a patch published while it runs, and resolves when its signal aborts', async () => {
  const env = await makeEnv();
  try {
    const proc = env.process();
    const planner = await proc.open();
    planner.addPlan(planOf('poll') as PatchPlan);
    const controller = new AbortController();
    const loop = planner.runLoop(controller.signal, 20);
    await until(() => planner.plan('poll').status === 'waiting', 15_000, 'the plan to wait for a patch');
    await env.publish('fix-101', '1.0.1');
    const activated = until(() => planner.plan('poll').status === 'activated', 30_000, 'the plan to activate');
    const { errors } = await withTraffic(proc, activated);
    assert.equal(errors, 0);
    assert.equal(proc.target.active.patchId, 'fix-101');
    controller.abort();
    await loop;
    const journal = await env.journal();
    assert.equal((journal.plans[0] as { status: string }).status, 'activated');
  } finally {
    await env.close();
  }
});

test('runLoop runs dependencies first, one plan per target at a time, in one round', async () => {
  const env = await makeEnv();
  try {
    const proc = env.process();
    const planner = await proc.open();
    await env.publish('core-1', '1.0.1', { target: OTHER });
    await env.publish('fix-101', '1.0.1');
    await env.publish('fix-102', '1.0.2');
    // Added in dependency order; "app2" shares app's target and must not overlap it.
    planner.addPlan(planOf('core', { target: OTHER, patch: 'core-1' }) as PatchPlan);
    planner.addPlan(planOf('app', { patch: 'fix-101', dependsOn: ['core'] }) as PatchPlan);
    planner.addPlan(planOf('app2', { patch: 'fix-102', dependsOn: ['app'] }) as PatchPlan);
    let applying = 0;
    let overlap = false;
    proc.runtime.bus.subscribe((e) => {
      if (e.target !== proc.target.name) return;
      if (e.type === 'Staged') overlap ||= ++applying > 1;
      if (e.type === 'Activated' || e.type === 'Failed' || e.type === 'RolledBack') applying -= 1;
    });
    const controller = new AbortController();
    const loop = planner.runLoop(controller.signal, 60_000); // one round only: everything must settle in it
    await withTraffic(
      proc,
      until(() => planner.plans().every((p) => p.status === 'activated'), 30_000, 'all plans to activate'),
    );
    controller.abort();
    await loop;
    assert.equal(overlap, false);
    assert.deepEqual([proc.other.active.version, proc.target.active.version], ['1.0.1', '1.0.2']);
    const order = proc.events.filter((e) => e.type === 'Activated').map((e) => e.id);
    assert.deepEqual(order, ['core-1', 'fix-101', 'fix-102']);
  } finally {
    await env.close();
  }
});

test('stopping runLoop mid-canary aborts the apply, keeps the baseline and leaves the plan pending; it runs again later', async () => {
  const env = await makeEnv();
  try {
    const proc = env.process();
    const planner = await proc.open();
    await env.publish('fix-101', '1.0.1');
    // A polling plan; the shutdown lands inside the first canary step.
    planner.addPlan(
      planOf('poll', {
        zdt: { steps: [0.5, 1], canaryInterval: 300, backoffFactor: 1, jitterRatio: 0, minCallsPerStep: 5, maxLatencyRatio: 1000 },
      }) as PatchPlan,
    );
    const controller = new AbortController();
    proc.runtime.bus.subscribe(() => controller.abort(), { types: ['CanaryStarted'] });
    const loop = planner.runLoop(controller.signal, 20);
    const { errors } = await withTraffic(proc, loop);
    assert.equal(errors, 0);
    const state = planner.plan('poll');
    assert.deepEqual([state.status, state.phase, state.patchId], ['pending', 'apply', 'fix-101']);
    assert.match(state.reason!, /interrupted during apply by shutdown; will run again/);
    assert.equal(proc.target.active.version, '1.0.0');
    assert.ok(types(proc.events).includes('Aborted'));
    assert.equal((await env.journal()).plans[0]!.status, 'pending');

    // An interruption is not the patch's fault: state.json does not mark fix-101 failed, and
    // the plan resumes with it.
    const statePath = join(env.stateDir, 'state.json');
    const state2 = existsSync(statePath)
      ? (JSON.parse(await readFile(statePath, 'utf8')) as { targets: Record<string, { failed: string[] } | undefined> })
      : { targets: {} };
    assert.deepEqual(state2.targets[proc.target.name]?.failed ?? [], []);
    const { result } = await withTraffic(proc, planner.runOnce('poll'));
    assert.deepEqual([result.status, result.patchId], ['activated', 'fix-101'], result.reason);
    assert.equal(planner.plan('poll').attempts, 2);
  } finally {
    await env.close();
  }
});

test('runLoop checks its arguments and returns at once for an aborted signal', async () => {
  const env = await makeEnv();
  try {
    const planner = await env.process().open();
    const isInvalid = (e: unknown): boolean => e instanceof HotPatchError && e.code === 'INVALID';
    await assert.rejects(planner.runLoop(new AbortController().signal, 0), isInvalid);
    await assert.rejects(planner.runLoop(new AbortController().signal, Number.NaN), isInvalid);
    await assert.rejects(planner.runLoop({} as AbortSignal, 10), isInvalid);
    await planner.runLoop(AbortSignal.abort(), 10);
    const controller = new AbortController();
    const loop = planner.runLoop(controller.signal, 20);
    await assert.rejects(planner.runLoop(controller.signal, 20), isInvalid);
    controller.abort();
    await loop;
  } finally {
    await env.close();
  }
});

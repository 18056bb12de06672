/*
 * The journal and the plan list stay bounded: finished plans past `keepFinishedPlans` are
 * dropped oldest first (never one a kept plan depends on), an over-full journal is compacted
 * when opened, and plans not yet finished are capped by `maxOpenPlans`.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HotPatchError } from '../../src/core/index.js';
import { Planner, type PatchPlan } from '../../src/orchestration/index.js';
import { makeEnv, planOf } from './helpers.js';

/** A plan that fails at once: its target is not declared in the process. */
const doomed = (id: string, extra: Record<string, unknown> = {}): PatchPlan =>
  planOf(id, { target: 'xps.not.declared', patch: 'nothing', ...extra }) as PatchPlan;

test('finished plans past keepFinishedPlans are dropped oldest first, from memory and journal.json alike; one a kept plan depends on stays', async () => {
  const env = await makeEnv();
  try {
    const proc = env.process();
    const planner = await proc.open({ keepFinishedPlans: 3 });
    planner.addPlan(doomed('base'));
    await planner.runOnce('base');
    planner.addPlan(doomed('child', { dependsOn: ['base'] })); // pending: keeps base
    for (let i = 1; i <= 5; i++) {
      planner.addPlan(doomed(`f${i}`));
      assert.equal((await planner.runOnce(`f${i}`)).status, 'failed');
    }
    await planner.flush();
    const ids = planner.plans().map((p) => p.plan.id);
    assert.deepEqual(ids, ['base', 'child', 'f4', 'f5'], 'base (needed by child) and the newest finished ones');
    const journal = await env.journal();
    assert.deepEqual(
      journal.plans.map((p) => (p.plan as { id: string }).id),
      ids,
    );
    // Every run was announced even though its plan is gone now.
    assert.equal(proc.events.filter((e) => e.type === 'Failed').length, 6);
    assert.throws(
      () => planner.plan('f1'),
      (e: unknown) => e instanceof HotPatchError && e.code === 'NOT_FOUND',
    );
  } finally {
    await env.close();
  }
});

test('open() compacts a journal holding more finished plans than it keeps', async () => {
  const env = await makeEnv();
  try {
    const first = await env.process().open();
    for (let i = 1; i <= 6; i++) {
      first.addPlan(doomed(`old${i}`));
      await first.runOnce(`old${i}`);
    }
    await first.flush();
    assert.equal((await env.journal()).plans.length, 6);
    const reopened = await env.process().open({ keepFinishedPlans: 2 });
    assert.deepEqual(
      reopened.plans().map((p) => p.plan.id),
      ['old5', 'old6'],
    );
    assert.deepEqual(
      (await env.journal()).plans.map((p) => (p.plan as { id: string }).id),
      ['old5', 'old6'],
    );
  } finally {
    await env.close();
  }
});

test('plans not yet finished are capped by maxOpenPlans (TOO_LARGE), and room comes back as they finish', async () => {
  const env = await makeEnv();
  try {
    const planner = await env.process().open({ maxOpenPlans: 2 });
    planner.addPlan(doomed('a'));
    planner.addPlan(doomed('b'));
    assert.throws(
      () => planner.addPlan(doomed('c')),
      (e: unknown) => e instanceof HotPatchError && e.code === 'TOO_LARGE' && /maxOpenPlans 2/.test(e.message),
    );
    await planner.flush();
    assert.equal((await env.journal()).plans.length, 2, 'the refused plan was never written');
    await planner.runOnce('a');
    planner.addPlan(doomed('c'));
    assert.deepEqual(
      planner.plans().map((p) => p.plan.id),
      ['a', 'b', 'c'],
    );
  } finally {
    await env.close();
  }
});

test('retention options must be positive integers', async () => {
  const env = await makeEnv();
  try {
    const proc = env.process();
    for (const bad of [0, -1, 1.5, '3']) {
      for (const option of ['keepFinishedPlans', 'maxOpenPlans', 'maxApplyCrashes']) {
        assert.throws(
          () => new Planner({ runtime: proc.runtime, registries: proc.registries, stateDir: null, [option]: bad }),
          (e: unknown) => e instanceof HotPatchError && e.code === 'INVALID' && e.message.includes(option),
        );
      }
    }
  } finally {
    await env.close();
  }
});

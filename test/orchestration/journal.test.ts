import assert from 'node:assert/strict';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { HotPatchError } from '../../src/core/index.js';
import { parseJournal, type PatchPlan } from '../../src/orchestration/index.js';
import { FAST_ZDT, makeEnv, planOf, types, withTraffic, type Env } from './helpers.js';
import { isCode } from '../support/assertions.js';

/** Rewrites the journal as a crash would have left it: the plan `running` in `phase`. */
async function leaveRunning(env: Env, id: string, phase: string, extra: Record<string, unknown> = {}): Promise<void> {
  const journal = await env.journal();
  const entry = journal.plans.find((p) => (p.plan as { id: string }).id === id)!;
  Object.assign(entry, { status: 'running', phase, reason: `${phase} in progress`, ...extra });
  await writeFile(join(env.stateDir, 'journal.json'), JSON.stringify(journal));
}

test('recover(): a plan left running whose patch the restarted runtime has active is activated', async () => {
  const env = await makeEnv();
  try {
    const first = env.process();
    const planner = await first.open();
    await env.publish('fix-101', '1.0.1');
    planner.addPlan(planOf('p1', { patch: 'fix-101', zdt: { ...FAST_ZDT, probationMs: 0 } }) as PatchPlan);
    assert.equal((await withTraffic(first, planner.runOnce('p1'))).result.status, 'activated');
    // The process died after the promotion, before the journal said so.
    await leaveRunning(env, 'p1', 'apply');

    const second = env.process();
    await second.runtime.restore();
    assert.equal(second.target.active.patchId, 'fix-101');
    const restarted = await second.open();
    assert.equal(restarted.plan('p1').status, 'running', 'open() reports the journal as it is');
    const results = await restarted.recover();
    assert.deepEqual(
      results.map((r) => [r.planId, r.status, r.patchId]),
      [['p1', 'activated', 'fix-101']],
    );
    assert.match(results[0]!.reason, /found active after a restart/);
    assert.equal((await env.journal()).plans[0]!.status, 'activated');
    assert.deepEqual(await restarted.recover(), [], 'recovering twice is harmless');
  } finally {
    await env.close();
  }
});

test('recover(): a plan whose patch died in probation is rolled back and never run again', async () => {
  const env = await makeEnv();
  try {
    const first = env.process();
    const planner = await first.open();
    await env.publish('fix-101', '1.0.1');
    planner.addPlan(planOf('p1', { patch: 'fix-101', zdt: { ...FAST_ZDT, probationMs: 60_000 } }) as PatchPlan);
    assert.equal((await withTraffic(first, planner.runOnce('p1'))).result.status, 'activated');
    await leaveRunning(env, 'p1', 'apply');

    const second = env.process();
    const restore = await second.runtime.restore();
    assert.equal(restore[0]!.dropped?.patchId, 'fix-101', 'inside its probation: not restored');
    const restarted = await second.open();
    const [result] = await restarted.recover();
    assert.equal(result!.status, 'rolled-back');
    assert.match(result!.reason, /not run again/);
    const again = await restarted.runOnce('p1');
    assert.equal(again.status, 'rolled-back');
    assert.ok(!types(second.events).includes('Staged'), 'never re-run');
    assert.equal(second.target.active.version, '1.0.0');
  } finally {
    await env.close();
  }
});

test('recover(): a plan interrupted before anything was applied goes back to pending and runs again to the end', async () => {
  const env = await makeEnv();
  try {
    const first = env.process();
    const planner = await first.open();
    await env.publish('fix-101', '1.0.1');
    // No probation: a restart keeps fix-101 active once promoted.
    const zdt = { ...FAST_ZDT, probationMs: 0 };
    planner.addPlan(planOf('p1', { patch: 'fix-101', zdt }) as PatchPlan);
    planner.addPlan(planOf('p2', { patch: 'fix-101', dependsOn: ['p1'], zdt }) as PatchPlan);
    await planner.flush();
    await leaveRunning(env, 'p1', 'verify', { patchId: 'fix-101', attempts: 1 });

    const second = env.process();
    await second.runtime.restore();
    const restarted = await second.open();
    assert.deepEqual(
      restarted.plans().map((p) => p.plan.id),
      ['p1', 'p2'],
    );
    // runOnce on a plan a crash left running recovers it first, then runs it.
    const { result } = await withTraffic(second, restarted.runOnce('p1'));
    assert.equal(result.status, 'activated', result.reason);
    assert.equal(restarted.plan('p1').attempts, 2);

    // The same through recover(): pending with the phase it was interrupted in.
    await leaveRunning(env, 'p2', 'gate', { patchId: 'fix-101' });
    const third = env.process();
    await third.runtime.restore();
    const again = await third.open();
    const [r] = await again.recover();
    assert.equal(r!.status, 'activated', 'fix-101 is active: p2 needs nothing more');
    await leaveRunning(env, 'p2', 'fetch', { patchId: undefined });
    const fourth = env.process();
    await fourth.runtime.restore();
    const [r2] = await (await fourth.open()).recover();
    assert.deepEqual([r2!.status, r2!.reason], ['pending', 'interrupted during fetch; will run again']);
  } finally {
    await env.close();
  }
});

test('open() restores the plans of the journal; a corrupted journal is an error, never reset', async () => {
  const env = await makeEnv();
  try {
    const proc = env.process();
    const planner = await proc.open();
    planner.addPlan(planOf('p1', { patch: 'fix-101', window: { weekly: [{ days: ['Tue', 'Wed'], start: '09:00', end: '16:00' }] } }) as PatchPlan);
    planner.addPlan(planOf('p2', { dependsOn: ['p1'] }) as PatchPlan);
    await planner.flush();
    const reopened = await env.process().open();
    assert.deepEqual(reopened.plans(), planner.plans());
    assert.equal(reopened.addPlan(planOf('p2', { dependsOn: ['p1'] }) as PatchPlan).status, 'pending', 'identical plan: harmless');
    assert.deepEqual(
      (await readdir(env.stateDir)).filter((n) => n.endsWith('.tmp')),
      [],
    );

    const path = join(env.stateDir, 'journal.json');
    const good = await readFile(path, 'utf8');
    const corrupt = async (text: string, code: string): Promise<void> => {
      await writeFile(path, text);
      await assert.rejects(env.process().open(), isCode(code), text.slice(0, 60));
    };
    await corrupt(good.slice(0, good.length / 2), 'PARSE');
    await corrupt('\u0000\u0001', 'PARSE');
    const doc = JSON.parse(good) as { plans: Record<string, unknown>[] } & Record<string, unknown>;
    await corrupt(JSON.stringify({ ...doc, format: 2 }), 'INVALID');
    await corrupt(JSON.stringify({ ...doc, extra: true }), 'INVALID');
    await corrupt(JSON.stringify({ ...doc, plans: [doc.plans[1], doc.plans[0]] }), 'INVALID'); // dependency listed after
    await corrupt(JSON.stringify({ ...doc, plans: [doc.plans[0], doc.plans[0]] }), 'INVALID'); // twice
    await corrupt(JSON.stringify({ ...doc, plans: [{ ...doc.plans[0], status: 'done' }] }), 'INVALID');
    await corrupt(JSON.stringify({ ...doc, plans: [{ ...doc.plans[0], attempts: -1 }] }), 'INVALID');
    await corrupt(JSON.stringify({ ...doc, plans: [{ ...doc.plans[0], phase: 'dance' }] }), 'INVALID');
    await corrupt(JSON.stringify({ ...doc, plans: [{ ...doc.plans[0], plan: { ...(doc.plans[0]!.plan as object), id: '../x' } }] }), 'INVALID');
    await corrupt(JSON.stringify({ ...doc, plans: [{ ...doc.plans[0], code: 'OOPS' }] }), 'INVALID');
    // The corrupted file is still there, untouched, for a human to look at.
    assert.match(await readFile(path, 'utf8'), /OOPS/);
  } finally {
    await env.close();
  }
});

test('parseJournal accepts what the planner writes and documents the format', () => {
  const text = JSON.stringify({
    format: 1,
    updated_at: '2030-01-01T00:00:00.000Z',
    plans: [
      {
        plan: { id: 'p0', target: 'xps.a', repo: 'fs', verifier: 'v', security: 's', installer: 'i' },
        status: 'activated',
        phase: 'apply',
        patchId: 'fix-1',
        version: '1.0.1',
        reason: 'ok',
        attempts: 1,
        updatedAt: '2030-01-01T00:00:00.000Z',
      },
      {
        plan: { id: 'p1', target: 'xps.a', repo: 'fs', verifier: 'v', security: 's', installer: 'i', dependsOn: ['p0'], zdt: { steps: [0.5, 1] } },
        status: 'waiting',
        code: 'APPROVAL_MISSING',
        attempts: 3,
        crashes: 1,
        updatedAt: '2030-01-01T00:00:00Z',
      },
    ],
  });
  const parsed = parseJournal(new TextEncoder().encode(text), 'journal.json');
  assert.deepEqual(
    parsed.plans.map((p) => [p.plan.id, p.status, p.crashes]),
    [
      ['p0', 'activated', undefined],
      ['p1', 'waiting', 1],
    ],
  );
  for (const bad of [-1, 1.5, '2', null]) {
    const broken = text.replace('"crashes":1', `"crashes":${JSON.stringify(bad)}`);
    assert.throws(
      () => parseJournal(new TextEncoder().encode(broken), 'journal.json'),
      (e: unknown) => e instanceof HotPatchError && e.code === 'INVALID' && /crashes must be a non-negative integer/.test(e.message),
    );
  }
});

test('a 17,423-character reason is bounded by the writer, and a reader meeting an over-long one cuts it instead of refusing to start', async () => {
  const { Journal } = await import('../../src/orchestration/journal.js');
  const { mkdtemp, rm } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const dir = await mkdtemp(join(tmpdir(), 'hotpatch-journal-'));
  try {
    const long = `signed by 0 of 1 required keys; unknown key ids: ${'k'.repeat(17_374)}`;
    assert.equal(long.length, 17_423);
    const plan = { id: 'p0', target: 'xps.a', repo: 'fs', verifier: 'v', security: 's', installer: 'i' };
    const journal = new Journal(dir);
    await journal.write(() => [{ plan, status: 'failed', reason: long, attempts: 1, updatedAt: new Date().toISOString() }] as never);
    const reread = await journal.load();
    assert.ok(reread.plans[0]!.reason!.length <= 4096);
    assert.match(reread.plans[0]!.reason!, /^signed by 0 of 1 required keys; .*characters cut\)$/);
    // A journal written before writers bounded reasons still opens.
    const old = { format: 1, plans: [{ plan, status: 'failed', reason: long, attempts: 1, updatedAt: '2030-01-01T00:00:00Z' }] };
    const parsed = parseJournal(new TextEncoder().encode(JSON.stringify(old)), 'journal.json');
    assert.ok(parsed.plans[0]!.reason!.length <= 4096);
    assert.throws(
      () => parseJournal(new TextEncoder().encode(JSON.stringify({ format: 1, plans: [{ ...old.plans[0], reason: 42 }] })), 'journal.json'),
      isCode('INVALID'),
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('recover(): a death while the patch was still being staged (no kept manifest yet) is not counted against it; one after staging is', async () => {
  const env = await makeEnv();
  try {
    const first = env.process();
    const planner = await first.open();
    planner.addPlan(planOf('p1', { patch: 'fix-101', zdt: FAST_ZDT }) as PatchPlan);
    await planner.flush();
    // Died in the apply phase before staging ended: none of the patch's code had run.
    await leaveRunning(env, 'p1', 'apply', { patchId: 'fix-101' });
    const [staging] = await (await env.process().open({ maxApplyCrashes: 1 })).recover();
    assert.equal(staging!.status, 'pending');
    assert.equal(staging!.reason, 'interrupted during apply, while fix-101 was being staged (none of its code had run); will run again');
    assert.equal((await env.journal()).plans[0]?.crashes, undefined, 'no death counted');

    // Its manifest was kept (staging ended, loading began): the death counts, and with
    // maxApplyCrashes 1 the patch is blamed.
    await mkdir(join(env.stateDir, 'manifests'), { recursive: true });
    await writeFile(join(env.stateDir, 'manifests', 'fix-101.json'), '{}');
    await leaveRunning(env, 'p1', 'apply', { patchId: 'fix-101' });
    const [loading] = await (await env.process().open({ maxApplyCrashes: 1 })).recover();
    assert.equal(loading!.status, 'failed', loading!.reason);
    assert.equal(loading!.code, 'CRASHED');
  } finally {
    await env.close();
  }
});

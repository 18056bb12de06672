/*
 * Crash tests: the host process (agent-host.js, agent embedded) runs a plan through
 * POST /v1/apply and is SIGKILLed at chosen points; a restarted host over the same state
 * directory must come up on a consistent version, settle the interrupted plan the way
 * Planner.recover() says (found active → activated; recorded failed → rolled-back;
 * otherwise pending, to run again), and keep an audit chain that verifies.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { verifyAuditLog } from '../../src/observability/index.js';
import { BUILTIN_VERSION, FAST_ZDT, T, call, hotpatch, makeFixture, openEvents, planOf, startHost, type Fixture, type Host, type HostLine } from './helpers.js';

interface PlanView {
  id: string;
  status: string;
  reason?: string;
  patch?: string;
}

interface Env {
  fx: Fixture;
  sock: string;
  start(killOn?: string): Promise<Host>;
}

const hosts: Host[] = [];
const fixtures: Fixture[] = [];

after(async () => {
  for (const h of hosts) await h.kill();
  for (const f of fixtures) await f.close();
});

async function env(patch: string, version: string): Promise<Env> {
  const fx = await makeFixture('hotpatch-crash-');
  fixtures.push(fx);
  await fx.publish(patch, version);
  const sock = join(fx.dir, 'agent.sock');
  return {
    fx,
    sock,
    async start(killOn) {
      const h = await startHost({
        stateDir: fx.stateDir,
        socketPath: sock,
        repoDir: fx.repoDir,
        trustFile: fx.trustFile,
        ...(killOn === undefined ? {} : { killOn }),
      });
      hosts.push(h);
      return h;
    },
  };
}

/** Asks the host to flush its audit appends (SIGUSR2), then verifies the chain from outside. */
async function auditVerifies(e: Env, host: Host, when: string): Promise<void> {
  const seen = host.lines.filter((l) => l.event === 'flushed').length;
  host.child.kill('SIGUSR2');
  await host.waitLine(() => host.lines.filter((l) => l.event === 'flushed').length > seen, 10_000, 'the flushed line');
  const v = await verifyAuditLog(e.fx.stateDir);
  assert.ok(v.ok, `audit chain ${when}: ${JSON.stringify(v.firstBad)}`);
}

async function journalPlan(e: Env, id: string): Promise<Record<string, unknown>> {
  const journal = JSON.parse(await readFile(join(e.fx.stateDir, 'journal.json'), 'utf8')) as { plans: { plan: { id: string } }[] };
  const entry = journal.plans.find((p) => p.plan.id === id);
  assert.ok(entry !== undefined, `journal lists ${id}`);
  return entry as unknown as Record<string, unknown>;
}

/** The runtime's view (GET /v1/status) and state.json agree on the active version. */
async function consistentVersion(e: Env, expected: { version: string; patchId: string | null }): Promise<PlanView[]> {
  const r = await call({ socketPath: e.sock }, 'GET', '/v1/status');
  assert.equal(r.status, 200, r.text);
  const t = (r.json.targets as { target: string; active: { version: string; patchId: string | null } }[]).find((x) => x.target === T)!;
  assert.deepEqual({ version: t.active.version, patchId: t.active.patchId }, expected, 'the runtime serves the expected version');
  const state = JSON.parse(await readFile(join(e.fx.stateDir, 'state.json'), 'utf8')) as {
    targets: Record<string, { active: { id: string | null; version: string } | null }>;
  };
  const saved = state.targets[T]?.active ?? { id: null, version: BUILTIN_VERSION };
  assert.deepEqual({ version: saved.version, patchId: saved.id }, expected, 'state.json records the version the runtime serves');
  return r.json.plans as PlanView[];
}

/** Waits for the SIGKILLed host to be gone; the apply request it was serving fails. */
async function killed(host: Host, reply: Promise<unknown>): Promise<void> {
  const outcome = reply.then(
    (r) => ({ answered: r }),
    (error: unknown) => ({ error }),
  );
  const exit = await host.exited;
  assert.equal(exit.signal, 'SIGKILL');
  const o = await outcome;
  assert.ok('error' in o, `the apply in flight gets no answer from a dead agent, got ${JSON.stringify(o)}`);
}

async function stopCleanly(e: Env, host: Host): Promise<HostLine> {
  const stopped = await host.stop();
  assert.deepEqual(await host.exited, { code: 0, signal: null }, host.stderr());
  assert.ok(stopped !== undefined);
  assert.equal(stopped.errors, 0, 'no call failed');
  assert.equal(stopped.wrong, 0, 'no call answered wrongly');
  const v = await verifyAuditLog(e.fx.stateDir);
  assert.ok(v.ok, JSON.stringify(v.firstBad));
  const cli = await hotpatch(['audit', 'verify', '--state', e.fx.stateDir, '--json']);
  assert.equal(cli.status, 0, `${cli.stdout}\n${cli.stderr}`);
  assert.equal(cli.json?.ok, true);
  return stopped;
}

describe('agent host SIGKILLed mid-plan, then restarted', { timeout: 80_000 }, () => {
  test('killed mid-canary: restarted on the old version, the plan pending; running it again activates', { timeout: 60_000 }, async () => {
    const e = await env('crash-canary', '1.1.0');
    const first = await e.start();
    const stream = openEvents({ socketPath: e.sock }, '/v1/events', (ev) => {
      if (ev.type === 'CanaryStep') first.child.kill('SIGKILL');
    });
    try {
      assert.equal(await stream.status, 200);
      await stream.subscribed();
      // Three steps of at least 150 ms: the first CanaryStep comes long before the end.
      const zdt = { ...FAST_ZDT, steps: [0.2, 0.5, 1], canaryInterval: 150 };
      const reply = call({ socketPath: e.sock }, 'POST', '/v1/apply', { plan: planOf('plan-canary', 'crash-canary', zdt) });
      await killed(first, reply);
    } finally {
      stream.close();
    }
    assert.ok(stream.events.some((ev) => ev.type === 'CanaryStep'));
    assert.ok(!stream.events.some((ev) => ev.type === 'Promoted'), 'killed before any promotion');
    const entry = await journalPlan(e, 'plan-canary');
    assert.equal(entry.status, 'running');
    assert.equal(entry.phase, 'apply');

    const second = await e.start();
    const plans = await consistentVersion(e, { version: BUILTIN_VERSION, patchId: null });
    const p = plans.find((x) => x.id === 'plan-canary')!;
    assert.equal(p.status, 'pending');
    assert.equal(
      p.reason,
      'interrupted during apply: the process died with crash-canary loading or in canary (1 of 2 deaths before the patch is blamed); will run again',
    );
    await auditVerifies(e, second, 'after the restart');

    const again = await call({ socketPath: e.sock }, 'POST', '/v1/apply', { planId: 'plan-canary' });
    assert.equal(again.status, 200, again.text);
    assert.equal(again.json.status, 'activated');
    await consistentVersion(e, { version: '1.1.0', patchId: 'crash-canary' });
    await auditVerifies(e, second, 'after the resumed plan');
    await stopCleanly(e, second);
  });

  test(
    'killed at Promoted (the promotion is recorded just before the flip) inside its probation: reverted, the plan rolled back',
    { timeout: 60_000 },
    async () => {
      const e = await env('crash-promoted', '1.1.0');
      const first = await e.start('Promoted');
      const reply = call({ socketPath: e.sock }, 'POST', '/v1/apply', { plan: planOf('plan-promoted', 'crash-promoted') });
      await killed(first, reply);
      assert.ok(first.lines.some((l) => l.event === 'self-kill' && l.on === 'Promoted'));
      assert.equal((await journalPlan(e, 'plan-promoted')).status, 'running');

      // state.json already named the candidate active (persist, then flip), but it never ran
      // through its probation: the restart reverts it and the plan is not run again.
      const second = await e.start();
      const plans = await consistentVersion(e, { version: BUILTIN_VERSION, patchId: null });
      assert.equal(plans.find((x) => x.id === 'plan-promoted')?.status, 'rolled-back');
      const state = JSON.parse(await readFile(join(e.fx.stateDir, 'state.json'), 'utf8')) as { targets: Record<string, { failed: string[] }> };
      assert.deepEqual(state.targets[T]?.failed, ['crash-promoted']);
      await auditVerifies(e, second, 'after the restart');
      await stopCleanly(e, second);
    },
  );

  test('killed at Activated inside its probation: reverted to last good, the plan rolled back and never run again', { timeout: 60_000 }, async () => {
    const e = await env('crash-activated', '1.1.0');
    const first = await e.start('Activated');
    const reply = call({ socketPath: e.sock }, 'POST', '/v1/apply', { plan: planOf('plan-activated', 'crash-activated') });
    await killed(first, reply);
    assert.equal((await journalPlan(e, 'plan-activated')).status, 'running');

    const second = await e.start();
    const plans = await consistentVersion(e, { version: BUILTIN_VERSION, patchId: null });
    const p = plans.find((x) => x.id === 'plan-activated')!;
    assert.equal(p.status, 'rolled-back');
    assert.match(String(p.reason), /crash-activated was rolled back: the run was interrupted during apply/);
    const state = JSON.parse(await readFile(join(e.fx.stateDir, 'state.json'), 'utf8')) as { targets: Record<string, { failed: string[] }> };
    assert.deepEqual(state.targets[T]?.failed, ['crash-activated']);
    await auditVerifies(e, second, 'after the restart');

    const again = await call({ socketPath: e.sock }, 'POST', '/v1/apply', { planId: 'plan-activated' });
    assert.equal(again.status, 422, again.text);
    assert.equal(again.json.status, 'rolled-back');
    await consistentVersion(e, { version: BUILTIN_VERSION, patchId: null });
    await stopCleanly(e, second);
  });

  test('killed at Activated with no probation: found active after the restart, the plan activated', { timeout: 60_000 }, async () => {
    const e = await env('crash-good', '1.1.0');
    const first = await e.start('Activated');
    const reply = call({ socketPath: e.sock }, 'POST', '/v1/apply', { plan: planOf('plan-good', 'crash-good', { ...FAST_ZDT, probationMs: 0 }) });
    await killed(first, reply);
    assert.equal((await journalPlan(e, 'plan-good')).status, 'running');

    const second = await e.start();
    assert.deepEqual(second.lines.find((l) => l.event === 'ready')?.active, { version: '1.1.0', patchId: 'crash-good' });
    const plans = await consistentVersion(e, { version: '1.1.0', patchId: 'crash-good' });
    const p = plans.find((x) => x.id === 'plan-good')!;
    assert.equal(p.status, 'activated');
    assert.match(String(p.reason), /crash-good was found active after a restart/);
    await auditVerifies(e, second, 'after the restart');
    await stopCleanly(e, second);
  });

  test('killed after the apply finished, inside probation: the patch is reverted and the plan no longer claims it is active', { timeout: 60_000 }, async () => {
    const e = await env('crash-late', '1.1.0');
    const first = await e.start();
    const r = await call({ socketPath: e.sock }, 'POST', '/v1/apply', { plan: planOf('plan-late', 'crash-late') });
    assert.equal(r.status, 200, r.text);
    first.child.kill('SIGKILL');
    assert.equal((await first.exited).signal, 'SIGKILL');
    assert.equal((await journalPlan(e, 'plan-late')).status, 'activated');

    const second = await e.start();
    // Probation (60 s by default) was not over: restore() reverts to last good and marks the patch failed.
    const plans = await consistentVersion(e, { version: BUILTIN_VERSION, patchId: null });
    await auditVerifies(e, second, 'after the restart');
    const p = plans.find((x) => x.id === 'plan-late')!;
    assert.notEqual(
      p.status,
      'activated',
      `plan-late still reports "${p.status}: ${p.reason}" although restore() dropped crash-late (never confirmed good) and state.json marks it failed`,
    );
    await stopCleanly(e, second);
  });
});

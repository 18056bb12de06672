/*
 * The operator lifecycle end to end, through the `hotpatch` CLI against a service process that
 * is stopped gracefully (SIGTERM) and killed (SIGKILL) around apply / rollback / confirm: after
 * every step the status, the plans, state.json and the audit log agree on what serves.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { buildHistory, verifyAuditLog } from '../../src/observability/index.js';
import { BUILTIN_VERSION, T, call, hotpatch, makeFixture, startHost, type CliResult, type Fixture, type Host, type HostConfig } from './helpers.js';

const fixtures: Fixture[] = [];
const hosts: Host[] = [];
after(async () => {
  for (const h of hosts) await h.kill();
  for (const f of fixtures) await f.close();
});

const FAST = [
  '--steps',
  '0.5,1',
  '--canary-interval',
  '10',
  '--min-calls',
  '0',
  '--min-calls-per-step',
  '5',
  '--warmup-calls',
  '0',
  '--max-latency-shift',
  '999',
];

interface Env {
  fx: Fixture;
  config: HostConfig;
  sock: string;
  cli(args: string[]): Promise<CliResult>;
  /** The version served, as status, state.json and the host agree on it. */
  serving(): Promise<string>;
  plan(id: string): Promise<{ id: string; status: string; reason: string } | undefined>;
  start(): Promise<Host>;
}

async function env(): Promise<Env> {
  const fx = await makeFixture('hotpatch-lifecycle-');
  fixtures.push(fx);
  const sock = join(fx.dir, 'agent.sock');
  const config: HostConfig = { stateDir: fx.stateDir, socketPath: sock, repoDir: fx.repoDir, trustFile: fx.trustFile };
  return {
    fx,
    config,
    sock,
    cli: (args) => hotpatch([...args.slice(0, 1), '--agent', sock, ...args.slice(1), '--json']),
    async serving() {
      const r = await call({ socketPath: sock }, 'GET', '/v1/status');
      const t = (r.json.targets as { target: string; active: { version: string; patchId: string | null } }[]).find((x) => x.target === T)!;
      const state = JSON.parse(await readFile(join(fx.stateDir, 'state.json'), 'utf8')) as {
        targets: Record<string, { active: { id: string | null; version: string } | null }>;
      };
      const saved = state.targets[T]?.active ?? { id: null, version: BUILTIN_VERSION };
      assert.deepEqual(
        { version: saved.version, id: saved.id },
        { version: t.active.version, id: t.active.patchId },
        'state.json records what the runtime serves',
      );
      return t.active.version;
    },
    async plan(id) {
      const r = await call({ socketPath: sock }, 'GET', '/v1/plans?limit=1000');
      return (r.json.plans as { id: string; status: string; reason: string }[]).find((p) => p.id === id);
    },
    async start() {
      const h = await startHost(config);
      hosts.push(h);
      return h;
    },
  };
}

const show = (r: CliResult): string => `exit ${r.status}\n${r.stdout}\n${r.stderr}`;

test(
  'apply is a new attempt every time and exits 0 only if that version serves; a rollback marks its plan; a freeze leaves the new attempt waiting and the unfreeze resumes it',
  { timeout: 120_000 },
  async () => {
    const e = await env();
    await e.fx.publish('pricing-1.0.1', '1.0.1');
    const host = await e.start();

    const first = await e.cli(['apply', '--target', T, '--patch', 'pricing-1.0.1', ...FAST, '--probation', '0']);
    assert.equal(first.status, 0, show(first));
    const firstPlan = String(first.json?.planId);
    assert.equal(await e.serving(), '1.0.1');
    // Its plan again, while its version serves: exit 0, and the headline says nothing ran.
    const rerun = await e.cli(['apply', '--plan-id', firstPlan]);
    assert.equal(rerun.status, 0, show(rerun));
    assert.match(String(rerun.json?.message), /had already ended \(activated\); nothing was run again/);

    const back = await e.cli(['rollback', '--target', T, '--reason', 'pricing regression']);
    assert.equal(back.status, 0, show(back));
    assert.equal(await e.serving(), BUILTIN_VERSION);
    const rolled = await e.plan(firstPlan);
    assert.equal(rolled?.status, 'rolled-back', 'the plan no longer claims its patch is active');
    assert.match(String(rolled?.reason), /rolled back after its activation: pricing regression/);

    assert.equal((await e.cli(['freeze', '--target', T, '--reason', 'incident review'])).status, 0);
    const again = await e.cli(['apply', '--target', T, '--patch', 'pricing-1.0.1', ...FAST, '--probation', '0']);
    assert.notEqual(again.status, 0, `an apply that applied nothing must not exit 0: ${show(again)}`);
    // A refused apply carries the plan's outcome in the error's detail.
    const attempt = String((again.json?.detail as { planId?: string } | undefined)?.planId);
    assert.match(attempt, /^apply-pricing-1\.0\.1-/);
    assert.notEqual(attempt, firstPlan, 'a new attempt, not the old plan');
    assert.equal(again.json?.code, 'POLICY_DENIED', show(again));
    assert.match(String(again.json?.message), /frozen: incident review/);
    assert.equal(await e.serving(), BUILTIN_VERSION);

    // Running the old plan again says plainly that nothing ran.
    const reused = await call({ socketPath: e.sock }, 'POST', '/v1/apply', { planId: firstPlan });
    assert.equal(reused.json.ok, false, reused.text);
    assert.equal(reused.json.reused, true);
    assert.match(String(reused.json.message), /had already ended \(rolled-back\); nothing was run again/);

    assert.equal((await e.cli(['freeze', '--target', T, '--unfreeze'])).status, 0);
    // The unfreeze resumed it in the background: follow its status until it ends.
    const deadline = Date.now() + 60_000;
    let p = await e.plan(attempt);
    while (p?.status === 'waiting' || p?.status === 'running' || p?.status === 'pending') {
      assert.ok(Date.now() < deadline, `the waiting attempt resumes after the unfreeze: ${JSON.stringify(p)}`);
      p = await e.plan(attempt);
    }
    assert.equal(p?.status, 'activated', JSON.stringify(p));
    assert.equal(await e.serving(), '1.0.1');
    const stopped = await host.stop();
    assert.equal(stopped?.errors, 0);
    assert.ok((await verifyAuditLog(e.fx.stateDir)).ok);
  },
);

test(
  'a graceful stop inside probation resumes it; rollback works after a restart, to the previous or --to a retained version; confirm survives a SIGKILL; an unconfirmed version does not',
  { timeout: 180_000 },
  async () => {
    const e = await env();
    await e.fx.publish('life-b', '1.2.0');
    await e.fx.publish('life-c', '1.3.0');
    await e.fx.publish('life-d', '1.4.0');
    await e.fx.publish('life-a', '1.1.0');
    let host = await e.start();
    assert.equal((await e.cli(['apply', '--target', T, '--patch', 'life-a', ...FAST, '--probation', '0'])).status, 0);
    const b = await e.cli(['apply', '--target', T, '--patch', 'life-b', ...FAST, '--probation', '600000']);
    assert.equal(b.status, 0, show(b));
    assert.equal(await e.serving(), '1.2.0');

    // SIGTERM: a deploy, not a crash — the probation is suspended, and resumed at the next start.
    await host.stop();
    const suspended = JSON.parse(await readFile(join(e.fx.stateDir, 'state.json'), 'utf8')) as {
      targets: Record<string, { active: { probation_left_ms?: number } }>;
    };
    assert.ok((suspended.targets[T]?.active.probation_left_ms ?? -1) > 0, 'the probation time left is recorded');
    host = await e.start();
    assert.equal(await e.serving(), '1.2.0', 'a graceful stop does not revert a good fix');
    assert.equal((await e.plan(String(b.json?.planId)))?.status, 'activated');

    // Rollback after the restart: the recorded previous came back warm.
    const back = await e.cli(['rollback', '--target', T]);
    assert.equal(back.status, 0, show(back));
    assert.equal(await e.serving(), '1.1.0');
    const toBuiltin = await e.cli(['rollback', '--target', T, '--to', BUILTIN_VERSION]);
    assert.equal(toBuiltin.status, 0, show(toBuiltin));
    assert.equal(await e.serving(), BUILTIN_VERSION);
    const unknown = await e.cli(['rollback', '--target', T, '--to', '9.9.9']);
    assert.notEqual(unknown.status, 0);
    assert.match(String(unknown.json?.message), /version 9\.9\.9 of .* is not retained; retained: /);

    // Confirm ends the probation: a SIGKILL then keeps the version.
    assert.equal((await e.cli(['apply', '--target', T, '--patch', 'life-c', ...FAST, '--probation', '600000'])).status, 0);
    const standing = async (): Promise<unknown> =>
      ((await call({ socketPath: e.sock }, 'GET', '/v1/status')).json.targets as { target: string; probation: unknown }[]).find((t) => t.target === T)
        ?.probation;
    const inProbation = (await standing()) as { good: boolean; leftMs: number };
    assert.equal(inProbation.good, false, 'status says the version is still in probation');
    assert.ok(inProbation.leftMs > 0 && inProbation.leftMs <= 600_000);
    const text = await hotpatch(['status', '--agent', e.sock]);
    assert.match(
      text.stdout,
      /active: {3}1\.3\.0 \(life-c\) in flight \d+, in probation \d+ s more \(a crash before then reverts it; hotpatch confirm ends it\)/,
    );
    const confirmed = await e.cli(['confirm', '--target', T]);
    assert.equal(confirmed.status, 0, show(confirmed));
    assert.deepEqual(await standing(), { good: true });
    const twice = await e.cli(['confirm', '--target', T]);
    assert.equal(twice.status, 0, `a retried confirm is not a failure: ${show(twice)}`);
    assert.match(String(twice.json?.message), /already good: nothing to confirm/);
    host.child.kill('SIGKILL');
    await host.exited;
    host = await e.start();
    assert.equal(await e.serving(), '1.3.0', 'a confirmed version survives a crash');

    // Not confirmed, then a crash: reverted to last good, and the plan says so.
    const d = await e.cli(['apply', '--target', T, '--patch', 'life-d', ...FAST, '--probation', '600000']);
    assert.equal(d.status, 0, show(d));
    host.child.kill('SIGKILL');
    await host.exited;
    host = await e.start();
    assert.equal(await e.serving(), '1.3.0');
    assert.equal((await e.plan(String(d.json?.planId)))?.status, 'rolled-back');

    const stopped = await host.stop();
    assert.equal(stopped?.errors, 0);
    assert.equal(stopped?.wrong, 0);
    assert.ok((await verifyAuditLog(e.fx.stateDir)).ok);
    const audit = (await readFile(join(e.fx.stateDir, 'audit.log'), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { event: { type: string; detail?: { action?: string } } }).event);
    assert.deepEqual(
      audit.filter((x) => x.type === 'Requested').map((x) => x.detail?.action),
      ['apply', 'apply', 'rollback', 'rollback', 'rollback', 'apply', 'confirm', 'confirm', 'apply'],
    );

    // The deployment history tells the same story.
    const history = await buildHistory(e.fx.stateDir, { target: T });
    assert.ok(history.audit.ok);
    const row = (patchId: string) => history.rows.filter((r) => r.patchId === patchId).at(-1);
    assert.equal(row('life-b')?.outcome, 'rolled-back', JSON.stringify(row('life-b')));
    assert.ok((row('life-b')?.restarts ?? 0) >= 1, 'life-b served across the graceful restart');
    assert.equal(row('life-d')?.outcome, 'reverted-at-restart', JSON.stringify(row('life-d')));
    assert.deepEqual(
      history.rows.filter((r) => r.outcome === 'serving').map((r) => [r.patchId, r.version]),
      [['life-c', '1.3.0']],
    );
  },
);

test('apply --dry-run says whether a patch would apply now, check by check, and changes nothing', { timeout: 60_000 }, async () => {
  const e = await env();
  await e.fx.publish('dry-good', '1.1.0');
  await e.fx.publish('dry-tampered', '1.2.0');
  const { writeFile } = await import('node:fs/promises');
  await writeFile(join(e.fx.repoDir, 'dry-tampered.bin'), 'export const api = { digest: () => "evil" };');
  const host = await e.start();
  const stateBefore = await readFile(join(e.fx.stateDir, 'state.json'), 'utf8').catch(() => '');
  const plansBefore = (await call({ socketPath: e.sock }, 'GET', '/v1/plans')).json.total;

  const good = await hotpatch(['apply', '--agent', e.sock, '--target', T, '--patch', 'dry-good', '--dry-run']);
  assert.equal(good.status, 0, show(good));
  assert.match(good.stdout, /^ok {3}fetch and verify: dry-good 1\.1\.0 verified: signed by ci \(threshold 1\)/m);
  assert.match(good.stdout, /^ok {3}target state: xps\.crypto\.hash\.sha256 is free: 1\.0\.0 → 1\.1\.0$/m);
  assert.match(good.stdout, /dry run: dry-good 1\.1\.0 would apply to xps\.crypto\.hash\.sha256 now/);

  const tampered = await e.cli(['apply', '--target', T, '--patch', 'dry-tampered', '--dry-run']);
  assert.equal(tampered.status, 1, show(tampered));
  assert.match(String(tampered.json?.message), /would not apply now — fetch and verify: /);
  assert.ok(['HASH_MISMATCH', 'SIZE_MISMATCH'].includes(String(tampered.json?.code)), show(tampered));

  assert.equal((await e.cli(['freeze', '--target', T, '--reason', 'dry'])).status, 0);
  const frozen = await e.cli(['apply', '--target', T, '--patch', 'dry-good', '--dry-run']);
  assert.equal(frozen.status, 1, show(frozen));
  assert.match(String(frozen.json?.message), /target state: xps\.crypto\.hash\.sha256 is frozen: dry/);

  // Nothing was applied, staged, planned or recorded in state.json by the dry runs.
  assert.equal(await e.serving(), BUILTIN_VERSION);
  assert.equal((await call({ socketPath: e.sock }, 'GET', '/v1/plans')).json.total, plansBefore);
  const stateAfter = await readFile(join(e.fx.stateDir, 'state.json'), 'utf8').catch(() => '');
  assert.equal(JSON.parse(stateAfter || '{"targets":{}}').targets[T]?.active ?? null, JSON.parse(stateBefore || '{"targets":{}}').targets[T]?.active ?? null);
  await host.stop();
  const audit = (await readFile(join(e.fx.stateDir, 'audit.log'), 'utf8'))
    .trim()
    .split('\n')
    .map((l) => (JSON.parse(l) as { event: { type: string; detail?: { action?: string } } }).event);
  assert.ok(!audit.some((x) => x.type === 'Staged' || x.type === 'Fetched' || x.type === 'Planned'), 'a dry run publishes no pipeline event');
  assert.equal(audit.filter((x) => x.type === 'Requested' && x.detail?.action === 'dry-run').length, 3, 'each dry run is recorded as a request');
});

test('an apply a freeze left waiting says it will run at the unfreeze, and hotpatch cancel stops that', { timeout: 60_000 }, async () => {
  const e = await env();
  await e.fx.publish('cancel-me', '1.1.0');
  const host = await e.start();
  assert.equal((await e.cli(['freeze', '--target', T, '--reason', 'incident 42'])).status, 0);
  const waiting = await e.cli(['apply', '--target', T, '--patch', 'cancel-me', ...FAST, '--probation', '0']);
  assert.equal(waiting.status, 1, show(waiting));
  const planId = String((waiting.json?.detail as { planId?: string } | undefined)?.planId);
  assert.match(
    String(waiting.json?.message),
    new RegExp(
      `^plan ${planId} is waiting, nothing applied yet: .*frozen: incident 42; it runs by itself when the target is unfrozen — or cancel it \\(hotpatch cancel --plan-id ${planId}\\)$`,
    ),
  );

  const cancelled = await e.cli(['cancel', '--plan-id', planId, '--reason', 'not during the incident']);
  assert.equal(cancelled.status, 0, show(cancelled));
  assert.equal((await e.plan(planId))?.status, 'failed');
  assert.match(String((await e.plan(planId))?.reason), /^cancelled: not during the incident/);
  const again = await e.cli(['cancel', '--plan-id', planId]);
  assert.equal(again.status, 1, 'an ended plan cannot be cancelled');

  assert.equal((await e.cli(['freeze', '--target', T, '--unfreeze'])).status, 0);
  // The unfreeze runs the waiting plans; the cancelled one is not among them.
  const runWaiting = await call({ socketPath: e.sock }, 'GET', '/v1/plans');
  assert.equal((runWaiting.json.plans as { id: string; status: string }[]).find((p) => p.id === planId)?.status, 'failed');
  assert.equal(await e.serving(), BUILTIN_VERSION);
  await host.stop();
  const audit = (await readFile(join(e.fx.stateDir, 'audit.log'), 'utf8'))
    .trim()
    .split('\n')
    .map((l) => (JSON.parse(l) as { event: { type: string; id: string } }).event);
  assert.ok(!audit.some((x) => x.type === 'Staged' && x.id === 'cancel-me'), 'the cancelled patch was never staged');
});

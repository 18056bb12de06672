/*
 * The disk-full case of the crash tests: the host's state directory is a real, small tmpfs
 * filled to the byte in the middle of a canary. With the default auditMode "fail-closed" the
 * apply whose events cannot be recorded is aborted back to the running version, the API
 * answers that outcome (not an I/O error), the plan shows it at once, operator requests that
 * move forward are refused while one that moves to safety goes through; once there is space
 * every kept event reaches audit.log in order, and after a SIGKILL the restarted host agrees.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { verifyAuditLog } from '../../src/observability/index.js';
import { smallDisk, type SmallDisk } from '../support/small-disk.js';
import { BUILTIN_VERSION, FAST_ZDT, LONG_ZDT, T, call, makeFixture, planOf, startHost, type Fixture, type Host, type HostConfig } from './helpers.js';

const fixtures: Fixture[] = [];
const disks: SmallDisk[] = [];
const hosts: Host[] = [];
after(async () => {
  for (const h of hosts) await h.kill();
  for (const d of disks) await d.close();
  for (const f of fixtures) await f.close();
});

async function setup(patch: string): Promise<{ fx: Fixture; disk: SmallDisk; sock: string; config: HostConfig }> {
  const fx = await makeFixture('hotpatch-disk-full-');
  fixtures.push(fx);
  const disk = await smallDisk(32 * 1024 * 1024);
  disks.push(disk);
  await fx.publish(patch, '1.1.0');
  const sock = join(fx.dir, 'agent.sock');
  return { fx, disk, sock, config: { stateDir: disk.dir, socketPath: sock, repoDir: fx.repoDir, trustFile: fx.trustFile, printEvents: true } };
}

async function flushed(host: Host): Promise<{ pendingAppends: number; journal: string }> {
  const seen = host.lines.filter((l) => l.event === 'flushed').length;
  host.child.kill('SIGUSR2');
  const line = await host.waitLine(() => host.lines.filter((l) => l.event === 'flushed').length > seen, 20_000, 'the flushed line');
  const last = host.lines.filter((l) => l.event === 'flushed').at(-1) ?? line;
  return { pendingAppends: last.pendingAppends as number, journal: last.journal as string };
}

interface AuditEvent {
  type: string;
  id: string;
  reason: string;
  detail?: Record<string, unknown>;
}

async function auditEvents(stateDir: string): Promise<AuditEvent[]> {
  return (await readFile(join(stateDir, 'audit.log'), 'utf8'))
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => (JSON.parse(l) as { event: AuditEvent }).event);
}

test(
  'disk full mid-canary (fail-closed): the apply is aborted back to the running version, the answer and the plan say so, and every kept event is written once there is space',
  { timeout: 120_000 },
  async () => {
    const { disk, sock, config } = await setup('full-canary');
    const host = await startHost(config);
    hosts.push(host);
    // Four steps of 400 ms: CanaryStep events keep coming after the disk is full.
    const zdt = { ...FAST_ZDT, steps: [0.2, 0.4, 0.6, 0.8], canaryInterval: 400, probationMs: 0 };
    const reply = call({ socketPath: sock }, 'POST', '/v1/apply', { plan: planOf('plan-full', 'full-canary', zdt) });
    await host.waitLine((l) => l.event === 'bus' && l.type === 'CanaryStarted', 20_000, 'the canary to start');
    await disk.fill();
    const r = await reply;

    // The answer is the outcome, not "cannot write journal.json".
    assert.equal(r.json.ok, false, r.text);
    assert.notEqual(r.json.status, 'activated');
    assert.notEqual(r.json.status, 'running');
    assert.match(String(r.json.message), /audit log cannot be written|ENOSPC|no space/i, r.text);
    const status = await call({ socketPath: sock }, 'GET', '/v1/status');
    const plan = (status.json.plans as { id: string; status: string }[]).find((p) => p.id === 'plan-full');
    assert.equal(plan?.status, r.json.status, 'the plan shows the outcome the answer gave');
    const active = (status.json.targets as { target: string; active: { version: string } }[]).find((t) => t.target === T)?.active;
    assert.equal(active?.version, BUILTIN_VERSION, 'the running version serves');

    // Forward moves are refused while nothing can be recorded; a move to safety goes through.
    const freeze = await call({ socketPath: sock }, 'POST', '/v1/freeze', { target: T, reason: 'disk full' });
    assert.equal(freeze.status, 200, freeze.text);
    const unfreeze = await call({ socketPath: sock }, 'POST', '/v1/unfreeze', { target: T });
    assert.equal(unfreeze.status, 500, unfreeze.text);
    assert.equal(unfreeze.json.code, 'IO');
    assert.match(String(unfreeze.json.message), /^unfreeze refused: the audit log cannot be written/);

    await disk.free();
    assert.deepEqual(await flushed(host), { pendingAppends: 0, journal: 'fulfilled' });
    const v = await verifyAuditLog(disk.dir);
    assert.ok(v.ok, JSON.stringify(v.firstBad));
    const events = await auditEvents(disk.dir);
    const types = events.filter((e) => e.id === 'full-canary').map((e) => e.type);
    const started = types.indexOf('CanaryStarted');
    assert.ok(started >= 0, types.join(','));
    assert.ok(types.slice(started).includes('RolledBack') || types.slice(started).includes('Aborted'), `the end of the canary is recorded: ${types.join(',')}`);
    assert.ok(!types.includes('Promoted'));
    assert.ok(
      events.some((e) => e.type === 'Requested' && e.detail?.action === 'freeze'),
      'the freeze request reached the log once there was space',
    );
    assert.ok(!events.some((e) => e.type === 'Requested' && e.detail?.action === 'unfreeze'), 'the refused request left no record');

    // SIGKILL, restart: the records and the runtime agree.
    host.child.kill('SIGKILL');
    await host.exited;
    const again = await startHost(config);
    hosts.push(again);
    const ready = again.lines.find((l) => l.event === 'ready')!;
    assert.deepEqual(ready.active, { version: BUILTIN_VERSION, patchId: null });
    assert.equal((ready.plans as { id: string; status: string }[]).find((p) => p.id === 'plan-full')?.status, r.json.status);
    const stopped = await again.stop();
    assert.ok(stopped !== undefined, `the host stopped cleanly: ${JSON.stringify(again.lines.slice(-3))} ${again.stderr()}`);
    assert.equal(stopped.errors, 0);
    assert.equal(stopped.wrong, 0);
    assert.ok((await verifyAuditLog(disk.dir)).ok);
  },
);

test(
  'disk full with a canary waiting (fail-closed): promote is refused and nothing is promoted; abort goes through; after a SIGKILL the host restarts on the running version',
  { timeout: 120_000 },
  async () => {
    const { disk, sock, config } = await setup('full-wait');
    const host = await startHost(config);
    hosts.push(host);
    const reply = call({ socketPath: sock }, 'POST', '/v1/apply', { plan: planOf('plan-wait', 'full-wait', { ...LONG_ZDT, probationMs: 0 }) });
    await host.waitLine((l) => l.event === 'bus' && l.type === 'CanaryStarted', 20_000, 'the canary to start');
    // Every event so far (CanaryStarted included) on disk first: the canary must not be aborted
    // by a failed append of its own start — this test is about the operator's requests.
    assert.equal((await flushed(host)).pendingAppends, 0);
    await disk.fill();
    const promote = await call({ socketPath: sock }, 'POST', '/v1/promote', { target: T });
    assert.equal(promote.status, 500, promote.text);
    assert.match(String(promote.json.message), /^promote refused: the audit log cannot be written/);
    const abort = await call({ socketPath: sock }, 'POST', '/v1/abort', { target: T, reason: 'disk full: back to safety' });
    assert.equal(abort.status, 200, abort.text);
    const r = await reply;
    assert.notEqual(r.json.status, 'activated', r.text);
    assert.match(String(r.json.message), /disk full: back to safety/);
    host.child.kill('SIGKILL');
    await host.exited;
    await disk.free();

    const again = await startHost(config);
    hosts.push(again);
    assert.deepEqual(again.lines.find((l) => l.event === 'ready')?.active, { version: BUILTIN_VERSION, patchId: null });
    const stopped = await again.stop();
    assert.ok(stopped !== undefined, `the host stopped cleanly: ${JSON.stringify(again.lines.slice(-3))} ${again.stderr()}`);
    assert.equal(stopped.errors, 0);
    assert.ok((await verifyAuditLog(disk.dir)).ok, 'what reached the log before the kill is a whole chain');
  },
);

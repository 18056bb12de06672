/*
 * A patch that kills its host while it is being applied (here: `process.exit(0)` in its
 * `init()`) must not be applied after every restart for ever. The host runs the planner's loop,
 * so a plan left pending by a crash runs again on its own; the test restarts the host five
 * times, as a supervisor would. After `maxApplyCrashes` (2) deaths the patch is blamed: the
 * plan fails with CRASHED, state.json records the patch as failed, the service serves its
 * previous version, and the next starts say so (a Failed event in the audit log) and stay up.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { verifyAuditLog } from '../../src/observability/index.js';
import { BUILTIN_VERSION, FAST_ZDT, T, call, makeFixture, planOf, startHost, type Fixture, type Host } from './helpers.js';

const EXIT_IN_INIT = `import { createHash } from 'node:crypto';
export const api = { digest: (s) => createHash('sha256').update(s).digest('hex') };
export function init() { process.exit(0); }
`;

const fixtures: Fixture[] = [];
const hosts: Host[] = [];
after(async () => {
  for (const h of hosts) await h.kill();
  for (const f of fixtures) await f.close();
});

interface AuditRecord {
  event: { type: string; id: string; detail?: { code?: string; plan?: string } };
}

async function auditEvents(stateDir: string): Promise<AuditRecord['event'][]> {
  const text = await readFile(join(stateDir, 'audit.log'), 'utf8');
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => (JSON.parse(l) as AuditRecord).event);
}

test(
  'a patch that exits the process in init() is applied at most twice over five restarts, then blamed: failed with CRASHED, the previous version serves',
  { timeout: 120_000 },
  async () => {
    const fx = await makeFixture('hotpatch-crash-loop-');
    fixtures.push(fx);
    await fx.publish('exits-in-init', '1.1.0', EXIT_IN_INIT);
    const sock = join(fx.dir, 'agent.sock');
    const start = async (): Promise<Host> => {
      const h = await startHost({ stateDir: fx.stateDir, socketPath: sock, repoDir: fx.repoDir, trustFile: fx.trustFile, runLoop: true, printEvents: true });
      hosts.push(h);
      return h;
    };

    // First start: the plan is added and applied; init() ends the process (status 0) mid-apply.
    const first = await start();
    const reply = call({ socketPath: sock }, 'POST', '/v1/apply', { plan: planOf('plan-exits', 'exits-in-init', FAST_ZDT) }).catch((e: unknown) => e);
    assert.deepEqual(await first.exited, { code: 0, signal: null }, 'the patch ended its host with status 0');
    await reply;
    let deaths = 1;

    // Four more starts: each one that resumes the plan dies again, until the patch is blamed.
    let survivors = 0;
    for (let restart = 0; restart < 4; restart++) {
      const h = await start();
      const ready = h.lines.find((l) => l.event === 'ready')!;
      const plan = (ready.plans as { id: string; status: string; reason: string }[]).find((p) => p.id === 'plan-exits')!;
      if (plan.status !== 'failed') {
        // Resumed (pending, to run again): the loop runs it and the host dies again.
        assert.equal(plan.status, 'pending', plan.reason);
        assert.match(plan.reason, /the process died with exits-in-init loading or in canary \(1 of 2 deaths before the patch is blamed\); will run again/);
        assert.deepEqual(await h.exited, { code: 0, signal: null });
        deaths += 1;
        continue;
      }
      survivors += 1;
      assert.match(plan.reason, /the process died 2 times while applying exits-in-init .* blamed, recorded as failed and not run again/);
      assert.deepEqual(ready.active, { version: BUILTIN_VERSION, patchId: null }, 'the service serves its previous version');
      const status = await call({ socketPath: sock }, 'GET', '/v1/status');
      const listed = (status.json.plans as { id: string; status: string }[]).find((p) => p.id === 'plan-exits');
      assert.equal(listed?.status, 'failed');
      const t = (status.json.targets as { target: string; active: { version: string } }[]).find((x) => x.target === T)!;
      assert.equal(t.active.version, BUILTIN_VERSION);
      // Running it again by hand is refused as final, not applied.
      const again = await call({ socketPath: sock }, 'POST', '/v1/apply', { planId: 'plan-exits' });
      assert.equal(again.json.status, 'failed', again.text);
      assert.equal(again.json.code, 'CRASHED');
      const stopped = await h.stop();
      assert.deepEqual(await h.exited, { code: 0, signal: null }, h.stderr());
      assert.equal(stopped?.errors, 0);
      if (survivors === 1)
        assert.match(h.stderr(), /HOTPATCH_CRASH_LOOP.*plan plan-exits: the process died 2 times/s, 'the start that blamed the patch said so loudly');
    }
    assert.equal(deaths, 2, 'applied exactly maxApplyCrashes (2) times');
    assert.equal(survivors, 3);

    const state = JSON.parse(await readFile(join(fx.stateDir, 'state.json'), 'utf8')) as { targets: Record<string, { failed: string[]; active: unknown }> };
    assert.deepEqual(state.targets[T]?.failed, ['exits-in-init']);
    assert.equal(state.targets[T]?.active ?? null, null, 'state.json keeps the built-in version active');
    // Host lines are written synchronously as each event is published, so a death cannot lose them.
    const staged = hosts.flatMap((h) => h.lines).filter((l) => l.event === 'bus' && l.type === 'Staged' && l.id === 'exits-in-init');
    assert.equal(staged.length, 2, 'staged (and loaded) twice, never a third time');
    const events = await auditEvents(fx.stateDir);
    const blamed = events.filter((e) => e.type === 'Failed' && e.detail?.code === 'CRASHED');
    assert.equal(blamed.length, 1, 'one Failed event with CRASHED in the audit log');
    assert.equal(blamed[0]?.detail?.plan, 'plan-exits');
    assert.ok((await verifyAuditLog(fx.stateDir)).ok, 'the audit chain verifies across the crashes');
  },
);

/*
 * An agent host stopped with SIGSTOP in the middle of a canary (a debugger, a stalled VM, a
 * job-control accident) still owns its state directory: a second host refused to start on it
 * and touched nothing. Continued with SIGCONT, the first host finishes its plan and every record
 * agrees; SIGKILLed afterwards and restarted, it comes back on the version it recorded.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { verifyAuditLog } from '../../src/observability/index.js';
import { LONG_ZDT, T, call, makeFixture, planOf, startHost, type Fixture, type Host } from './helpers.js';

const fixtures: Fixture[] = [];
const hosts: Host[] = [];
after(async () => {
  for (const h of hosts) {
    h.child.kill('SIGCONT');
    await h.kill();
  }
  for (const f of fixtures) await f.close();
});

async function stateFiles(stateDir: string): Promise<string[]> {
  return Promise.all(['journal.json', 'state.json', 'audit.log'].map((f) => readFile(join(stateDir, f), 'utf8')));
}

test(
  'a host stopped mid-canary keeps its state directory; continued, it finishes the plan; SIGKILLed and restarted, it serves what it recorded',
  { timeout: 90_000 },
  async () => {
    const fx = await makeFixture('hotpatch-sigstop-');
    fixtures.push(fx);
    await fx.publish('stop-cont', '1.1.0');
    const sock = join(fx.dir, 'agent.sock');
    const config = { stateDir: fx.stateDir, socketPath: sock, repoDir: fx.repoDir, trustFile: fx.trustFile, printEvents: true };
    const first = await startHost(config);
    hosts.push(first);

    const reply = call({ socketPath: sock }, 'POST', '/v1/apply', { plan: planOf('plan-stop', 'stop-cont', { ...LONG_ZDT, probationMs: 0 }) });
    await first.waitLine((l) => l.event === 'bus' && l.type === 'CanaryStarted', 20_000, 'the canary to start');
    first.child.kill('SIGSTOP');
    // Wait for the kernel to report the stop (the child is then really not running).
    await new Promise<void>((resolve) => {
      const check = async (): Promise<void> => {
        const status = await readFile(`/proc/${first.child.pid}/stat`, 'utf8');
        if (/^\d+ \(.*\) T /.test(status)) resolve();
        else setImmediate(() => void check());
      };
      void check();
    });

    // A second host on the same state directory is refused and writes nothing.
    const before = await stateFiles(fx.stateDir);
    await assert.rejects(
      startHost(config).then((h) => hosts.push(h)),
      /exited while waiting for the ready line[\s\S]*another agent \(pid \d+\) is using the state directory/,
    );
    assert.deepEqual(await stateFiles(fx.stateDir), before, 'the refused start left journal, state and audit untouched');

    first.child.kill('SIGCONT');
    const promote = await call({ socketPath: sock }, 'POST', '/v1/promote', { target: T });
    assert.equal(promote.status, 200, promote.text);
    const r = await reply;
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.status, 'activated');
    const status = await call({ socketPath: sock }, 'GET', '/v1/status');
    const plan = (status.json.plans as { id: string; status: string }[]).find((p) => p.id === 'plan-stop');
    assert.equal(plan?.status, 'activated');
    const active = (status.json.targets as { target: string; active: { version: string } }[]).find((t) => t.target === T)?.active;
    assert.equal(active?.version, '1.1.0');

    first.child.kill('SIGKILL');
    await first.exited;
    const second = await startHost(config);
    hosts.push(second);
    assert.deepEqual(second.lines.find((l) => l.event === 'ready')?.active, { version: '1.1.0', patchId: 'stop-cont' });
    assert.equal(
      (second.lines.find((l) => l.event === 'ready')?.plans as { id: string; status: string }[]).find((p) => p.id === 'plan-stop')?.status,
      'activated',
    );
    const stopped = await second.stop();
    assert.equal(stopped?.errors, 0);
    assert.equal(stopped?.wrong, 0);
    const v = await verifyAuditLog(fx.stateDir);
    assert.ok(v.ok, JSON.stringify(v.firstBad));
  },
);

/*
 * A full disk never makes the planner lie: an apply whose promotion cannot be recorded ends
 * with the old version serving and says so; the plan shows that outcome at once (never
 * `running`), journal.json catches up once there is space, and a phase is never started
 * while its start cannot be recorded. The disk is a real, small tmpfs filled to the byte.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { smallDisk } from '../support/small-disk.js';
import { FAST_ZDT, T, makeEnv, planOf, until, withTraffic } from './helpers.js';

test(
  'a disk that fills during the canary: the promotion is refused, the baseline serves, the plan shows the real outcome at once and journal.json catches up once space is back',
  { timeout: 60_000 },
  async () => {
    const disk = await smallDisk(16 * 1024 * 1024);
    const env = await makeEnv({ stateDir: disk.dir });
    try {
      await env.publish('fix-1', '1.1.0');
      const proc = env.process();
      const planner = await proc.open();
      // A long first interval: the test fills the disk, then asks for the promotion itself.
      planner.addPlan(planOf('p1', { patch: 'fix-1', zdt: { ...FAST_ZDT, steps: [0.5], canaryInterval: 120_000 } }));
      await planner.flush();
      const run = planner.runOnce('p1');
      const traffic = withTraffic(proc, run);
      await until(() => proc.events.some((e) => e.type === 'CanaryStarted'), 20_000, 'the canary to start');
      await disk.fill();
      proc.target.promote();
      const { result, errors } = await traffic;

      assert.equal(errors, 0, 'no call failed');
      assert.equal(proc.target.active.version, '1.0.0', 'the old version serves');
      assert.equal(result.status, 'waiting', result.reason);
      assert.equal(result.code, 'IO');
      assert.match(result.reason, /recording the promotion of 1\.1\.0 failed: .*(ENOSPC|no space).*1\.0\.0 kept/is);
      assert.match(result.journalError ?? '', /the outcome is not in journal\.json yet: .*(ENOSPC|no space)/is);
      assert.equal(planner.plan('p1').status, 'waiting', 'the plan shows the outcome, not running');
      assert.ok(
        proc.events.some((e) => e.type === 'RolledBack'),
        'the runtime reported the rollback',
      );
      const onDisk = (await env.journal()).plans[0]!;
      assert.equal(onDisk.status, 'running', 'the journal could not be written while the disk was full');

      await disk.free();
      await planner.flush();
      const caughtUp = (await env.journal()).plans[0]!;
      assert.equal(caughtUp.status, 'waiting');
      assert.equal(caughtUp.code, 'IO');
      // Not the patch's fault: it is not recorded as failed, and the plan goes through now.
      const state = await proc.runtime.store!.read();
      assert.deepEqual(state.targets[T]?.failed ?? [], []);
      const again = planner.runOnce('p1');
      const secondTraffic = withTraffic(proc, again);
      await until(() => proc.events.filter((e) => e.type === 'CanaryStarted').length === 2, 20_000, 'the second canary to start');
      proc.target.promote();
      const second = await secondTraffic;
      assert.equal(second.result.status, 'activated', second.result.reason);
      assert.equal(proc.target.active.version, '1.1.0');
    } finally {
      await env.close();
      await disk.close();
    }
  },
);

test('with the disk full before a run, no phase starts unrecorded: the plan waits with IO and runs once there is space', { timeout: 60_000 }, async () => {
  const disk = await smallDisk(16 * 1024 * 1024);
  const env = await makeEnv({ stateDir: disk.dir });
  try {
    await env.publish('fix-2', '1.1.0');
    const proc = env.process();
    const planner = await proc.open();
    planner.addPlan(planOf('p2', { patch: 'fix-2' }));
    await planner.flush();
    await disk.fill();
    const refused = await planner.runOnce('p2');
    assert.equal(refused.status, 'waiting', refused.reason);
    assert.equal(refused.code, 'IO');
    assert.match(refused.reason, /^fetch not started: journal\.json cannot be written/);
    assert.equal(proc.events.filter((e) => e.type === 'Fetched' || e.type === 'Staged').length, 0, 'nothing was fetched or staged');
    assert.equal(planner.plan('p2').status, 'waiting');

    await disk.free();
    const ran = await withTraffic(proc, planner.runOnce('p2'));
    assert.equal(ran.result.status, 'activated', ran.result.reason);
    assert.equal((await env.journal()).plans[0]!.status, 'activated');
  } finally {
    await env.close();
    await disk.close();
  }
});

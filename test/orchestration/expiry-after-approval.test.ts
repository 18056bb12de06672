import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { PatchPlan } from '../../src/orchestration/index.js';
import { makeEnv, planOf, until, withTraffic } from './helpers.js';

test('a manifest that expires while the plan waits for its approval is not activated', async () => {
  const env = await makeEnv();
  try {
    const proc = env.process();
    const planner = await proc.open();
    const expires = new Date(Date.now() + 1500).toISOString();
    await env.publish('short-lived', '1.0.1', { expires });
    // The approval arrives only after the manifest has expired (a freeze attack by delay).
    proc.registries.approvers.register('slow', {
      approve: async () => {
        // Answers once the manifest has expired (a condition on the clock, not a fixed sleep).
        await until(() => Date.now() > Date.parse(expires) + 100, 15_000, 'the manifest to expire');
        return { approvedBy: ['alice', 'bob'] };
      },
    });
    planner.addPlan(planOf('p-expiring', { patch: 'short-lived', approver: 'slow' }) as PatchPlan);
    const { result } = await withTraffic(proc, planner.runOnce('p-expiring'));
    assert.equal(result.status, 'failed', result.reason);
    assert.equal(result.code, 'EXPIRED');
    assert.equal(proc.target.active.version, '1.0.0');
  } finally {
    await env.close();
  }
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { AgentTargetState, RolloutState, StoredAgent, StoredRollout } from '../../src/distributed/index.js';
import { nextStep } from '../../src/distributed/rollout-progress.js';

const NOW = Date.parse('2026-01-01T00:00:10.000Z');
const T = 'xps.crypto.hash.sha256';

function rollout(state: Partial<RolloutState>, extra: Partial<StoredRollout> = {}): StoredRollout {
  return {
    id: 'r-1',
    target: T,
    patchId: 'p-1',
    version: '1.0.1',
    payloadHash: `sha256:${'0'.repeat(64)}`,
    rings: 3,
    soakMs: 0,
    emptyRings: 'wait',
    createdAt: '2026-01-01T00:00:00.000Z',
    prefix: '/f',
    expiresAt: '2026-01-02T00:00:00.000Z',
    state: { status: 'running', ring: 0, ...state },
    seq: 1,
    trail: [],
    signers: ['ops-alice'],
    stateSigners: { role: 'controller', keyids: ['ctl-a'] },
    raw: '{}',
    key: '/f/rollouts/r-1',
    ...extra,
  };
}

function agent(id: string, ring: number, report: Partial<AgentTargetState> | undefined): StoredAgent {
  const targets: Record<string, AgentTargetState> = {};
  if (report !== undefined) targets[T] = { version: '1.0.0', phase: 'idle', health: 'healthy', updatedAt: '2026-01-01T00:00:05.000Z', ...report };
  return { agentId: id, ring, targets, key: `/f/agents/${id}` };
}

const ready = { version: '1.0.1', patchId: 'p-1', phase: 'promoted', health: 'healthy', rollout: 'r-1' } as const;

test('a ring whose alive agents all run the version, promoted and healthy, opens the next ring at once without a soak', () => {
  const step = nextStep(rollout({ ring: 0 }), [agent('a', 0, ready), agent('b', 1, undefined)], NOW, 'ctl');
  assert.equal(step?.writes.length, 1);
  assert.equal(step?.writes[0]?.ring, 1);
  assert.equal(step?.writes[0]?.status, 'running');
  assert.equal(step?.writes[0]?.ringStartedAt, new Date(NOW).toISOString());
});

test('the last ring passing completes the rollout', () => {
  const step = nextStep(rollout({ ring: 2 }), [agent('a', 2, ready)], NOW, 'ctl');
  assert.deepEqual(
    step?.writes.map((w) => [w.status, w.ring]),
    [['completed', 3]],
  );
});

test('a failure in any ring halts the rollout and then rolls it back, in two writes', () => {
  const failed = { phase: 'failed', rollout: 'r-1', reason: 'self-test failed' } as const;
  const step = nextStep(rollout({ ring: 1 }), [agent('a', 0, ready), agent('b', 2, failed)], NOW, 'ctl');
  assert.deepEqual(
    step?.writes.map((w) => w.status),
    ['halted', 'rolling-back'],
  );
  assert.match(step?.writes[0]?.reason ?? '', /agent b \(ring 2\) failed p-1: self-test failed/);
});

test('a soak starts the clock and asks to look again when it ends; an agent not ready clears it', () => {
  const soaking = nextStep(rollout({ ring: 0 }, { soakMs: 500 }), [agent('a', 0, ready)], NOW, 'ctl');
  assert.equal(soaking?.writes[0]?.healthySince, new Date(NOW).toISOString());
  assert.equal(soaking?.wakeAfterMs, 500);
  const since = new Date(NOW - 200).toISOString();
  const waiting = nextStep(rollout({ ring: 0, healthySince: since }, { soakMs: 500 }), [agent('a', 0, ready)], NOW, 'ctl');
  assert.deepEqual(waiting, { writes: [], wakeAfterMs: 300 });
  const cleared = nextStep(rollout({ ring: 0, healthySince: since }, { soakMs: 500 }), [agent('a', 0, { ...ready, health: 'unknown' })], NOW, 'ctl');
  assert.equal(cleared?.writes[0]?.healthySince, undefined);
  assert.match(cleared?.writes[0]?.reason ?? '', /1\/1 agent\(s\) not yet promoted and healthy/);
});

test('a rollout rolling back waits while an agent runs its patch or is busy with it, then becomes rolled-back', () => {
  const r = rollout({ status: 'rolling-back', ring: 1, reason: 'halted' });
  assert.equal(nextStep(r, [agent('a', 0, ready)], NOW, 'ctl'), undefined);
  assert.equal(nextStep(r, [agent('a', 0, { phase: 'rolling-back', rollout: 'r-1' })], NOW, 'ctl'), undefined);
  assert.deepEqual(
    nextStep(r, [agent('a', 0, { version: '1.0.0', phase: 'rolled-back', rollout: 'r-1' })], NOW, 'ctl')?.writes.map((w) => w.status),
    ['rolled-back'],
  );
});

test('paused, completed and aborted rollouts are left alone', () => {
  for (const status of ['paused', 'completed', 'aborted'] as const) {
    assert.equal(nextStep(rollout({ status }), [agent('a', 0, ready)], NOW, 'ctl'), undefined, status);
  }
});

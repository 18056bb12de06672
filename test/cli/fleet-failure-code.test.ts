/*
 * `hotpatch fleet rollout --watch`: the code a failed rollout ends with (failureCode): the
 * failing agent's own code when the halt reason carries one, else CANARY_FAILED; ABORTED for
 * an operators' abort. An agent's operational code (IO, NOT_FOUND) does not turn the watch's
 * exit 1 into exit 3.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { failureCode } from '../../src/cli/commands/fleet-rollout-watch.js';
import type { RolloutDocument } from '../../src/distributed/index.js';

const at = (status: string, reason?: string): Pick<RolloutDocument, 'state'> =>
  ({ state: { status, ring: 0, ...(reason === undefined ? {} : { reason }) } }) as unknown as Pick<RolloutDocument, 'state'>;

test('failureCode: the agent’s code from a halt reason, CANARY_FAILED otherwise, ABORTED for an abort', () => {
  const failed = (reason: string): string => `agent host-1 (ring 0) failed p-1: ${reason}`;
  for (const status of ['halted', 'rolling-back', 'rolled-back']) {
    assert.equal(failureCode(at(status, failed('plan pl-1 failed (SELF_TEST_FAILED): KAT abc: wrong digest'))), 'SELF_TEST_FAILED');
    assert.equal(failureCode(at(status, failed('plan pl-1 failed (LOAD_FAILED): cannot import'))), 'LOAD_FAILED');
    assert.equal(failureCode(at(status, failed('plan pl-1 rolled-back (CRASHED): worker exited'))), 'CRASHED');
    assert.equal(failureCode(at(status, failed('plan pl-1 failed (BAD_SIGNATURE): bad signature'))), 'BAD_SIGNATURE');
  }
  // No code, an unknown one, an operational one, or a code not where the agent's report puts it.
  assert.equal(failureCode(at('rolled-back', failed('unhealthy on 1.0.1'))), 'CANARY_FAILED');
  assert.equal(failureCode(at('rolled-back', failed('plan pl-1 failed: no code'))), 'CANARY_FAILED');
  assert.equal(failureCode(at('rolled-back', failed('plan pl-1 failed (NOT_A_CODE): x'))), 'CANARY_FAILED');
  assert.equal(failureCode(at('rolled-back', failed('plan pl-1 failed (IO): disk full'))), 'CANARY_FAILED');
  assert.equal(failureCode(at('rolled-back', failed('plan pl-1 failed (NOT_FOUND): gone'))), 'CANARY_FAILED');
  assert.equal(failureCode(at('rolled-back', 'halted by hand (SELF_TEST_FAILED)')), 'CANARY_FAILED');
  assert.equal(failureCode(at('halted')), 'CANARY_FAILED');
  assert.equal(failureCode(at('aborted', failed('plan pl-1 failed (SELF_TEST_FAILED): x'))), 'ABORTED');
});

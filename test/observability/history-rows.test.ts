/*
 * `buildHistory` over audit logs written event by event, for the orders of events a crash can
 * leave that a live run rarely shows.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { createEvent, type EventType } from '../../src/core/index.js';
import { AuditLog, buildHistory } from '../../src/observability/index.js';

const T = 'svc.page';

async function historyOf(events: [EventType, string, string, Record<string, unknown>?][]): Promise<[string, string | null, string][]> {
  const dir = await mkdtemp(join(tmpdir(), 'xps-history-rows-'));
  try {
    const log = new AuditLog(dir);
    for (const [type, id, version, detail] of events) {
      await log.append(createEvent({ type, id, target: T, version, reason: `${type} ${id}`, ...(detail === undefined ? {} : { detail }) }));
    }
    await log.close();
    const history = await buildHistory(dir, { target: T });
    assert.ok(history.audit.ok);
    return history.rows.map((r) => [r.version, r.patchId, r.outcome]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('a patch killed with its process before its promotion reached the log leaves the version it was replacing as the one row serving', async () => {
  const rows = await historyOf([
    ['Staged', 'fix-c', '1.3.0'],
    ['Promoted', 'fix-c', '1.3.0'],
    ['Activated', 'fix-c', '1.3.0', { previous: '1.0.0' }],
    // fix-d got as far as its canary; the process died before its Promoted/Activated lines were appended.
    ['Staged', 'fix-d', '1.4.0'],
    ['CanaryStarted', 'fix-d', '1.4.0'],
    ['Failed', 'fix-d', '1.4.0', { restored: '1.3.0' }],
    ['Activated', 'fix-c', '1.3.0'],
  ]);
  assert.deepEqual(
    rows.filter(([, , outcome]) => outcome === 'serving'),
    [['1.3.0', 'fix-c', 'serving']],
    JSON.stringify(rows),
  );
  assert.deepEqual(
    rows.find(([, id]) => id === 'fix-d'),
    ['1.4.0', 'fix-d', 'reverted-at-restart'],
  );
});

test('a patch whose promotion reached the log and that was reverted at restart ends its row; the version restored serves in a new one', async () => {
  const rows = await historyOf([
    ['Staged', 'fix-c', '1.3.0'],
    ['Promoted', 'fix-c', '1.3.0'],
    ['Activated', 'fix-c', '1.3.0', { previous: '1.0.0' }],
    ['Staged', 'fix-d', '1.4.0'],
    ['Promoted', 'fix-d', '1.4.0'],
    ['Activated', 'fix-d', '1.4.0', { previous: '1.3.0' }],
    ['Failed', 'fix-d', '1.4.0', { restored: '1.3.0' }],
    ['Activated', 'fix-c', '1.3.0'],
  ]);
  assert.deepEqual(rows, [
    ['1.0.0', null, 'replaced'],
    ['1.3.0', 'fix-c', 'replaced'],
    ['1.4.0', 'fix-d', 'reverted-at-restart'],
    ['1.3.0', 'fix-c', 'serving'],
  ]);
});

test('rolling back from the built-in to a retained patch ends the built-in row: one version serves', async () => {
  const rows = await historyOf([
    ['Staged', 'fix-101', '1.0.1'],
    ['Promoted', 'fix-101', '1.0.1'],
    ['Activated', 'fix-101', '1.0.1', { previous: '1.0.0' }],
    // rollback --to 1.0.0, then rollback --to 1.0.1 (the runtime names the version left by its patch id, "builtin" for the built-in).
    ['RolledBack', 'fix-101', '1.0.0', { from: '1.0.1', to: '1.0.0' }],
    ['RolledBack', 'builtin', '1.0.1', { from: '1.0.0', to: '1.0.1' }],
  ]);
  assert.deepEqual(
    rows.filter(([, , outcome]) => outcome === 'serving'),
    [['1.0.1', 'fix-101', 'serving']],
    JSON.stringify(rows),
  );
});

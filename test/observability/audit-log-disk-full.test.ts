import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EventBus, HotPatchError, type HotPatchEvent } from '../../src/core/index.js';
import { AuditLog, verifyAuditLog } from '../../src/observability/index.js';
import { smallDisk } from '../support/small-disk.js';
import { event, logLines } from './helpers.js';

test('with the disk full, appends reject with IO and keep their events; once space is back they are written in order and the chain verifies', async () => {
  const disk = await smallDisk();
  try {
    const log = new AuditLog(disk.dir, { retryMs: 60_000 });
    for (let i = 1; i <= 3; i++) await log.append(event('CanaryStep', 'patch-1', { reason: `step ${i}` }));
    await disk.fill();
    for (let i = 4; i <= 5; i++) {
      await assert.rejects(log.append(event('CanaryStep', 'patch-1', { reason: `step ${i}` })), (e: unknown) => {
        assert.ok(e instanceof HotPatchError && e.code === 'IO', String(e));
        assert.match(e.message, /ENOSPC|no space/i);
        assert.match(e.message, /kept: \d events wait to be written in order/);
        return true;
      });
    }
    assert.equal(log.pendingAppends, 2);
    assert.equal(log.failure?.code, 'IO');
    // What is on disk is still a whole, verifiable chain of the first three.
    assert.equal((await verifyAuditLog(disk.dir)).ok, true);
    assert.equal((await logLines(disk.dir)).length, 3);

    await disk.free();
    await log.append(event('RolledBack', 'patch-1', { reason: 'after the disk came back' }));
    assert.equal(log.pendingAppends, 0);
    assert.equal(log.failure, undefined);
    await log.close();
    const reasons = (await logLines(disk.dir)).map((l) => (JSON.parse(l) as { event: HotPatchEvent }).event.reason);
    assert.deepEqual(reasons, ['step 1', 'step 2', 'step 3', 'step 4', 'step 5', 'after the disk came back']);
    const v = await verifyAuditLog(disk.dir);
    assert.equal(v.ok, true, JSON.stringify(v.firstBad));
    assert.equal(v.lines, 6);
    assert.equal(log.lostAppends, 0);
  } finally {
    await disk.close();
  }
});

test('attached to a bus, a failed append calls onFailure, and flush() writes the kept events once the disk has space', async () => {
  const disk = await smallDisk();
  try {
    const bus = new EventBus();
    const log = new AuditLog(disk.dir, { retryMs: 60_000 });
    await log.open();
    const failures: { type: string; code: string }[] = [];
    const sawFailure = new Promise<void>((resolve) => {
      log.attach(bus, {
        onFailure: (e, error) => {
          failures.push({ type: e.type, code: error.code });
          resolve();
        },
      });
    });
    await disk.fill();
    bus.publish(event('Aborted', 'patch-2'));
    await sawFailure;
    assert.deepEqual(failures, [{ type: 'Aborted', code: 'IO' }]);
    assert.equal(log.pendingAppends, 1);
    await log.flush();
    assert.equal(log.pendingAppends, 1, 'still full: still kept');
    await disk.free();
    await log.flush();
    assert.equal(log.pendingAppends, 0);
    await log.close();
    assert.equal((await logLines(disk.dir)).length, 1);
    assert.equal((await verifyAuditLog(disk.dir)).ok, true);
  } finally {
    await disk.close();
  }
});

test('a backlog past maxBacklog loses the newest events, counts them, and close() reports what was never written', async () => {
  const disk = await smallDisk();
  const warnings: string[] = [];
  const onWarning = (w: Error & { code?: string }): void => void (w.code === 'HOTPATCH_AUDIT_LOST' && warnings.push(w.message));
  process.on('warning', onWarning);
  try {
    const log = new AuditLog(disk.dir, { maxBacklog: 2, retryMs: 60_000 });
    await log.open();
    await disk.fill();
    for (let i = 0; i < 3; i++)
      await assert.rejects(log.append(event('CanaryStep', 'p', { reason: `s${i}` })), (e: unknown) => e instanceof HotPatchError && e.code === 'IO');
    assert.equal(log.pendingAppends, 2);
    assert.equal(log.lostAppends, 1);
    await log.close();
    assert.equal(log.lostAppends, 3);
    await new Promise((r) => setImmediate(r));
    assert.equal(warnings.length, 2);
    assert.match(warnings[1]!, /closed with 2 events never written/);
  } finally {
    process.off('warning', onWarning);
    await disk.close();
  }
});

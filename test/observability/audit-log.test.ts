import assert from 'node:assert/strict';
import { appendFile, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { EventBus, HotPatchError } from '../../src/core/index.js';
import { AuditLog, ZERO_HASH, buildHistory, buildReport, verifyAuditLog } from '../../src/observability/index.js';
import { encodeLine } from '../../src/observability/audit-chain.js';
import { StateStore } from '../../src/rollback/index.js';
import { event, logLines, logWith, readState, setAuditHead, sha256, tempDir, writeLog } from './helpers.js';

test('appended events form a SHA-256 chain whose head state.json records, and it verifies', async () => {
  const { dir, cleanup } = await logWith(3);
  try {
    const lines = await logLines(dir);
    assert.equal(lines.length, 3);
    const parsed = lines.map((l) => JSON.parse(l) as { seq: number; prev: string; event: { reason: string } });
    assert.deepEqual(
      parsed.map((p) => p.seq),
      [1, 2, 3],
    );
    assert.equal(parsed[0]!.prev, ZERO_HASH);
    assert.equal(parsed[1]!.prev, sha256(lines[0]!));
    assert.equal(parsed[2]!.prev, sha256(lines[1]!));
    assert.equal(parsed[2]!.event.reason, 'event 3');
    assert.equal((await readState(dir)).audit_head, `3:${sha256(lines[2]!)}`);
    assert.equal((await stat(join(dir, 'audit.log'))).mode & 0o777, 0o600);
    const v = await verifyAuditLog(dir);
    assert.deepEqual(v, { ok: true, lines: 3, head: sha256(lines[2]!), recordedHead: `3:${sha256(lines[2]!)}` });
  } finally {
    await cleanup();
  }
});

test('a missing log with no head verifies as empty', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const v = await verifyAuditLog(dir);
    assert.equal(v.ok, true);
    assert.equal(v.lines, 0);
    assert.equal(v.head, undefined);
  } finally {
    await cleanup();
  }
});

test('a head in state.json with no log is bad at line 1', async () => {
  const { dir, cleanup } = await logWith(2);
  try {
    await writeFile(join(dir, 'audit.log'), '');
    const v = await verifyAuditLog(dir);
    assert.equal(v.ok, false);
    assert.equal(v.firstBad?.line, 1);
    assert.match(v.firstBad!.reason, /missing/);
  } finally {
    await cleanup();
  }
});

/** Runs `tamper` on a fresh 5-line log and returns the verdict. */
async function tampered(tamper: (dir: string, lines: string[]) => Promise<void>): Promise<Awaited<ReturnType<typeof verifyAuditLog>>> {
  const { dir, cleanup } = await logWith(5);
  try {
    assert.equal((await verifyAuditLog(dir)).ok, true);
    await tamper(dir, await logLines(dir));
    return await verifyAuditLog(dir);
  } finally {
    await cleanup();
  }
}

test('editing the content of a middle line is detected at that line', async () => {
  const v = await tampered((dir, lines) =>
    writeLog(
      dir,
      lines.map((l, i) => (i === 2 ? l.replace('event 3', 'event X') : l)),
    ),
  );
  assert.equal(v.ok, false);
  assert.equal(v.firstBad?.line, 3);
  assert.match(v.firstBad!.reason, /line 3 was modified/);
});

test('editing the content of the last line is detected against the head', async () => {
  const v = await tampered((dir, lines) =>
    writeLog(
      dir,
      lines.map((l, i) => (i === 4 ? l.replace('event 5', 'event X') : l)),
    ),
  );
  assert.equal(v.firstBad?.line, 5);
  assert.match(v.firstBad!.reason, /does not match the head/);
});

test('a line that no longer parses is named', async () => {
  const v = await tampered((dir, lines) =>
    writeLog(
      dir,
      lines.map((l, i) => (i === 1 ? l.slice(0, -1) : l)),
    ),
  );
  assert.equal(v.firstBad?.line, 2);
  assert.match(v.firstBad!.reason, /JSON/);
});

test('a line or an event with an unknown field is named, with the fields allowed', async () => {
  const extra = await tampered((dir, lines) =>
    writeLog(
      dir,
      lines.map((l, i) => (i === 1 ? l.replace('{"seq"', '{"x":1,"seq"') : l)),
    ),
  );
  assert.equal(extra.firstBad?.line, 2);
  assert.match(extra.firstBad!.reason, /^line 2 has unknown field "x" \(allowed: seq, prev, event\)$/);
  const inEvent = await tampered((dir, lines) =>
    writeLog(
      dir,
      lines.map((l, i) => (i === 2 ? l.replace('"event":{', '"event":{"colour":"red",') : l)),
    ),
  );
  assert.equal(inEvent.firstBad?.line, 3);
  assert.match(inEvent.firstBad!.reason, /^line 3: event has unknown field "colour" \(allowed: type, id, target, version, reason, ts, detail\)$/);
  const array = await tampered((dir, lines) =>
    writeLog(
      dir,
      lines.map((l, i) => (i === 0 ? '[1]' : l)),
    ),
  );
  assert.equal(array.firstBad?.line, 1);
  assert.match(array.firstBad!.reason, /^line 1 must be a JSON object, got an array$/);
});

test('reordering two lines is detected at the first of them', async () => {
  const v = await tampered((dir, lines) => writeLog(dir, [lines[0]!, lines[2]!, lines[1]!, lines[3]!, lines[4]!]));
  assert.equal(v.firstBad?.line, 2);
  assert.match(v.firstBad!.reason, /seq 3, expected 2/);
});

test('deleting a middle line is detected where it was', async () => {
  const v = await tampered((dir, lines) =>
    writeLog(
      dir,
      lines.filter((_, i) => i !== 2),
    ),
  );
  assert.equal(v.firstBad?.line, 3);
  assert.match(v.firstBad!.reason, /removed/);
});

test('dropping the last lines is detected because the head covers more lines', async () => {
  const v = await tampered((dir, lines) => writeLog(dir, lines.slice(0, 3)));
  assert.equal(v.ok, false);
  assert.equal(v.lines, 3);
  assert.equal(v.firstBad?.line, 4);
  assert.match(v.firstBad!.reason, /covers 5 lines but audit.log has 3/);
});

test('truncating the last line in the middle is detected at that line', async () => {
  const v = await tampered(async (dir) => {
    const text = await readFile(join(dir, 'audit.log'), 'utf8');
    await writeFile(join(dir, 'audit.log'), text.slice(0, -20));
  });
  assert.equal(v.lines, 4);
  assert.equal(v.firstBad?.line, 5);
  assert.match(v.firstBad!.reason, /incomplete/);
});

test('a forged line appended with a correct chain is detected: the head does not cover it', async () => {
  const { dir, cleanup } = await logWith(5);
  try {
    const lines = await logLines(dir);
    // What an attacker with write access to audit.log only would do: chain it properly.
    const forged = JSON.stringify({ seq: 6, prev: sha256(lines[4]!), event: event('Approved', 'patch-5', { reason: 'approved by mallory' }) });
    await appendFile(join(dir, 'audit.log'), `${forged}\n`);
    const v = await verifyAuditLog(dir);
    assert.equal(v.ok, false);
    assert.equal(v.firstBad?.line, 6);
    assert.match(v.firstBad!.reason, /not covered by the head/);

    // A restart does not adopt it (its hash was never announced), and later appends never
    // make the log verify again.
    const warnings: string[] = [];
    const onWarning = (w: Error & { code?: string }): void => void warnings.push(w.code ?? '');
    process.on('warning', onWarning);
    const log = new AuditLog(dir);
    try {
      await log.open();
      assert.equal(log.reconciliation?.consistent, false);
      await log.append(event('Activated', 'patch-7'));
      await log.close();
    } finally {
      await new Promise((r) => setImmediate(r));
      process.off('warning', onWarning);
    }
    assert.ok(warnings.includes('HOTPATCH_AUDIT_INCONSISTENT'));
    const again = await verifyAuditLog(dir);
    assert.equal(again.ok, false);
    assert.equal(again.firstBad?.line, 6);
  } finally {
    await cleanup();
  }
});

test('editing the head in state.json is detected', async () => {
  const v = await tampered((dir) => setAuditHead(dir, `5:${'a'.repeat(64)}`));
  assert.equal(v.firstBad?.line, 5);
  const lowered = await tampered(async (dir, lines) => setAuditHead(dir, `3:${sha256(lines[4]!)}`));
  assert.equal(lowered.firstBad?.line, 3);
  const removed = await tampered((dir) => setAuditHead(dir, undefined));
  assert.equal(removed.firstBad?.line, 1);
  assert.match(removed.firstBad!.reason, /no audit_head/);
  const malformed = await tampered((dir) => setAuditHead(dir, 'not-a-head'));
  assert.equal(malformed.firstBad?.line, 1);
  assert.match(malformed.firstBad!.reason, /audit_head must be/);
});

test('opening after a crash mid-append cuts the uncommitted partial line', async () => {
  const { dir, cleanup } = await logWith(3);
  try {
    const lines = await logLines(dir);
    const next = encodeLine(4, sha256(lines[2]!), event('Staged', 'patch-4'));
    // The crash: line 4 was announced in state.json, then only part of it reached the disk.
    await setAuditHead(dir, `3:${sha256(lines[2]!)}+${next.hash}`);
    await appendFile(join(dir, 'audit.log'), next.text.slice(0, 40));
    assert.equal((await verifyAuditLog(dir)).firstBad?.line, 4);

    const log = new AuditLog(dir);
    await log.open();
    assert.deepEqual(log.reconciliation, { truncatedBytes: 40, consistent: true });
    assert.equal((await readFile(join(dir, 'audit.log'), 'utf8')).endsWith('}\n'), true);
    assert.equal((await readState(dir)).audit_head, `3:${sha256(lines[2]!)}`);
    await log.append(event('Activated', 'patch-4'));
    await log.close();
    const v = await verifyAuditLog(dir);
    assert.equal(v.ok, true);
    assert.equal(v.lines, 4);
  } finally {
    await cleanup();
  }
});

test('opening after a crash between the fsync and the head update accepts the announced line', async () => {
  const { dir, cleanup } = await logWith(3);
  try {
    const lines = await logLines(dir);
    const next = encodeLine(4, sha256(lines[2]!), event('Promoted', 'patch-4'));
    await setAuditHead(dir, `3:${sha256(lines[2]!)}+${next.hash}`);
    await appendFile(join(dir, 'audit.log'), `${next.text}\n`);
    // Announced, so already covered before any repair.
    assert.equal((await verifyAuditLog(dir)).ok, true);

    const log = new AuditLog(dir);
    await log.open();
    assert.equal(log.reconciliation?.acceptedLine, 4);
    assert.equal((await readState(dir)).audit_head, `4:${next.hash}`);
    await log.append(event('Activated', 'patch-4'));
    await log.close();
    const v = await verifyAuditLog(dir);
    assert.equal(v.ok, true);
    assert.equal(v.lines, 5);
  } finally {
    await cleanup();
  }
});

test('a partial line that does not match the head is left for verify, never cut', async () => {
  const { dir, cleanup } = await logWith(3);
  try {
    await setAuditHead(dir, `2:${sha256((await logLines(dir))[1]!)}`);
    await appendFile(join(dir, 'audit.log'), '{"seq":4');
    const before = await readFile(join(dir, 'audit.log'));
    const onWarning = (): void => undefined;
    process.on('warning', onWarning);
    const log = new AuditLog(dir);
    try {
      await log.open();
      await log.close();
    } finally {
      process.off('warning', onWarning);
    }
    assert.equal(log.reconciliation?.consistent, false);
    assert.deepEqual(await readFile(join(dir, 'audit.log')), before);
    assert.equal((await verifyAuditLog(dir)).firstBad?.line, 3);
  } finally {
    await cleanup();
  }
});

test('100 events published synchronously are appended in order, each fsynced, seq 1 to 100', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const bus = new EventBus();
    const log = new AuditLog(dir);
    const detach = log.attach(bus);
    for (let i = 1; i <= 100; i++) bus.publish(event('CanaryStep', 'patch-1', { reason: `step ${i}` }));
    await log.flush();
    detach();
    await log.close();
    const lines = (await logLines(dir)).map((l) => JSON.parse(l) as { seq: number; event: { reason: string } });
    assert.equal(lines.length, 100);
    assert.deepEqual(
      lines.map((l) => l.seq),
      Array.from({ length: 100 }, (_, i) => i + 1),
    );
    assert.deepEqual(
      lines.map((l) => l.event.reason),
      Array.from({ length: 100 }, (_, i) => `step ${i + 1}`),
    );
    assert.equal(log.failedAppends, 0);
    const v = await verifyAuditLog(dir);
    assert.equal(v.ok, true);
    assert.equal(v.lines, 100);
  } finally {
    await cleanup();
  }
});

test('an append that fails while attached is reported as a warning and counted, and later events still go in', async () => {
  const { dir, cleanup } = await tempDir();
  const warnings: { code: string | undefined; message: string }[] = [];
  const onWarning = (w: Error & { code?: string }): void => void warnings.push({ code: w.code, message: w.message });
  process.on('warning', onWarning);
  try {
    const bus = new EventBus();
    const log = new AuditLog(dir);
    log.attach(bus);
    bus.publish(event('Staged', 'patch-1'));
    bus.publish(event('Failed', 'patch-1', { detail: { size: 10n } })); // BigInt: not JSON
    bus.publish(event('Staged', 'patch-2'));
    await log.flush();
    await new Promise((r) => setImmediate(r));
    await log.close();
    assert.equal(log.failedAppends, 1);
    const failed = warnings.filter((w) => w.code === 'HOTPATCH_AUDIT_FAILED');
    assert.equal(failed.length, 1);
    assert.match(failed[0]!.message, /Failed of patch-1/);
    assert.equal((await logLines(dir)).length, 2);
    assert.equal((await verifyAuditLog(dir)).ok, true);
  } finally {
    process.off('warning', onWarning);
    await cleanup();
  }
});

test('append rejects what is not an event, and a closed log', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const log = new AuditLog(dir);
    await assert.rejects(log.append({ type: 'Nope' } as never), (e) => e instanceof HotPatchError && e.code === 'INVALID' && /event.type/.test(e.message));
    await assert.rejects(
      log.append(event('Staged', 'p', { detail: { big: 'x'.repeat(300 * 1024) } })),
      (e) => e instanceof HotPatchError && e.code === 'TOO_LARGE',
    );
    await log.close();
    await assert.rejects(log.append(event('Staged', 'p')), (e) => e instanceof HotPatchError && e.code === 'INVALID' && /closed/.test(e.message));
    assert.equal(log.failedAppends, 3);
  } finally {
    await cleanup();
  }
});

test('the head is kept through the StateStore given, beside the runtime state', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const store = new StateStore(dir);
    await store.update((s) => {
      s.targets['xps.a'] = { active: { id: null, version: '1.0.0' }, previous: null, last_good: null, failed: [] };
    });
    const log = new AuditLog(dir, { store });
    await log.append(event('Staged', 'patch-1'));
    await log.close();
    const state = await store.read();
    assert.equal(state.targets['xps.a']?.active?.version, '1.0.0');
    assert.equal(state.audit_head, `1:${sha256((await logLines(dir))[0]!)}`);
  } finally {
    await cleanup();
  }
});

test('verifying, reporting or showing the history of a state directory that is not there is NOT_FOUND, not an empty verified log', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const missing = join(dir, 'no-such-state');
    await assert.rejects(verifyAuditLog(missing), (e: unknown) => e instanceof HotPatchError && e.code === 'NOT_FOUND' && e.message.includes('no-such-state'));
    await assert.rejects(buildReport(missing), (e: unknown) => e instanceof HotPatchError && e.code === 'NOT_FOUND');
    await assert.rejects(buildHistory(missing, { target: 'xps.crypto.hash.sha256' }), (e: unknown) => e instanceof HotPatchError && e.code === 'NOT_FOUND');
  } finally {
    await cleanup();
  }
});

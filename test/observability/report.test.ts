import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import type { EventType, HotPatchEvent } from '../../src/core/index.js';
import { generateKeyPair, hashBytes } from '../../src/crypto-agile/index.js';
import { AuditLog, buildReport, formatReport } from '../../src/observability/index.js';
import { signManifest, signerOf } from '../support/patches.js';
import { event, logLines, tempDir, writeLog } from './helpers.js';

const ci = generateKeyPair('ed25519');
const bot = generateKeyPair('ed25519');

/** A really signed manifest envelope, as the runtime keeps it in manifests/<id>.json. */
async function writeManifest(dir: string, id: string, version: string, keys: [string, ReturnType<typeof generateKeyPair>][]): Promise<string> {
  const payload = new TextEncoder().encode(`export const api = {}; // ${id}`);
  const payloadHash = `sha256:${Buffer.from(hashBytes('sha256', payload)).toString('hex')}`;
  const manifest = {
    id,
    target: 'xps.crypto.hash.sha256',
    version,
    created_at: '2025-10-27T09:00:00Z',
    expires: '2026-10-27T09:00:00Z',
    signers: keys.map(([k]) => k),
    payload_hash: payloadHash,
    payload_size: payload.length,
    payload_type: 'esm',
    metadata: { ticket: 'SEC-1234' },
  };
  const envelope = signManifest(
    manifest,
    keys.map(([keyid, pair]) => signerOf(keyid, pair.privateKey)),
  );
  await mkdir(join(dir, 'manifests'), { recursive: true });
  await writeFile(join(dir, 'manifests', `${id}.json`), envelope);
  return payloadHash;
}

let clock = 0;
function at(type: EventType, id: string, version: string, extra: Partial<HotPatchEvent> = {}): HotPatchEvent {
  clock += 60_000;
  return event(type, id, { version, ts: new Date(clock).toISOString(), ...extra });
}

/** Three patches: one activated with a quorum, one rolled back, one still running; plus the built-in. */
async function world(): Promise<{ dir: string; cleanup: () => Promise<void>; hashA: string }> {
  clock = Date.parse('2025-10-27T10:00:00Z');
  const t = await tempDir();
  const hashA = await writeManifest(t.dir, 'hotfix-a', '1.2.4', [
    ['team-key-1', ci],
    ['build-bot', bot],
  ]);
  await writeManifest(t.dir, 'hotfix-b', '1.2.5', [['team-key-1', ci]]);
  const log = new AuditLog(t.dir);
  const events = [
    at('Activated', 'builtin', '1.2.3', { reason: 'restored after restart' }),
    at('Planned', 'hotfix-a', '1.2.4'),
    at('Fetched', 'hotfix-a', '1.2.4'),
    at('Verified', 'hotfix-a', '1.2.4', { detail: { signers: ['team-key-1', 'build-bot'] } }),
    at('Approved', 'hotfix-a', '1.2.4', { reason: 'quorum 2/2', detail: { approvers: ['alice', 'bob'] } }),
    at('Staged', 'hotfix-a', '1.2.4'),
    at('CanaryStarted', 'hotfix-a', '1.2.4'),
    at('Promoted', 'hotfix-a', '1.2.4'),
    at('Activated', 'hotfix-a', '1.2.4', { reason: '1.2.4 active, 1.2.3 kept warm for rollback' }),
    at('Staged', 'hotfix-b', '1.2.5'),
    at('CanaryStarted', 'hotfix-b', '1.2.5'),
    at('RolledBack', 'hotfix-b', '1.2.5', { reason: 'candidate error rate 4% above 1%' }),
    at('Staged', 'hotfix-c', '1.2.6'),
  ];
  for (const e of events) await log.append(e);
  await log.close();
  return { ...t, hashA };
}

test('the report lists each patch with its manifest, signers, approvals, timestamps and outcome', async () => {
  const { dir, cleanup, hashA } = await world();
  try {
    const r = await buildReport(dir);
    assert.equal(r.audit.ok, true);
    assert.equal(r.audit.lines, 13);
    assert.deepEqual(
      r.patches.map((p) => [p.id, p.outcome]),
      [
        ['hotfix-a', 'activated'],
        ['hotfix-b', 'rolled-back'],
        ['hotfix-c', 'in-progress'],
      ],
    );
    const [a, b, c] = r.patches;
    assert.equal(a!.target, 'xps.crypto.hash.sha256');
    assert.equal(a!.version, '1.2.4');
    assert.equal(a!.payload_hash, hashA);
    assert.equal(a!.created_at, '2025-10-27T09:00:00Z');
    assert.deepEqual(a!.metadata, { ticket: 'SEC-1234' });
    assert.deepEqual(a!.signers, ['team-key-1', 'build-bot']);
    assert.equal(a!.signersSource, 'verified-event');
    assert.deepEqual(
      a!.approvals.map((x) => x.detail),
      [{ approvers: ['alice', 'bob'] }],
    );
    assert.equal(a!.firstEventAt, '2025-10-27T10:02:00.000Z');
    assert.equal(a!.lastEventAt, '2025-10-27T10:09:00.000Z');
    assert.deepEqual(a!.reasons, ['Activated: 1.2.4 active, 1.2.3 kept warm for rollback']);
    assert.equal(a!.timeline.length, 8);
    assert.ok(a!.timeline.every((t) => t.verified));
    assert.deepEqual(b!.signers, ['team-key-1']);
    assert.equal(b!.signersSource, 'envelope');
    assert.deepEqual(b!.reasons, ['RolledBack: candidate error rate 4% above 1%']);
    assert.match(c!.manifestError ?? '', /does not exist/);
    assert.deepEqual(c!.signers, []);
  } finally {
    await cleanup();
  }
});

test('the report renders as markdown with a summary table and a timeline per patch, and as JSON', async () => {
  const { dir, cleanup } = await world();
  try {
    const r = await buildReport(dir);
    const md = formatReport(r, 'md');
    assert.match(md, /^# Hot patch compliance report/);
    assert.match(md, /\*\*Audit log: verified\.\*\* 13 lines/);
    assert.match(md, /\| Patch \| Target \| Version \| Outcome \| Signers \| Approvals \| First event \| Last event \|/);
    assert.match(md, /\| hotfix-a \| xps\.crypto\.hash\.sha256 \| 1\.2\.4 \| activated \| team-key-1, build-bot \| 1 \|/);
    assert.match(md, /\| hotfix-b \| xps\.crypto\.hash\.sha256 \| 1\.2\.5 \| rolled-back \| team-key-1 \| 0 \|/);
    assert.match(md, /## hotfix-a\n/);
    assert.match(md, /Approvals: alice, bob at 2025-10-27T10:05:00\.000Z/);
    assert.match(md, /\| 12 \| 2025-10-27T10:12:00\.000Z \| RolledBack \| 1\.2\.5 \| candidate error rate 4% above 1% \|/);
    assert.doesNotMatch(md, /## builtin/);
    assert.deepEqual(JSON.parse(formatReport(r, 'json')), JSON.parse(JSON.stringify(r)));
  } finally {
    await cleanup();
  }
});

test('since keeps only later events', async () => {
  const { dir, cleanup } = await world();
  try {
    const r = await buildReport(dir, { since: new Date('2025-10-27T10:10:00Z') });
    assert.deepEqual(
      r.patches.map((p) => p.id),
      ['hotfix-b', 'hotfix-c'],
    );
    assert.equal(r.since, '2025-10-27T10:10:00.000Z');
  } finally {
    await cleanup();
  }
});

test('a broken audit chain is reported in the report, never hidden', async () => {
  const { dir, cleanup } = await world();
  try {
    const lines = await logLines(dir);
    await writeLog(
      dir,
      lines.map((l, i) => (i === 10 ? l.replace('hotfix-b', 'hotfix-z') : l)),
    );
    const r = await buildReport(dir);
    assert.equal(r.audit.ok, false);
    assert.equal(r.audit.firstBad?.line, 11);
    const b = r.patches.find((p) => p.id === 'hotfix-b')!;
    assert.deepEqual(
      b.timeline.map((t) => [t.line, t.verified]),
      [
        [10, true],
        [12, false],
      ],
    );
    const md = formatReport(r, 'md');
    assert.match(md, /\*\*Audit log: NOT VERIFIED — first bad line 11: line 11 was modified/);
    assert.match(md, /\| 12 \(unverified\) \|/);
  } finally {
    await cleanup();
  }
});

test('an event id that is not a patch id is never used as a file name', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const log = new AuditLog(dir);
    await log.append(event('Staged', '../../etc/passwd'));
    await log.close();
    const r = await buildReport(dir);
    assert.match(r.patches[0]!.manifestError ?? '', /not a valid patch id/);
  } finally {
    await cleanup();
  }
});

test('a patch that served keeps its outcome when a later attempt is refused before serving, and one reverted at a restart is rolled back', async () => {
  clock = Date.parse('2025-11-01T10:00:00Z');
  const t = await tempDir();
  try {
    const log = new AuditLog(t.dir);
    for (const e of [
      at('Promoted', 'served-then-refused', '1.3.0'),
      at('Activated', 'served-then-refused', '1.3.0'),
      at('Failed', 'served-then-refused', '1.3.0', { reason: 'verify failed: DOWNGRADE', detail: { code: 'DOWNGRADE' } }),
      at('Promoted', 'reverted', '1.4.0'),
      at('Activated', 'reverted', '1.4.0'),
      at('Failed', 'reverted', '1.4.0', { reason: 'the process stopped inside its probation', detail: { restored: '1.3.0' } }),
      at('Failed', 'never-served', '1.5.0', { reason: 'load failed', detail: { code: 'LOAD_FAILED' } }),
    ]) {
      await log.append(e);
    }
    await log.close();
    const report = await buildReport(t.dir);
    const outcome = (id: string) => report.patches.find((p) => p.id === id)?.outcome;
    assert.equal(outcome('served-then-refused'), 'activated');
    assert.equal(outcome('reverted'), 'rolled-back');
    assert.equal(outcome('never-served'), 'failed');
    assert.match(report.patches.find((p) => p.id === 'served-then-refused')!.reasons.at(-1)!, /DOWNGRADE/, 'the refusal is still listed among the reasons');
  } finally {
    await t.cleanup();
  }
});

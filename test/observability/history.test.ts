/*
 * `buildHistory` / `hotpatch history`: a target's deployment history from the audit log,
 * built here by a real agent and runtime — patches applied over HTTP by named operators: one
 * rolled back by its canary, one refused at load, one aborted by another operator, one
 * refused as a downgrade, one rolled back by an operator, then a restart, and (in a child
 * process) a crash inside a probation — then read back as rows: version, patch, when it
 * served, how it ended, who asked.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { cp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startAgent, type Agent } from '../../src/agent/index.js';
import { buildHistory, verifyAuditLog, type HistoryRow } from '../../src/observability/index.js';
import type { Target } from '../../src/zero-downtime/index.js';
import {
  BUILTIN_VERSION,
  FAST_ZDT,
  LONG_ZDT,
  T,
  builtin,
  call,
  endpointOf,
  faultySource,
  hostRuntime,
  hotpatch,
  makeFixture,
  planOf,
  startHost,
  until,
  writeToken,
  type Endpoint,
  type Fixture,
  type Reply,
} from '../agent/helpers.js';

/** Calls the target until `done` settles, so the canary has live calls to judge. */
async function withTraffic(target: Target<typeof builtin>, done: Promise<Reply>): Promise<Reply> {
  let finished = false;
  void done.then(
    () => (finished = true),
    () => (finished = true),
  );
  for (let i = 0; !finished; i++) {
    target.api.digest(`m${i}`);
    if (i % 20 === 0) await new Promise((r) => setImmediate(r));
  }
  return done;
}

/** The fields a reader of the history cares about, in a comparable shape. */
function shape(r: HistoryRow): unknown[] {
  return [r.version, r.patchId, r.start ?? null, r.outcome, r.code ?? null, r.requestedBy?.credential ?? null, r.endedBy?.credential ?? null, r.restarts];
}

const ZDT = { ...FAST_ZDT, probationMs: 0 };

describe('the history of a target built by a real agent', { timeout: 120_000 }, () => {
  let fx: Fixture;
  let copy: string;

  before(async () => {
    fx = await makeFixture('hotpatch-history-');
    await fx.publish('h-good', '1.1.0');
    await fx.publish('h-bad', '1.2.0', faultySource('h-bad'));
    await fx.publish('h-load', '1.2.1', `throw new Error('refuses to load');\nexport const api = {};\n`);
    await fx.publish('h-next', '1.3.0');
    await fx.publish('h-old', '1.0.5');
    await fx.publish('h-abort', '1.2.2');
    const files: Record<string, string> = {};
    const tokens: Record<string, string> = {};
    for (const name of ['alice', 'bob']) {
      tokens[name] = randomBytes(24).toString('hex');
      files[name] = join(fx.dir, `${name}.token`);
      await writeToken(files[name]!, tokens[name]!);
    }
    const http = {
      port: 0,
      tokens: [
        { name: 'alice', file: files.alice!, role: 'operate' as const },
        { name: 'bob', file: files.bob!, role: 'operate' as const },
      ],
    };
    const defaults = { repository: fx.repoDir, trustStore: fx.trustFile };
    const first = hostRuntime(fx.stateDir);
    let agent: Agent = await startAgent({ stateDir: fx.stateDir, runtime: first.runtime, http, defaults, log: false });
    try {
      const as = (name: string): Endpoint => endpointOf(agent.address, tokens[name]!);
      const apply = async (who: string, plan: string, patch: string): Promise<Reply> =>
        withTraffic(first.target, call(as(who), 'POST', '/v1/apply', { plan: planOf(plan, patch, ZDT) }, { headers: { 'x-hotpatch-actor': `${who}@ops` } }));
      assert.equal((await apply('alice', 'plan-good', 'h-good')).status, 200);
      const bad = await apply('alice', 'plan-bad', 'h-bad');
      assert.equal(bad.json.code, 'CANARY_FAILED', bad.text);
      const load = await apply('bob', 'plan-load', 'h-load');
      assert.equal(load.json.code, 'LOAD_FAILED', load.text);
      // A canary that stays open until bob aborts it.
      const aborting = withTraffic(
        first.target,
        call(as('alice'), 'POST', '/v1/apply', { plan: planOf('plan-abort', 'h-abort', { ...LONG_ZDT, probationMs: 0 }) }),
      );
      await until(() => first.target.canary !== null, 15_000, 'the canary of h-abort');
      assert.equal((await call(as('bob'), 'POST', '/v1/abort', { target: T, reason: 'wrong window' })).status, 200);
      assert.equal((await aborting).json.code, 'ABORTED');
      assert.equal((await apply('bob', 'plan-next', 'h-next')).status, 200);
      const old = await apply('alice', 'plan-old', 'h-old');
      assert.equal(old.json.code, 'DOWNGRADE', old.text);
      const back = await call(as('bob'), 'POST', '/v1/rollback', { target: T, reason: 'customer reports' }, { headers: { 'x-hotpatch-actor': 'bob@ops' } });
      assert.equal(back.status, 200, back.text);
    } finally {
      await agent.close();
    }
    // A restart: the version rolled back to is restored, and serves on.
    const second = hostRuntime(fx.stateDir);
    agent = await startAgent({ stateDir: fx.stateDir, runtime: second.runtime, http, defaults, log: false });
    assert.equal(second.target.active.patchId, 'h-good');
    await agent.close();
    copy = join(fx.dir, 'copy');
    await cp(fx.stateDir, copy, { recursive: true });
  });

  after(async () => {
    await fx?.close();
  });

  test('buildHistory gives one row per version episode and per refused attempt, with who asked and how each ended', async () => {
    const h = await buildHistory(fx.stateDir, { target: T });
    assert.equal(h.audit.ok, true, JSON.stringify(h.audit.firstBad));
    assert.deepEqual(h.rows.map(shape), [
      [BUILTIN_VERSION, null, 'before-log', 'replaced', null, null, null, 0],
      ['1.1.0', 'h-good', 'promoted', 'replaced', null, 'token:alice', null, 0],
      ['1.2.0', 'h-bad', null, 'refused', 'CANARY_FAILED', 'token:alice', null, 0],
      ['1.2.1', 'h-load', null, 'refused', 'LOAD_FAILED', 'token:bob', null, 0],
      ['1.2.2', 'h-abort', null, 'refused', 'ABORTED', 'token:alice', 'token:bob', 0],
      ['1.3.0', 'h-next', 'promoted', 'rolled-back', null, 'token:bob', 'token:bob', 0],
      ['', 'h-old', null, 'refused', 'DOWNGRADE', 'token:alice', null, 0],
      ['1.1.0', 'h-good', 'rollback', 'serving', null, 'token:bob', null, 1],
    ]);
    const [builtinRow, good, refused, , aborted, next, , back] = h.rows as HistoryRow[] as [
      HistoryRow,
      HistoryRow,
      HistoryRow,
      HistoryRow,
      HistoryRow,
      HistoryRow,
      HistoryRow,
      HistoryRow,
    ];
    assert.equal(good.requestedBy?.token, 'alice');
    assert.equal(good.requestedBy?.actor, 'alice@ops');
    assert.equal(good.plan, 'plan-good');
    assert.equal(builtinRow.endedAt, good.servedFrom, 'the built-in stopped serving when 1.1.0 started');
    assert.equal(good.endedAt, next.servedFrom, '1.1.0 stopped serving when 1.3.0 started');
    assert.equal(refused.servedFrom, undefined, 'a canary rolled back never served');
    assert.ok(refused.attemptedAt !== undefined && refused.endedAt !== undefined);
    assert.equal(aborted.endedBy?.action, 'abort');
    assert.equal(aborted.reason, 'wrong window');
    assert.equal(next.endedBy?.action, 'rollback');
    assert.equal(next.reason, 'customer reports');
    assert.equal(back.servedFrom, next.endedAt);
    assert.equal(back.requestedBy?.action, 'rollback');
    assert.ok(h.rows.every((r) => r.verified));
    assert.deepEqual(h.targets, [T]);

    const recent = await buildHistory(fx.stateDir, { target: T, limit: 2 });
    assert.deepEqual(recent.rows.map(shape), h.rows.slice(-2).map(shape));
    assert.equal(recent.total, 8);
    const other = await buildHistory(fx.stateDir, { target: 'xps.other.target' });
    assert.deepEqual(other.rows, []);
    await assert.rejects(buildHistory(fx.stateDir, { target: '../etc' }), { code: 'INVALID' });
    await assert.rejects(buildHistory(fx.stateDir, { target: T, limit: 0 }), { code: 'INVALID' });
  });

  test('hotpatch history prints the rows as a table and, with --json, every row in the last line', async () => {
    const text = await hotpatch(['history', '--target', T, '--state', fx.stateDir]);
    assert.equal(text.status, 0, text.stderr);
    assert.match(text.stdout, /^History of xps\.crypto\.hash\.sha256 from .*audit\.log: audit log verified \(\d+ lines, hash chain intact\)\./);
    const lines = text.stdout.split('\n');
    const header = lines.findIndex((l) => l.startsWith('VERSION'));
    assert.match(lines[header]!, /^VERSION +PATCH +SERVED FROM +SERVED UNTIL +OUTCOME +ASKED BY +REASON$/);
    const body = lines.slice(header + 1, header + 9);
    assert.match(body[0]!, /^1\.0\.0 +— +before the log +\S+ +replaced +— +/);
    assert.match(body[1]!, /^1\.1\.0 +h-good +\S+ \(promoted\) +\S+ +replaced +token:alice \(alice@ops\) +/);
    assert.match(body[2]!, /^1\.2\.0 +h-bad +never \(tried \S+\) +— +refused: canary failed +token:alice \(alice@ops\) +canary of h-bad failed/);
    assert.match(body[3]!, /^1\.2\.1 +h-load +never \(tried \S+\) +— +refused: load failed +token:bob \(bob@ops\) +/);
    assert.match(body[4]!, /^1\.2\.2 +h-abort +never \(tried \S+\) +— +refused: aborted by token:bob +token:alice +wrong window$/);
    assert.match(body[5]!, /^1\.3\.0 +h-next +\S+ \(promoted\) +\S+ +rolled back by token:bob \(bob@ops\) +token:bob \(bob@ops\) +customer reports$/);
    assert.match(body[6]!, /^— +h-old +never \(tried \S+\) +— +refused: downgrade +token:alice \(alice@ops\) +verify failed: version 1\.0\.5 /);
    assert.match(body[7]!, /^1\.1\.0 +h-good +\S+ \(rollback\) +now +serving, 1 restart\(s\) +token:bob \(bob@ops\) +brought back by the rollback of 1\.3\.0/);

    const json = await hotpatch(['history', '--target', T, '--state', fx.stateDir, '--limit', '2', '--json']);
    assert.equal(json.status, 0, json.stderr);
    const history = json.json?.history as { rows: HistoryRow[]; total: number; audit: { ok: boolean } };
    assert.equal(json.json?.ok, true);
    assert.equal(history.total, 8);
    assert.deepEqual(
      history.rows.map((r) => [r.patchId, r.outcome]),
      [
        ['h-old', 'refused'],
        ['h-good', 'serving'],
      ],
    );

    const limited = await hotpatch(['history', '--target', T, '--state', fx.stateDir, '--limit', '1']);
    assert.match(limited.stdout, /The 1 most recent of 8 rows\./);
    for (const bad of [
      ['--limit', '0'],
      ['--limit', '2x'],
      ['--target', 'no/slashes'],
    ]) {
      const r = await hotpatch(['history', '--target', T, '--state', fx.stateDir, ...bad, '--json']);
      assert.equal(r.status, 2, `${bad.join(' ')}: ${r.stdout}${r.stderr}`);
      assert.equal(r.json?.code, 'INVALID');
    }
    const missing = await hotpatch(['history', '--state', fx.stateDir]);
    assert.equal(missing.status, 2);
  });

  test('a broken chain is shown above the rows, and the rows built from lines past it are marked unverified', async () => {
    // Edit the last line (the restart's Activated): the chain no longer ends at the recorded head.
    const log = join(copy, 'audit.log');
    const lines = (await readFile(log, 'utf8')).trimEnd().split('\n');
    lines[lines.length - 1] = lines[lines.length - 1]!.replace('restored after restart', 'restored after restart (edited)');
    await writeFile(log, `${lines.join('\n')}\n`);
    const v = await verifyAuditLog(copy);
    assert.equal(v.ok, false);
    const h = await buildHistory(copy, { target: T });
    assert.equal(h.audit.firstBad?.line, lines.length);
    assert.deepEqual(
      h.rows.map((r) => r.verified),
      [true, true, true, true, true, true, true, false],
    );
    const text = await hotpatch(['history', '--target', T, '--state', copy]);
    assert.equal(text.status, 0, text.stderr);
    assert.match(text.stdout, new RegExp(`AUDIT LOG NOT VERIFIED — first bad line ${lines.length}: `));
    assert.match(text.stdout, /serving, 1 restart\(s\) \[unverified\]/);
  });
});

test(
  'a version promoted and then lost with its process inside its probation is shown reverted at restart, and the last good one restored',
  { timeout: 60_000 },
  async () => {
    const fx = await makeFixture('hotpatch-history-crash-');
    try {
      await fx.publish('h-crash', '2.0.0');
      const sock = join(fx.dir, 'agent.sock');
      const config = { stateDir: fx.stateDir, socketPath: sock, repoDir: fx.repoDir, trustFile: fx.trustFile };
      const host = await startHost(config);
      try {
        // A long probation: the process dies inside it.
        const r = await call({ socketPath: sock }, 'POST', '/v1/apply', { plan: planOf('plan-crash', 'h-crash', { ...FAST_ZDT, probationMs: 600_000 }) });
        assert.equal(r.status, 200, r.text);
        host.child.kill('SIGUSR2');
        await host.waitLine((l) => l.event === 'flushed', 10_000, 'the flushed line');
      } finally {
        await host.kill();
      }
      const again = await startHost(config);
      try {
        const active = again.lines.find((l) => l.event === 'ready')?.active as { version: string } | undefined;
        assert.equal(active?.version, BUILTIN_VERSION);
        again.child.kill('SIGUSR2');
        await again.waitLine((l) => l.event === 'flushed', 10_000, 'the flushed line');
      } finally {
        await again.stop();
      }
      const h = await buildHistory(fx.stateDir, { target: T });
      assert.equal(h.audit.ok, true, JSON.stringify(h.audit.firstBad));
      assert.deepEqual(h.rows.map(shape), [
        [BUILTIN_VERSION, null, 'before-log', 'replaced', null, null, null, 0],
        ['2.0.0', 'h-crash', 'promoted', 'reverted-at-restart', null, 'unix-socket', null, 0],
        [BUILTIN_VERSION, 'builtin', 'restored', 'serving', null, null, null, 0],
      ]);
      assert.match(h.rows[1]!.reason, /the process stopped inside its 600000 ms probation/);
      assert.ok(h.rows[1]!.servedFrom !== undefined && h.rows[1]!.endedAt !== undefined, 'it served, then was reverted');
    } finally {
      await fx.close();
    }
  },
);

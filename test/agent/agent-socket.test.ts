/*
 * The agent embedded in this process (the test is the host service), served on a Unix
 * socket in a temp state directory, driven through real HTTP requests on that socket while
 * the test keeps calling the target as live traffic would.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { lstat, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startAgent, type Agent } from '../../src/agent/index.js';
import { verifyAuditLog } from '../../src/observability/index.js';
import type { Target } from '../../src/zero-downtime/index.js';
import {
  BUILTIN_VERSION,
  FAST_ZDT,
  LONG_ZDT,
  T,
  builtin,
  call,
  hostRuntime,
  makeFixture,
  openEvents,
  planOf,
  sha,
  until,
  type Endpoint,
  type Fixture,
  type Reply,
} from './helpers.js';

/** Calls the target in a loop until `done` settles: every call must succeed with the right answer. */
async function traffic<R>(target: Target<typeof builtin>, done: Promise<R>): Promise<{ result: R; calls: number; failures: number }> {
  let finished = false;
  void done.then(
    () => (finished = true),
    () => (finished = true),
  );
  let calls = 0;
  let failures = 0;
  for (let i = 0; !finished; i++) {
    calls += 1;
    try {
      if (target.api.digest(`m${i}`) !== sha(`m${i}`)) failures += 1;
    } catch {
      failures += 1;
    }
    if (i % 20 === 0) await new Promise((r) => setImmediate(r));
  }
  return { result: await done, calls, failures };
}

async function readOrNull(path: string): Promise<string | null> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}

interface TargetView {
  target: string;
  active: { version: string; patchId: string | null };
  previous?: { version: string; patchId: string | null };
  frozen?: string;
  canary?: { patchId: string; ratio: number };
}

describe('agent on a Unix socket (in-process host)', { timeout: 60_000 }, () => {
  let fx: Fixture;
  let agent: Agent;
  let target: Target<typeof builtin>;
  let ep: Endpoint;
  let socketPath: string;

  const status = async (): Promise<TargetView> => {
    const r = await call(ep, 'GET', '/v1/status');
    assert.equal(r.status, 200, r.text);
    const t = (r.json.targets as TargetView[]).find((x) => x.target === T);
    assert.ok(t !== undefined, `status lists ${T}: ${r.text}`);
    return t;
  };

  const apply = (plan: Record<string, unknown>): Promise<{ result: Reply; calls: number; failures: number }> =>
    traffic(target, call(ep, 'POST', '/v1/apply', { plan }));

  before(async () => {
    fx = await makeFixture();
    await fx.publish('good-1', '1.1.0');
    await fx.publish('good-zdt', '1.1.1');
    await fx.publish('good-sse', '1.2.0');
    await fx.publish('race-a', '2.0.0');
    await fx.publish('race-b', '2.0.1');
    await fx.publish('promote-me', '3.0.0');
    await fx.publish('abort-me', '3.1.0');
    await fx.publish('frozen-out', '4.0.0');
    const host = hostRuntime(fx.stateDir);
    target = host.target;
    agent = await startAgent({ stateDir: fx.stateDir, runtime: host.runtime, defaults: { repository: fx.repoDir, trustStore: fx.trustFile }, log: false });
    socketPath = join(fx.stateDir, 'agent.sock');
    ep = { socketPath };
  });

  after(async () => {
    await agent?.close();
    await fx?.close();
  });

  test('listens on <stateDir>/agent.sock, a socket of mode 0600', async () => {
    assert.equal(agent.address, `unix:${socketPath}`);
    const info = await lstat(socketPath);
    assert.ok(info.isSocket(), 'agent.sock is a socket');
    assert.equal(info.mode & 0o777, 0o600, `socket mode is ${(info.mode & 0o777).toString(8)}`);
    assert.equal((await stat(fx.stateDir)).mode & 0o077, 0, 'the state directory is closed to group and others');
  });

  test('GET /v1/status lists the declared target on its built-in version', async () => {
    const r = await call(ep, 'GET', '/v1/status');
    assert.equal(r.status, 200);
    assert.match(String(r.headers['content-type']), /^application\/json/);
    assert.equal(r.json.ok, true);
    const t = await status();
    assert.equal(t.active.version, BUILTIN_VERSION);
    assert.equal(t.active.patchId, null);
    assert.deepEqual(r.json.plans, []);
    const plans = await call(ep, 'GET', '/v1/plans');
    assert.equal(plans.status, 200);
    assert.deepEqual(plans.json, { ok: true, plans: [], total: 0 });
  });

  test('malformed, unknown and oversized requests get a clear error and change nothing', async () => {
    await agent.planner.flush();
    await agent.audit.flush();
    const snapshot = async (): Promise<unknown> => ({
      status: (await call(ep, 'GET', '/v1/status')).text,
      journal: await readOrNull(join(fx.stateDir, 'journal.json')),
      audit: await readOrNull(join(fx.stateDir, 'audit.log')),
      state: await readOrNull(join(fx.stateDir, 'state.json')),
    });
    const before = await snapshot();
    const expect = async (r: Promise<Reply>, httpStatus: number, code: string, message: RegExp): Promise<void> => {
      const reply = await r;
      assert.equal(reply.status, httpStatus, reply.text);
      assert.equal(reply.json.ok, false, reply.text);
      assert.equal(reply.json.code, code, reply.text);
      assert.match(String(reply.json.message), message);
    };
    const good = planOf('never-runs', 'good-1');

    await expect(call(ep, 'POST', '/v1/apply', '{"plan": {"id": "x",'), 400, 'PARSE', /request body/);
    await expect(call(ep, 'POST', '/v1/apply', 'not json at all'), 400, 'PARSE', /request body/);
    await expect(call(ep, 'POST', '/v1/apply', Buffer.from([0x7b, 0xff, 0xfe, 0x7d])), 400, 'PARSE', /./);
    await expect(call(ep, 'POST', '/v1/apply', '[1, 2]'), 400, 'INVALID', /JSON object/);
    await expect(call(ep, 'POST', '/v1/apply', { plan: good, force: true }), 400, 'INVALID', /unknown field "force"/);
    await expect(call(ep, 'POST', '/v1/apply', { plan: { ...good, colour: 'red' } }), 400, 'INVALID', /unknown field "colour"/);
    await expect(call(ep, 'POST', '/v1/apply', { plan: 'good-1' }), 400, 'INVALID', /apply plan must be a JSON object, got "good-1"/);
    await expect(call(ep, 'POST', '/v1/apply', {}), 400, 'INVALID', /planId/);
    await expect(call(ep, 'POST', '/v1/apply', { planId: 'no-such-plan' }), 404, 'NOT_FOUND', /no plan named/);
    await expect(call(ep, 'POST', '/v1/freeze', { target: T }), 400, 'INVALID', /reason/);
    await expect(call(ep, 'POST', '/v1/freeze', { target: T, reason: 'x', until: 'tomorrow' }), 400, 'INVALID', /unknown field "until"/);
    await expect(call(ep, 'POST', '/v1/freeze', { target: 'xps.no.such.target', reason: 'x' }), 404, 'NOT_FOUND', /no target named xps\.no\.such\.target/);
    await expect(call(ep, 'POST', '/v1/rollback', { target: '../etc/passwd' }), 400, 'INVALID', /target/);
    await expect(call(ep, 'GET', '/v1/nothing-here'), 404, 'NOT_FOUND', /no endpoint \/v1\/nothing-here/);
    await expect(call(ep, 'GET', '/'), 404, 'NOT_FOUND', /no endpoint/);
    await expect(call(ep, 'GET', '/v1/apply'), 405, 'INVALID', /GET is not allowed on \/v1\/apply \(POST\)/);
    await expect(call(ep, 'DELETE', '/v1/status'), 405, 'INVALID', /DELETE is not allowed on \/v1\/status \(GET\)/);
    await expect(call(ep, 'POST', '/metrics', {}), 405, 'INVALID', /not allowed/);
    // Query parameters are read strictly on every endpoint that takes some: a typo is no default.
    await expect(call(ep, 'GET', '/v1/events/recent?bogus=1'), 400, 'INVALID', /unknown query parameter "bogus" \(allowed: target, limit\)/);
    await expect(call(ep, 'GET', '/v1/events/recent?limit=0'), 400, 'INVALID', /limit must be an integer from 1 to 500/);
    await expect(call(ep, 'GET', '/v1/events?targets=x'), 400, 'INVALID', /unknown query parameter "targets" \(allowed: target\)/);
    await expect(call(ep, 'GET', '/v1/status?bogus=1'), 400, 'INVALID', /unknown query parameter "bogus"/);
    // Over 1 MiB: refused whether the size is declared up front or only found while reading.
    const big = JSON.stringify({ plan: good, pad: 'x'.repeat(1024 * 1024) });
    await expect(call(ep, 'POST', '/v1/apply', big), 413, 'TOO_LARGE', /1048576-byte limit/);
    await expect(call(ep, 'POST', '/v1/apply', big, { chunked: true }), 413, 'TOO_LARGE', /1048576-byte limit/);

    assert.deepEqual(await snapshot(), before, 'no refused request changed status, journal, audit log or state');
    assert.equal(target.frozen, undefined);
    assert.deepEqual(agent.planner.plans(), []);
    // The agent still serves normally afterwards.
    assert.equal((await call(ep, 'GET', '/v1/status')).status, 200);
  });

  test('POST /v1/apply activates a good patch with no failed call', async () => {
    const { result, calls, failures } = await apply(planOf('plan-good-1', 'good-1'));
    assert.equal(result.status, 200, result.text);
    assert.equal(result.json.ok, true);
    assert.equal(result.json.status, 'activated');
    assert.equal(result.json.patchId, 'good-1');
    assert.equal(result.json.version, '1.1.0');
    const steps = result.json.steps as { verdict: string; ratio: number }[];
    assert.deepEqual(
      steps.map((s) => s.verdict),
      ['Successful', 'Successful'],
    );
    assert.deepEqual(
      steps.map((s) => s.ratio),
      FAST_ZDT.steps,
    );
    assert.ok(calls > 0);
    assert.equal(failures, 0, 'no call failed or answered wrongly during the swap');
    const t = await status();
    assert.deepEqual([t.active.version, t.active.patchId], ['1.1.0', 'good-1']);
    assert.deepEqual([t.previous?.version, t.previous?.patchId], [BUILTIN_VERSION, null]);
    assert.equal(target.api.digest('abc'), sha('abc'));
    // Running the same (final) plan again changes nothing and says so.
    const again = await call(ep, 'POST', '/v1/apply', { planId: 'plan-good-1' });
    assert.equal(again.status, 200);
    assert.equal(again.json.status, 'activated');
  });

  test("POST /v1/apply takes a plan whose zdt carries the judge's options; a bad value is refused with 400 INVALID and nothing runs", async () => {
    const { maxLatencyRatio: _ratio, ...fast } = FAST_ZDT;
    const refused: [Record<string, unknown>, RegExp][] = [
      [{ ...fast, confidence: 1.5 }, /confidence must be a number in \(0, 1\)/],
      [{ ...FAST_ZDT, maxLatencyShift: 0.3 }, /maxLatencyShift or the older maxLatencyRatio, not both/],
      [{ ...fast, probationMs: 2 ** 31 }, /probationMs must be at most 2147483647 ms/],
      [{ ...fast, canaryCallTimeoutMs: 0 }, /canaryCallTimeoutMs must be > 0/],
      [{ ...fast, minCalls: -1 }, /minCalls must be an integer >= 0/],
      [{ ...fast, probationWatch: 'no' }, /probationWatch must be a boolean/],
    ];
    for (const [i, [zdt, message]] of refused.entries()) {
      const r = await call(ep, 'POST', '/v1/apply', { plan: planOf(`plan-bad-zdt-${i}`, 'good-zdt', zdt) });
      assert.equal(r.status, 400, r.text);
      assert.equal(r.json.code, 'INVALID', r.text);
      assert.match(String(r.json.message), message);
    }
    assert.deepEqual(
      agent.planner
        .plans()
        .map((p) => p.plan.id)
        .filter((id) => id.startsWith('plan-bad-zdt')),
      [],
      'no refused plan was added',
    );
    assert.equal((await status()).active.patchId, 'good-1', 'nothing was applied');

    const zdt = {
      ...fast,
      maxLatencyShift: 999,
      confidence: 0.995,
      maxErrorExcess: 0.001,
      minCalls: 20,
      warmupCalls: 0,
      canaryCallTimeoutMs: 1000,
      probationWatch: false,
    };
    const { result, failures } = await apply(planOf('plan-good-zdt', 'good-zdt', zdt));
    assert.equal(result.status, 200, result.text);
    assert.equal(result.json.status, 'activated');
    assert.equal(result.json.version, '1.1.1');
    assert.equal(failures, 0);
    // Stored (journal) as given, keys sorted.
    assert.deepEqual(agent.planner.plan('plan-good-zdt').plan.zdt, Object.fromEntries(Object.entries(zdt).sort(([a], [b]) => (a < b ? -1 : 1))));
    await agent.planner.flush();
    const journal = JSON.parse(await readFile(join(fx.stateDir, 'journal.json'), 'utf8')) as {
      plans: { plan: { id: string; zdt?: Record<string, unknown> } }[];
    };
    assert.equal(journal.plans.find((p) => p.plan.id === 'plan-good-zdt')?.plan.zdt?.confidence, 0.995);
    assert.equal((await status()).active.patchId, 'good-zdt');
  });

  test('GET /v1/events streams the events of an apply as Server-Sent Events', async () => {
    const stream = openEvents(ep);
    const filtered = openEvents(ep, '/v1/events?target=xps.some.other.target');
    try {
      assert.equal(await stream.status, 200);
      assert.equal(await stream.contentType, 'text/event-stream');
      assert.equal(await filtered.status, 200);
      // Both subscribed once the retry preamble arrived.
      await until(() => stream.messages.length > 0 && filtered.messages.length > 0, 15_000, 'the stream preamble');
      assert.equal(stream.messages[0]!.retry, '1000');

      const { result, failures } = await apply(planOf('plan-sse', 'good-sse'));
      assert.equal(result.status, 200, result.text);
      assert.equal(failures, 0);
      await stream.waitFor((es) => es.some((e) => e.type === 'Activated' && e.id === 'good-sse'), 10_000, 'Activated on the stream');

      const mine = stream.events.filter((e) => e.id === 'good-sse' || e.id === 'plan-sse');
      const types: string[] = mine.map((e) => e.type);
      const expected = ['Planned', 'Fetched', 'Verified', 'Staged', 'CanaryStarted', 'CanaryStep', 'Promoted', 'Activated'];
      let at = -1;
      for (const type of expected) {
        const next = types.indexOf(type, at + 1);
        assert.ok(next > at, `${type} follows in order in ${types.join(', ')}`);
        at = next;
      }
      // Every message: an id counting up from 1, `event:` naming the type, `data:` the event itself.
      const data = stream.messages.filter((m) => m.data !== undefined);
      data.forEach((m, i) => {
        assert.equal(m.id, String(i + 1));
        const e = JSON.parse(m.data!) as { type: string; target: string; ts: string };
        assert.equal(m.event, e.type);
        assert.equal(e.target, T);
        assert.ok(!Number.isNaN(Date.parse(e.ts)));
      });
      const step = mine.find((e) => e.type === 'CanaryStep')!;
      assert.equal(step.detail?.verdict, 'Successful');
      assert.equal(typeof step.detail?.candidateCalls, 'number');
      // A stream filtered on another target saw none of it.
      assert.deepEqual(filtered.events, []);
    } finally {
      stream.close();
      filtered.close();
    }
    const bad = await call(ep, 'GET', '/v1/events?target=not%20a%20target');
    assert.equal(bad.status, 400);
    assert.equal(bad.json.code, 'INVALID');
  });

  test('two applies of different patches to one target at once: one activates, the other is refused as busy', async () => {
    const [a, b] = await traffic(
      target,
      Promise.all([
        call(ep, 'POST', '/v1/apply', { plan: planOf('race-plan-a', 'race-a') }),
        call(ep, 'POST', '/v1/apply', { plan: planOf('race-plan-b', 'race-b') }),
      ]),
    ).then(({ result, failures }) => {
      assert.equal(failures, 0);
      return result;
    });
    const replies = [a, b];
    const winners = replies.filter((r) => r.status === 200);
    const losers = replies.filter((r) => r.status !== 200);
    assert.equal(winners.length, 1, `exactly one apply wins: ${a.text} / ${b.text}`);
    assert.equal(losers.length, 1);
    const win = winners[0]!.json;
    const lose = losers[0]!;
    assert.equal(win.status, 'activated');
    // The loser: 409 Conflict, code ABORTED, its plan left waiting, and a message naming the busy target and the plan holding it.
    assert.equal(lose.status, 409, lose.text);
    assert.equal(lose.json.ok, false);
    assert.equal(lose.json.code, 'ABORTED');
    assert.equal(lose.json.status, 'waiting');
    assert.equal(
      lose.json.message,
      `plan ${String(lose.json.planId)} is waiting, nothing applied yet: target ${T} is busy with plan ${String(win.planId)}; run it again (hotpatch apply --plan-id ${String(lose.json.planId)}) once that clears — or cancel it (hotpatch cancel --plan-id ${String(lose.json.planId)})`,
    );
    const t = await status();
    assert.equal(t.active.patchId, win.patchId, 'the runtime ends on the winner');
    assert.equal(t.active.version, win.version);
    const plans = (await call(ep, 'GET', '/v1/plans')).json.plans as { id: string; status: string }[];
    assert.equal(plans.find((p) => p.id === lose.json.planId)?.status, 'waiting');
  });

  test('POST /v1/promote finishes a running canary at once; without one it is refused', async () => {
    const none = await call(ep, 'POST', '/v1/promote', { target: T });
    assert.equal(none.status, 400);
    assert.equal(none.json.code, 'INVALID');
    assert.match(String(none.json.message), /no canary running to promote/);

    const running = apply(planOf('plan-promote', 'promote-me', LONG_ZDT));
    await until(() => target.canary !== null, 10_000, 'the canary to start');
    const during = await status();
    assert.equal(during.canary?.patchId, 'promote-me');
    assert.equal(during.canary?.ratio, 0.5);
    const r = await call(ep, 'POST', '/v1/promote', { target: T });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, { ok: true, target: T, message: `promotion of ${T} requested` });
    const { result, failures } = await running;
    assert.equal(failures, 0);
    assert.equal(result.status, 200, result.text);
    assert.equal(result.json.status, 'activated');
    assert.match(String(result.json.message), /promoted by operator/);
    assert.equal((await status()).active.version, '3.0.0');
  });

  test('POST /v1/abort stops a running canary; the running version keeps serving', async () => {
    const idle = await call(ep, 'POST', '/v1/abort', { target: T });
    assert.equal(idle.status, 400);
    assert.match(String(idle.json.message), /no apply running to abort/);

    const running = apply(planOf('plan-abort', 'abort-me', LONG_ZDT));
    await until(() => target.canary !== null, 10_000, 'the canary to start');
    const r = await call(ep, 'POST', '/v1/abort', { target: T, reason: 'customer reports errors' });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.ok, true);
    const { result, failures } = await running;
    assert.equal(failures, 0);
    assert.equal(result.status, 409, result.text);
    assert.equal(result.json.ok, false);
    assert.equal(result.json.code, 'ABORTED');
    assert.equal(result.json.status, 'failed');
    assert.match(String(result.json.message), /customer reports errors/);
    const t = await status();
    assert.equal(t.active.version, '3.0.0');
    assert.equal(t.canary, undefined);
  });

  test('POST /v1/rollback flips back to the previous version', async () => {
    const beforeRollback = await status();
    assert.ok(beforeRollback.previous !== undefined);
    const r = await call(ep, 'POST', '/v1/rollback', { target: T, reason: 'operator test' });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.version, beforeRollback.previous.version);
    const t = await status();
    assert.deepEqual(t.active, { ...beforeRollback.previous, inflight: 0 });
    assert.equal(target.api.digest('x'), sha('x'));
    const state = JSON.parse(await readFile(join(fx.stateDir, 'state.json'), 'utf8')) as { targets: Record<string, { failed: string[] }> };
    assert.ok(state.targets[T]!.failed.includes('promote-me'), 'the rolled-back patch is recorded as failed');
    // Nothing warm left to go back to.
    const again = await call(ep, 'POST', '/v1/rollback', { target: T });
    assert.equal(again.status, 404);
    assert.equal(again.json.code, 'NOT_FOUND');
    assert.match(String(again.json.message), /no previous version/);
  });

  test('POST /v1/freeze keeps applies out until /v1/unfreeze, and the plan it left waiting resumes on its own then', async () => {
    const activeBefore = (await status()).active;
    const f = await call(ep, 'POST', '/v1/freeze', { target: T, reason: 'quarterly change freeze' });
    assert.equal(f.status, 200, f.text);
    assert.equal(f.json.frozen, 'quarterly change freeze');
    assert.equal((await status()).frozen, 'quarterly change freeze');

    const refused = await call(ep, 'POST', '/v1/apply', { plan: planOf('plan-frozen', 'frozen-out') });
    assert.equal(refused.status, 422, refused.text);
    assert.equal(refused.json.ok, false);
    assert.equal(refused.json.status, 'waiting');
    assert.match(
      String(refused.json.message),
      new RegExp(
        `^plan plan-frozen is waiting, nothing applied yet: target ${T.replace(/\./g, '\\.')} is frozen: quarterly change freeze; it runs by itself when the target is unfrozen — or cancel it \\(hotpatch cancel --plan-id plan-frozen\\)$`,
      ),
    );
    // A frozen target refuses by policy (README): the plan waits for the unfreeze.
    assert.equal(refused.json.code, 'POLICY_DENIED', refused.text);
    assert.deepEqual((await status()).active, activeBefore, 'nothing was applied while frozen');

    const activated = new Promise<void>((resolve) => {
      const off = agent.bus.subscribe((e) => {
        if (e.type === 'Activated' && e.id === 'frozen-out') {
          off();
          resolve();
        }
      });
    });
    const u = await call(ep, 'POST', '/v1/unfreeze', { target: T });
    assert.equal(u.status, 200, u.text);
    assert.equal((await status()).frozen, undefined);
    // No second apply: the unfreeze resumed the waiting plan (its canary needs live calls).
    const { failures } = await traffic(target, activated);
    assert.equal(failures, 0);
    const plans = (await call(ep, 'GET', '/v1/plans')).json.plans as { id: string; status: string }[];
    assert.equal(plans.find((p) => p.id === 'plan-frozen')?.status, 'activated');
    assert.equal((await status()).active.version, '4.0.0');
  });

  test('GET /metrics exposes hotpatch_events_total, counted from the bus', async () => {
    const r = await call(ep, 'GET', '/metrics');
    assert.equal(r.status, 200);
    assert.match(String(r.headers['content-type']), /^text\/plain/);
    assert.match(r.text, /^# TYPE hotpatch_events_total counter$/m);
    const m = new RegExp(`^hotpatch_events_total\\{type="Activated",target="${T.replace(/\./g, '\\.')}"\\} (\\d+)$`, 'm').exec(r.text);
    assert.ok(m !== null, r.text);
    // good-1, good-zdt, good-sse, the race winner, promote-me, frozen-out.
    assert.equal(Number(m[1]), 6);
    assert.match(r.text, new RegExp(`^hotpatch_active_version_info\\{target="${T.replace(/\./g, '\\.')}",version="4\\.0\\.0"\\} 1$`, 'm'));
  });

  test('the audit chain of everything above verifies', async () => {
    await agent.audit.flush();
    const v = await verifyAuditLog(fx.stateDir);
    assert.ok(v.ok, JSON.stringify(v.firstBad));
    assert.ok(v.lines > 20);
  });

  test('a second agent on a socket a live agent holds is refused; the first keeps serving', async () => {
    const other = await makeFixture();
    try {
      const host = hostRuntime(other.stateDir);
      await assert.rejects(
        startAgent({ stateDir: other.stateDir, runtime: host.runtime, socketPath, log: false }),
        (e: Error & { code?: string }) => e.code === 'INVALID' && /another agent is listening on/.test(e.message),
      );
      host.runtime.close();
      assert.equal((await call(ep, 'GET', '/v1/status')).status, 200);
      assert.ok((await lstat(socketPath)).isSocket());
    } finally {
      await other.close();
    }
  });

  test('a stale socket file left by a dead agent is replaced; a non-socket file is not', async () => {
    const other = await makeFixture();
    try {
      const path = join(other.dir, 'stale.sock');
      // A process that listens on the path and is then SIGKILLed leaves its socket file behind.
      const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => console.log('up'))`], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      await new Promise<void>((resolveUp) => child.stdout!.once('data', () => resolveUp()));
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
      assert.ok((await lstat(path)).isSocket(), 'the dead process left its socket file');

      const host = hostRuntime(other.stateDir);
      const second = await startAgent({ stateDir: other.stateDir, runtime: host.runtime, socketPath: path, log: false });
      try {
        assert.equal(second.address, `unix:${path}`);
        const r = await call({ socketPath: path }, 'GET', '/v1/status');
        assert.equal(r.status, 200);
        assert.equal((await lstat(path)).mode & 0o777, 0o600);
      } finally {
        await second.close();
      }
      await assert.rejects(lstat(path), { code: 'ENOENT' }, 'close() removes the socket file');

      const plain = join(other.dir, 'not-a-socket');
      await writeFile(plain, 'precious');
      const host2 = hostRuntime(join(other.dir, 'state2'));
      await assert.rejects(startAgent({ stateDir: join(other.dir, 'state2'), runtime: host2.runtime, socketPath: plain, log: false }), {
        code: 'INVALID',
      });
      host2.runtime.close();
      assert.equal(await readFile(plain, 'utf8'), 'precious');
    } finally {
      await other.close();
    }
  });

  test("a second host started on the live agent's state directory is refused without touching its state or audit chain", async () => {
    await agent.audit.flush();
    await agent.planner.flush();
    const files = ['audit.log', 'state.json', 'journal.json'];
    const before = await Promise.all(files.map((f) => readOrNull(join(fx.stateDir, f))));
    const host = hostRuntime(fx.stateDir);
    // Default socket: <stateDir>/agent.sock, the one the first agent holds.
    await assert.rejects(
      startAgent({ stateDir: fx.stateDir, runtime: host.runtime, defaults: { repository: fx.repoDir, trustStore: fx.trustFile }, log: false }),
      (e: Error & { code?: string }) => e.code === 'INVALID' && /another agent/.test(e.message),
    );
    host.runtime.close();
    const afterRefusal = await Promise.all(files.map((f) => readOrNull(join(fx.stateDir, f))));
    files.forEach((f, i) => assert.equal(afterRefusal[i], before[i], `${f} unchanged by the refused start`));
    // The first agent goes on recording, and its chain still verifies.
    const f = await call(ep, 'POST', '/v1/rollback', { target: T, reason: 'after the refused second start' });
    assert.equal(f.status, 200, f.text);
    await agent.audit.flush();
    const v = await verifyAuditLog(fx.stateDir);
    assert.ok(v.ok, `audit chain broken: ${JSON.stringify(v.firstBad)}`);
  });
});

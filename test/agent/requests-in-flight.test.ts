/*
 * The agent handles at most maxRequestsInFlight requests at once (event streams apart): one
 * more is answered 503 TOO_LARGE with retry-after at once, before its body is read, and
 * changes nothing. Requests are held in flight by applies waiting on an approver the test
 * controls, so every step waits on an event, never on a clock.
 */
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startAgent, type Agent } from '../../src/agent/index.js';
import { HotPatchError, Registries, type ApprovalRequest } from '../../src/core/index.js';
import type { Target } from '../../src/zero-downtime/index.js';
import {
  BUILTIN_VERSION,
  T,
  builtin,
  call,
  hostRuntime,
  kat,
  makeFixture,
  openEvents,
  planOf,
  publish,
  goodSource,
  type Endpoint,
  type Fixture,
  type Reply,
} from './helpers.js';

const T2 = 'xps.crypto.hash.sha256-second';

/** An approver that holds every approval until the test answers it. */
class HeldApprover {
  readonly asked: { request: ApprovalRequest; deny(): void }[] = [];
  #waiters: { n: number; resolve(): void }[] = [];

  approve(request: ApprovalRequest): Promise<void> {
    return new Promise<void>((_resolve, reject) => {
      this.asked.push({ request, deny: () => reject(new HotPatchError('APPROVAL_MISSING', 'denied by the test')) });
      for (const w of this.#waiters.filter((x) => this.asked.length >= x.n)) w.resolve();
    });
  }

  /** Resolves once n approvals are waiting: the applies asking them are in flight. */
  waitForAsked(n: number): Promise<void> {
    if (this.asked.length >= n) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ n, resolve }));
  }

  /** Denies the approval asked for `target`, or every one. */
  deny(target?: string): void {
    for (const a of this.asked.filter((x) => target === undefined || x.request.target === target)) {
      this.asked.splice(this.asked.indexOf(a), 1);
      a.deny();
    }
  }
}

function planWithApprover(id: string, patch: string, target: string): Record<string, unknown> {
  return { ...planOf(id, patch), target, approver: 'held' };
}

describe('requests in flight are bounded by maxRequestsInFlight', { timeout: 60_000 }, () => {
  let fx: Fixture;
  let agent: Agent;
  let ep: Endpoint;
  let socketPath: string;
  const approver = new HeldApprover();
  let target: Target<typeof builtin>;

  before(async () => {
    fx = await makeFixture('hotpatch-agent-inflight-');
    await fx.publish('inflight-a', '1.1.0');
    await publish(fx.repoDir, 'inflight-b', '1.1.0', goodSource('inflight-b'), T2);
    const host = hostRuntime(fx.stateDir);
    host.runtime.target(T2, { version: BUILTIN_VERSION, impl: builtin, deterministic: true, selfTest: kat });
    target = host.target;
    const registries = new Registries();
    registries.approvers.register('held', approver);
    agent = await startAgent({
      stateDir: fx.stateDir,
      runtime: host.runtime,
      registries,
      defaults: { repository: fx.repoDir, trustStore: fx.trustFile },
      log: false,
      maxRequestsInFlight: 2,
      maxEventStreams: 2,
    });
    socketPath = agent.address.slice('unix:'.length);
    ep = { socketPath };
  });

  after(async () => {
    approver.deny();
    await agent?.close();
    await fx?.close();
  });

  test('past maxRequestsInFlight a request gets 503 TOO_LARGE with retry-after, before its body is read, and changes nothing', async () => {
    // Two applies, each held at its approval: both slots taken.
    const applies: Promise<Reply>[] = [
      call(ep, 'POST', '/v1/apply', { plan: planWithApprover('inflight-plan-a', 'inflight-a', T) }),
      call(ep, 'POST', '/v1/apply', { plan: planWithApprover('inflight-plan-b', 'inflight-b', T2) }),
    ];
    await approver.waitForAsked(2);
    try {
      const status = await call(ep, 'GET', '/v1/status');
      assert.equal(status.status, 503, status.text);
      assert.equal(status.json.code, 'TOO_LARGE');
      assert.match(String(status.json.message), /too many requests in flight \(2\)/);
      assert.equal(status.headers['retry-after'], '1');

      const freeze = await call(ep, 'POST', '/v1/freeze', { target: T, reason: 'while full' });
      assert.equal(freeze.status, 503, freeze.text);
      assert.equal(target.frozen, undefined);

      // A body announced but never sent: the refusal does not wait for it.
      const slow = await new Promise<number>((resolve, reject) => {
        const req = request(
          { socketPath, method: 'POST', path: '/v1/freeze', headers: { 'content-type': 'application/json', 'content-length': '100000' } },
          (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
            req.destroy();
          },
        );
        req.on('error', (e) => (req.destroyed ? undefined : reject(e)));
        req.write('{"target":');
      });
      assert.equal(slow, 503);

      // Event streams are counted apart: one still opens.
      const stream = openEvents(ep);
      try {
        assert.equal(await stream.status, 200);
      } finally {
        stream.close();
      }
      assert.deepEqual(
        agent.planner.plans().map((p) => p.plan.id),
        ['inflight-plan-a', 'inflight-plan-b'],
        'the refused requests added nothing',
      );
    } finally {
      approver.deny();
      // Settled whatever happened above, so no reply outlives the test.
      await Promise.allSettled(applies);
    }
    for (const r of await Promise.all(applies)) assert.equal(r.json.code, 'APPROVAL_MISSING', r.text);
    // The slots are free again once the held requests have ended (released before their reply is sent on).
    const again = await call(ep, 'GET', '/v1/status');
    assert.equal(again.status, 200, again.text);
    assert.equal(target.frozen, undefined);
  });

  test('a refused request holds no slot, and an ended one frees its slot: with one of two slots held, request after request is served', async () => {
    const a = call(ep, 'POST', '/v1/apply', { planId: 'inflight-plan-a' });
    const b = call(ep, 'POST', '/v1/apply', { planId: 'inflight-plan-b' });
    await approver.waitForAsked(2);
    try {
      for (let i = 0; i < 10; i++) assert.equal((await call(ep, 'GET', '/v1/plans')).status, 503, `refused request ${i}`);
      approver.deny(T);
      assert.equal((await a).json.code, 'APPROVAL_MISSING');
      // Had the ten refusals or the ended apply kept a slot, these would be refused too.
      for (let i = 0; i < 20; i++) {
        const r = await call(ep, 'GET', '/v1/plans');
        assert.equal(r.status, 200, `request ${i}: ${r.text}`);
      }
    } finally {
      approver.deny();
      await Promise.allSettled([a, b]);
    }
    assert.equal((await b).json.code, 'APPROVAL_MISSING');
  });
});

describe('agent options that bound requests and connections are checked', { timeout: 60_000 }, () => {
  let fx: Fixture;

  before(async () => {
    fx = await makeFixture('hotpatch-agent-inflight-opts-');
  });

  after(async () => {
    await fx?.close();
  });

  test('startAgent refuses a maxRequestsInFlight that is not a positive integer, before claiming anything', async () => {
    for (const value of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, '8']) {
      const dir = join(fx.dir, `state-${String(value)}`);
      const host = hostRuntime(dir);
      const started = await startAgent({ stateDir: dir, runtime: host.runtime, log: false, maxRequestsInFlight: value as number }).catch((e: unknown) => e);
      host.runtime.close();
      if (!(started instanceof Error)) {
        await (started as Agent).close();
        assert.fail(`startAgent took maxRequestsInFlight ${String(value)}: it must refuse it with INVALID`);
      }
      assert.equal((started as Error & { code?: string }).code, 'INVALID', started.message);
      assert.match(started.message, /maxRequestsInFlight must be a positive integer/);
      await assert.rejects(connectTo(join(dir, 'agent.sock')), /ENOENT/);
    }
  });

  test('past twice the requests and streams it may serve, a new connection is closed at once; open ones are still served', async () => {
    const dir = join(fx.dir, 'state-connections');
    const host = hostRuntime(dir);
    const agent = await startAgent({ stateDir: dir, runtime: host.runtime, log: false, maxRequestsInFlight: 1, maxEventStreams: 1 });
    const path = agent.address.slice('unix:'.length);
    const idle: Socket[] = [];
    try {
      // 2 × (1 + 1) = 4 connections; each sends nothing yet.
      for (let i = 0; i < 4; i++) idle.push(await connectTo(path));
      const extra = await connectTo(path);
      const data: Buffer[] = [];
      extra.on('data', (d: Buffer) => data.push(d));
      // The server accepts in order: the fifth is closed without a byte.
      await new Promise<void>((resolve) => extra.once('close', () => resolve()));
      assert.equal(Buffer.concat(data).length, 0);
      // One of the four open connections is served as usual.
      idle[0]!.write('GET /v1/status HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n');
      const answer = await new Promise<string>((resolve) => {
        let text = '';
        idle[0]!.setEncoding('utf8').on('data', (d: string) => (text += d));
        idle[0]!.once('end', () => resolve(text));
      });
      assert.match(answer, /^HTTP\/1\.1 200 /);
    } finally {
      for (const s of idle) s.destroy();
      await agent.close();
    }
  });
});

function connectTo(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(path);
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

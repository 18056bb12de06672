import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { HotPatchError } from '../../src/core/index.js';
import { openStore, type KvStore, type WatchEvent } from '../../src/distributed/index.js';
import { EtcdStore } from '../../src/distributed/etcd-store.js';
import { startEtcdCluster, type EtcdCluster } from './etcd-cluster.js';
import { retry, settlesWithin, until, withDeadline } from '../support/wait.js';

// etcd-specific behaviour on a real 3-member cluster: a minority failure is invisible, a
// majority failure fails closed (IO, within a bounded time, leadership given up) and the
// store works again once quorum returns.

const CALL_TIMEOUT_MS = 1500;
/**
 * A hang guard for calls that must fail (or succeed) on their own deadline: generous, so a
 * loaded machine cannot fail a test by it; the store's own deadline is what ends each call.
 */
const HANG_GUARD_MS = 10_000;

/** Calls `attempt` until it resolves; fails after `ms` quoting the last error. */
const eventually = <T>(what: string, ms: number, attempt: () => Promise<T>): Promise<T> => retry(what, attempt, ms, 100);

const isIoWithoutQuorum = (e: unknown): boolean => e instanceof HotPatchError && e.code === 'IO' && /etcd unreachable or without quorum/.test(e.message);

/** A failed write whose outcome is unknown says so: it may still commit when quorum returns. */
const isIoUnknownOutcome = (e: unknown): boolean =>
  isIoWithoutQuorum(e) && /may or may not have been applied/.test((e as HotPatchError).message) && (e as HotPatchError).detail?.outcome === 'unknown';

/** A loopback port nothing listens on (connections to it are refused). */
const closedPort = (): Promise<number> =>
  new Promise<number>((resolve) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const p = (srv.address() as AddressInfo).port;
      srv.close(() => resolve(p));
    });
  });

describe('EtcdStore on a failing 3-member cluster', () => {
  let cluster: EtcdCluster;
  const stores: KvStore[] = [];
  const store = (callTimeoutMs = CALL_TIMEOUT_MS): EtcdStore => {
    const s = new EtcdStore({ endpoints: cluster.endpoints, callTimeoutMs, onWatchError: () => undefined });
    stores.push(s);
    return s;
  };

  before(async () => {
    cluster = await startEtcdCluster({ members: 3 });
  });
  after(async () => {
    await Promise.all(stores.map((s) => s.close()));
    await cluster?.stop();
  });

  test('openStore("etcd://…") reaches the cluster', { timeout: 15_000 }, async () => {
    const spec = `etcd://${cluster.endpoints.map((u) => u.replace('http://', '')).join(',')}`;
    const s = await openStore(spec);
    stores.push(s);
    assert.equal(s.kind, 'etcd');
    await s.put('/open/k', 'v');
    assert.equal(await s.get('/open/k'), 'v');
  });

  test('one member killed: reads, writes and watches still work', { timeout: 30_000 }, async () => {
    const s = store();
    const events: WatchEvent[] = [];
    const stop = await s.watch('/minority/', (e) => events.push(e));
    await s.put('/minority/before', '1');
    const leader = await cluster.leader();
    const follower = cluster.members.find((m) => m !== leader)!;
    await follower.kill();
    try {
      // Enough calls that the randomly chosen member is the dead one several times.
      for (let i = 0; i < 10; i += 1) {
        await s.put(`/minority/k${i}`, String(i));
        assert.equal(await s.get(`/minority/k${i}`), String(i));
        assert.equal(await s.create(`/minority/c${i}`, 'x'), true);
        assert.equal(await s.compareAndSwap(`/minority/c${i}`, 'x', 'y'), true);
      }
      assert.equal((await s.list('/minority/')).length, 21);
      const lease = await s.grantLease(1000);
      await s.put('/minority/leased', 'x', { lease });
      await lease.revoke();
      const expected = 1 + 10 * 3 + 2;
      await until(() => events.length >= expected, 15_000, `${expected} watch events`, 50).catch(() => undefined);
      assert.equal(events.length, expected, 'the watch went on (reconnecting if it was on the dead member)');
    } finally {
      await stop();
      await follower.start();
    }
  });

  test('the Raft leader killed: reads and writes go on once a new leader is elected, within the call deadline', { timeout: 30_000 }, async () => {
    const s = store(3000);
    await s.put('/failover/k', 'before');
    const leader = await cluster.leader();
    assert.ok(leader !== undefined, 'the cluster has a leader');
    await leader.kill();
    try {
      // Idempotent calls sent right away are retried on the survivors while a leader is elected:
      // they succeed, so within their own 3 s deadline (past it they would fail with IO).
      await withDeadline(s.put('/failover/k', 'during'), HANG_GUARD_MS, 'the put during the failover to settle');
      assert.equal(await s.get('/failover/k'), 'during');
      const newLeader = await cluster.leader();
      assert.ok(newLeader !== undefined && newLeader !== leader, 'a new leader');
      assert.equal(await s.create('/failover/new', 'x'), true);
      assert.equal(await s.compareAndSwap('/failover/new', 'x', 'y'), true);
      assert.deepEqual(
        (await s.list('/failover/')).map((kv) => kv.value),
        ['during', 'y'],
      );
    } finally {
      await leader.start();
    }
  });

  test('two members killed: every operation fails with IO in bounded time, leadership ends; it recovers when they return', { timeout: 45_000 }, async () => {
    const s = store();
    await s.put('/majority/kept', 'before the outage');
    await s.put('/majority/target', 'before the outage');
    const lease = await s.grantLease(1000);
    const leadership = await s.campaign('majority', 'leader-1', lease);
    const events: WatchEvent[] = [];
    const stop = await s.watch('/majority/', (e) => events.push(e));

    await Promise.all([cluster.members[1]!.kill(), cluster.members[2]!.kill()]);
    try {
      const reads: Array<[string, () => Promise<unknown>]> = [
        ['get', () => s.get('/majority/kept')],
        ['list', () => s.list('/majority/')],
        ['leader', () => s.leader('majority')],
      ];
      const writes: Array<[string, () => Promise<unknown>]> = [
        ['put', () => s.put('/majority/x', '1')],
        ['create', () => s.create('/majority/y', '1')],
        ['compareAndSwap', () => s.compareAndSwap('/majority/target', 'before the outage', 'changed')],
        ['delete', () => s.delete('/majority/target')],
        ['grantLease', () => s.grantLease(1000)],
      ];
      // All at once: every one must fail closed with IO on its own deadline; none may hang.
      const tagged = [...reads.map((op) => [...op, isIoWithoutQuorum] as const), ...writes.map((op) => [...op, isIoUnknownOutcome] as const)];
      await Promise.all(
        tagged.map(async ([name, run, check]) => {
          await assert.rejects(withDeadline(run(), HANG_GUARD_MS, `${name} to fail`), check, `${name} must fail closed with IO`);
        }),
      );
      // No renewal possible: the leader must assume its lease expired and step down.
      assert.equal(await settlesWithin(leadership.lost, HANG_GUARD_MS), true, 'leadership lost without quorum');
      assert.equal(await settlesWithin(lease.lost, HANG_GUARD_MS), true);
    } finally {
      await Promise.all([cluster.members[1]!.start(), cluster.members[2]!.start()]);
    }

    // Quorum is back: the same store works again (circuit breakers may hold it off a few seconds).
    await eventually('a write after recovery', 15_000, () => s.put('/majority/after', 'recovered'));
    assert.equal(await s.get('/majority/kept'), 'before the outage', 'data from before the outage is intact');
    assert.equal(await s.get('/majority/after'), 'recovered');
    // The writes that failed may have been applied or not: either state is consistent.
    assert.ok(['before the outage', 'changed', undefined].includes(await s.get('/majority/target')));
    const fresh = store();
    assert.equal(await fresh.get('/majority/after'), 'recovered');
    await eventually('the watch sees the write after recovery', 10_000, async () => {
      assert.ok(events.some((e) => e.type === 'put' && e.key === '/majority/after'));
    });
    await stop();
    // The old leader's key went with its lease: the election is free again.
    const l2 = await fresh.grantLease(2000);
    const again = await eventually('a new leader', 10_000, () => fresh.campaign('majority', 'leader-2', l2));
    assert.equal(await fresh.leader('majority'), 'leader-2');
    await again.resign();
    await l2.revoke();
  });

  test('nothing listening at the endpoint: IO within the deadline', { timeout: 15_000 }, async () => {
    const port = await closedPort();
    const s = new EtcdStore({ endpoints: [`http://127.0.0.1:${port}`], callTimeoutMs: 1000 });
    stores.push(s);
    // Each fails with IO on its own deadline; the guard only catches a call that hangs.
    const failing = (p: Promise<unknown>, what: string) => assert.rejects(withDeadline(p, HANG_GUARD_MS, what), isIoWithoutQuorum);
    await Promise.all([
      failing(s.get('/x'), 'get'),
      failing(s.put('/x', 'v'), 'put'),
      failing(s.create('/x', 'v'), 'create'),
      failing(s.grantLease(1000), 'grantLease'),
      failing(
        s.watch('/x', () => undefined),
        'watch',
      ),
    ]);
    assert.ok(s.requestCount >= 0);
  });

  test('a member that refused a connection is skipped for memberBackoffMs: the calls after it go to the others', { timeout: 30_000 }, async () => {
    const s = new EtcdStore({
      endpoints: [`http://127.0.0.1:${await closedPort()}`, cluster.endpoints[0]!],
      memberBackoffMs: 600_000,
      onWatchError: () => undefined,
    });
    stores.push(s);
    await s.put('/circuit/k', 'v');
    const before = s.requestCount;
    for (let i = 0; i < 20; i += 1) assert.equal(await s.get('/circuit/k'), 'v');
    // One request per get to the live member, and at most one to the dead one: its refusal opens
    // its circuit for the rest of the test (without the circuit, about half the gets try it first).
    assert.ok(s.requestCount - before <= 21, `${s.requestCount - before} requests for 20 gets`);
  });

  test('a member that accepts connections but never answers: calls and watches fail with IO on the store deadline', { timeout: 15_000 }, async () => {
    const sockets = new Set<Socket>();
    const silent = createServer((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    });
    const port = await new Promise<number>((resolve) => silent.listen(0, '127.0.0.1', () => resolve((silent.address() as AddressInfo).port)));
    try {
      const s = new EtcdStore({ endpoints: [`http://127.0.0.1:${port}`], callTimeoutMs: 1000 });
      stores.push(s);
      // A get is bounded by its gRPC deadlines; a watch stream has none, so the operation's
      // timeout is what ends its wait for etcd to confirm it.
      await Promise.all([
        assert.rejects(withDeadline(s.get('/silent'), HANG_GUARD_MS, 'get'), isIoWithoutQuorum),
        assert.rejects(
          withDeadline(
            s.watch('/silent/', () => undefined),
            HANG_GUARD_MS,
            'watch',
          ),
          isIoWithoutQuorum,
        ),
      ]);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });

  test('requestCount counts calls, keep-alives included', { timeout: 15_000 }, async () => {
    const s = store();
    const before0 = s.requestCount;
    await s.put('/count/a', '1');
    await s.get('/count/a');
    assert.equal(s.requestCount - before0, 2, 'one request per unary call');
    const lease = await s.grantLease(1000);
    const afterGrant = s.requestCount;
    // Keep-alives go every TTL/3: wait for two of them to be counted.
    await until(() => s.requestCount - afterGrant >= 2, HANG_GUARD_MS, 'two keep-alives to be counted', 50);
    await lease.revoke();
  });
});

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { HotPatchError } from '../../src/core/index.js';
import { EmbeddedStore, type KvStore, type WatchEvent } from '../../src/distributed/index.js';
import { EtcdStore } from '../../src/distributed/etcd-store.js';
import { startEtcdCluster, type EtcdCluster } from './etcd-cluster.js';
import { settlesWithin, until, withDeadline } from '../support/wait.js';

// One suite, run against both backends: whatever a consumer (approval, fleet) relies on must
// hold for the embedded file store and for a real 3-member etcd cluster alike.

const TTL_MS = 1000; // etcd's smallest lease (whole seconds)
const TEST_TIMEOUT = 20_000;

interface Backend {
  /** A new store on the shared backend (another client / another "process"). */
  open(): Promise<KvStore>;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `check` until it holds; the deadline is a generous guard, not a bound under test. */
const eventually = (what: string, check: () => Promise<boolean> | boolean): Promise<void> => until(check, 15_000, what, 25);

/** A hang guard for a promise that must settle: generous, never the bound a test checks. */
const SETTLES_MS = 15_000;

function conformance(name: string, setup: () => Promise<{ backend: Backend; teardown: () => Promise<void> }>): void {
  describe(`KvStore conformance: ${name}`, () => {
    let backend: Backend;
    let teardown: (() => Promise<void>) | undefined;
    const opened: KvStore[] = [];
    /** A fresh key prefix per test, so tests never see each other's keys. */
    const ns = (): string => `/t-${randomBytes(4).toString('hex')}/`;
    const open = async (): Promise<KvStore> => {
      const store = await backend.open();
      opened.push(store);
      return store;
    };

    before(async () => {
      ({ backend, teardown } = await setup());
    });
    after(async () => {
      await Promise.all(opened.map((s) => s.close()));
      await teardown?.();
    });

    test('get, put, overwrite and delete', { timeout: TEST_TIMEOUT }, async () => {
      const s = await open();
      const p = ns();
      assert.equal(await s.get(`${p}k`), undefined);
      await s.put(`${p}k`, 'v1');
      assert.equal(await s.get(`${p}k`), 'v1');
      await s.put(`${p}k`, '{"json":true}');
      assert.equal(await s.get(`${p}k`), '{"json":true}');
      await s.delete(`${p}k`);
      assert.equal(await s.get(`${p}k`), undefined);
      await s.delete(`${p}k`); // deleting an absent key is not an error
      assert.ok(s.requestCount >= 6, `requestCount ${s.requestCount} counts the calls`);
    });

    test('list returns the keys under a prefix, sorted by key, with increasing revisions', { timeout: TEST_TIMEOUT }, async () => {
      const s = await open();
      const p = ns();
      for (const k of ['b', 'a/x', 'ab', 'a', 'c']) await s.put(`${p}${k}`, `v-${k}`);
      await s.put(`${p.slice(0, -1)}-sibling`, 'outside the prefix');
      const all = await s.list(p);
      assert.deepEqual(
        all.map((kv) => [kv.key, kv.value]),
        ['a', 'a/x', 'ab', 'b', 'c'].map((k) => [`${p}${k}`, `v-${k}`]),
      );
      const rev = (k: string): bigint => BigInt(all.find((kv) => kv.key === `${p}${k}`)!.modRevision);
      assert.ok(rev('b') < rev('a/x') && rev('a/x') < rev('ab') && rev('ab') < rev('a') && rev('a') < rev('c'));
      assert.deepEqual(
        (await s.list(`${p}a/`)).map((kv) => kv.key),
        [`${p}a/x`],
      );
      assert.deepEqual(await s.list(`${p}zzz`), []);
    });

    test('create is create-if-absent: of 20 concurrent creates exactly one wins', { timeout: TEST_TIMEOUT }, async () => {
      const [s1, s2] = [await open(), await open()];
      const key = `${ns()}winner`;
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? s1 : s2).create(key, `c${i}`)));
      const winners = results.flatMap((won, i) => (won ? [i] : []));
      assert.equal(winners.length, 1, `winners: ${winners.join(',')}`);
      assert.equal(await s1.get(key), `c${winners[0]!}`);
      assert.equal(await s2.create(key, 'late'), false);
      assert.equal(await s2.get(key), `c${winners[0]!}`);
    });

    test('compareAndSwap writes only over the expected value (undefined = absent)', { timeout: TEST_TIMEOUT }, async () => {
      const s = await open();
      const key = `${ns()}cas`;
      assert.equal(await s.compareAndSwap(key, 'anything', 'x'), false, 'no key: an expected value never matches');
      assert.equal(await s.get(key), undefined);
      assert.equal(await s.compareAndSwap(key, undefined, 'v1'), true);
      assert.equal(await s.compareAndSwap(key, undefined, 'v2'), false, 'present: "absent" does not match');
      assert.equal(await s.compareAndSwap(key, 'stale', 'v2'), false);
      assert.equal(await s.get(key), 'v1');
      assert.equal(await s.compareAndSwap(key, 'v1', 'v2'), true);
      assert.equal(await s.get(key), 'v2');
      // Two writers racing from the same expected value: one wins.
      const [a, b] = await Promise.all([s.compareAndSwap(key, 'v2', 'A'), (await open()).compareAndSwap(key, 'v2', 'B')]);
      assert.equal(Number(a) + Number(b), 1);
      assert.equal(await s.get(key), a ? 'A' : 'B');
    });

    test('watch reports puts and deletes under its prefix, in order, until stopped', { timeout: TEST_TIMEOUT }, async () => {
      const [watcherStore, writer] = [await open(), await open()];
      const p = ns();
      const events: WatchEvent[] = [];
      const stop = await watcherStore.watch(p, (e) => events.push(e));
      await writer.put(`${p}a`, '1');
      await writer.put(`${p.slice(0, -1)}-other`, 'not watched');
      await writer.put(`${p}a`, '2');
      await writer.put(`${p}b`, '3');
      await writer.delete(`${p}a`);
      const expected: WatchEvent[] = [
        { type: 'put', key: `${p}a`, value: '1' },
        { type: 'put', key: `${p}a`, value: '2' },
        { type: 'put', key: `${p}b`, value: '3' },
        { type: 'delete', key: `${p}a` },
      ];
      await eventually('all four events', () => events.length >= expected.length);
      assert.deepEqual(events, expected);
      await stop();
      // A second watcher on the same store is the barrier: it sees the write after the stop, and
      // then one more write (a full poll or delivery later), so the stopped watcher has had every
      // chance to deliver the first one.
      const barrier: string[] = [];
      const stopBarrier = await watcherStore.watch(p, (e) => barrier.push(e.key));
      await writer.put(`${p}c`, 'after stop');
      await eventually('a second watcher to see the write after the stop', () => barrier.includes(`${p}c`));
      await writer.put(`${p}d`, 'after the barrier saw c');
      await eventually('the second watcher to see one more write', () => barrier.includes(`${p}d`));
      await stopBarrier();
      assert.equal(events.length, expected.length, 'no event after stop');
    });

    test('a released lease stops renewing: its keys vanish after the TTL and lost resolves', { timeout: TEST_TIMEOUT }, async () => {
      const [owner, observer] = [await open(), await open()];
      const p = ns();
      const lease = await owner.grantLease(TTL_MS);
      assert.match(lease.id, /^[1-9][0-9]*$/);
      assert.equal(lease.ttlMs, TTL_MS);
      await owner.put(`${p}leased`, 'alive', { lease });
      assert.equal(await owner.create(`${p}leased-create`, 'alive', { lease }), true);
      await owner.put(`${p}plain`, 'stays');
      // Renewed: still there after more than one TTL.
      await sleep(TTL_MS + 500);
      assert.equal(await observer.get(`${p}leased`), 'alive');
      lease.release();
      assert.equal(await observer.get(`${p}leased`), 'alive', 'released, not revoked: the key lives until the TTL');
      await eventually('leased keys gone', async () => (await observer.list(p)).length === 1);
      assert.deepEqual(
        (await observer.list(p)).map((kv) => kv.key),
        [`${p}plain`],
      );
      assert.equal(await settlesWithin(lease.lost, SETTLES_MS), true, 'lost resolves once the lease has run out');
    });

    test('revoke deletes the lease keys at once; the lease is then gone', { timeout: TEST_TIMEOUT }, async () => {
      const [owner, observer] = [await open(), await open()];
      const p = ns();
      const lease = await owner.grantLease(5000);
      await owner.put(`${p}a`, '1', { lease });
      await owner.put(`${p}b`, '2', { lease });
      const deletes: string[] = [];
      const stop = await observer.watch(p, (e) => {
        if (e.type === 'delete') deletes.push(e.key);
      });
      await lease.revoke();
      assert.deepEqual(await observer.list(p), []);
      assert.equal(await settlesWithin(lease.lost, SETTLES_MS), true, 'lost resolves on revoke');
      await eventually('delete events', () => deletes.length === 2);
      assert.deepEqual(deletes.sort(), [`${p}a`, `${p}b`]);
      await stop();
      await assert.rejects(owner.put(`${p}c`, '3', { lease }), (e: unknown) => e instanceof HotPatchError && e.code === 'NOT_FOUND');
      assert.equal(await observer.get(`${p}c`), undefined);
    });

    test('election: one leader; the other takes over when the first resigns', { timeout: TEST_TIMEOUT }, async () => {
      const [sa, sb] = [await open(), await open()];
      const election = `resign-${randomBytes(4).toString('hex')}`;
      const [la, lb] = [await sa.grantLease(5000), await sb.grantLease(5000)];
      assert.equal(await sa.leader(election), undefined);
      const a = await sa.campaign(election, 'candidate-a', la);
      assert.equal(await sb.leader(election), 'candidate-a');
      const bPending = sb.campaign(election, 'candidate-b', lb);
      assert.equal(await settlesWithin(bPending, 500), false, 'b waits while a leads');
      await a.resign();
      assert.equal(await settlesWithin(a.lost, SETTLES_MS), true, 'resign ends a leadership');
      const b = await withDeadline(bPending, SETTLES_MS, 'b to take over after the resignation');
      assert.equal(await sa.leader(election), 'candidate-b');
      assert.equal(await settlesWithin(b.lost, 200), false, 'b still leads');
      await b.resign();
      assert.equal(await sa.leader(election), undefined);
      // The leases outlive the election: other keys on them stay.
      assert.equal(la.ttlMs, 5000);
      await la.revoke();
      await lb.revoke();
    });

    test('election: a leader whose lease is lost (released, not renewed) is replaced', { timeout: TEST_TIMEOUT }, async () => {
      const [sa, sb] = [await open(), await open()];
      const election = `lease-${randomBytes(4).toString('hex')}`;
      const [la, lb] = [await sa.grantLease(TTL_MS), await sb.grantLease(5000)];
      const a = await sa.campaign(election, 'candidate-a', la);
      const bPending = sb.campaign(election, 'candidate-b', lb);
      assert.equal(await settlesWithin(bPending, 300), false);
      la.release(); // a "dies": it stops renewing, nobody resigns
      assert.equal(await settlesWithin(a.lost, SETTLES_MS), true, 'a learns it lost leadership');
      const b = await withDeadline(bPending, SETTLES_MS, "b to take over once a's lease ran out");
      assert.equal(await sa.leader(election), 'candidate-b');
      await b.resign();
      await lb.revoke();
    });

    test('a campaign whose lease is revoked while waiting fails with ABORTED', { timeout: TEST_TIMEOUT }, async () => {
      const [sa, sb] = [await open(), await open()];
      const election = `abort-${randomBytes(4).toString('hex')}`;
      const [la, lb] = [await sa.grantLease(5000), await sb.grantLease(5000)];
      const a = await sa.campaign(election, 'candidate-a', la);
      const bPending = sb.campaign(election, 'candidate-b', lb);
      assert.equal(await settlesWithin(bPending, 300), false);
      await lb.revoke();
      await assert.rejects(bPending, (e: unknown) => e instanceof HotPatchError && e.code === 'ABORTED');
      assert.equal(await sa.leader(election), 'candidate-a');
      await a.resign();
      await la.revoke();
    });

    test('bad arguments are INVALID, naming the argument', { timeout: TEST_TIMEOUT }, async () => {
      const s = await open();
      const invalid = (name: RegExp) => (e: unknown) => e instanceof HotPatchError && e.code === 'INVALID' && name.test(e.message);
      await assert.rejects(s.get(''), invalid(/key/));
      await assert.rejects(s.put('/k', 42 as unknown as string), invalid(/value/));
      await assert.rejects(s.put('/k', 'v', { lease: {} as never }), invalid(/lease/));
      await assert.rejects(s.list(7 as unknown as string), invalid(/prefix/));
      await assert.rejects(s.grantLease(0), invalid(/ttlMs/));
      await assert.rejects(s.grantLease(1.5), invalid(/ttlMs/));
      await assert.rejects(s.leader('a/b'), invalid(/election/));
      await assert.rejects(s.watch('/p', 'nope' as never), invalid(/onEvent/));
      const closed = await open();
      await closed.close();
      await assert.rejects(closed.get('/k'), invalid(/closed/));
    });
  });
}

conformance('EmbeddedStore (temp dir)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'hotpatch-store-'));
  return {
    backend: { open: () => EmbeddedStore.open(dir) },
    teardown: () => rm(dir, { recursive: true, force: true }),
  };
});

conformance('EtcdStore (3-member etcd cluster)', async () => {
  const cluster: EtcdCluster = await startEtcdCluster({ members: 3 });
  return {
    backend: { open: async () => new EtcdStore({ endpoints: cluster.endpoints, callTimeoutMs: 3000 }) },
    teardown: () => cluster.stop(),
  };
});

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Etcd3 } from 'etcd3';
import type { HotPatchError } from '../../src/core/index.js';
import {
  DistributedApproval,
  StoreConsensus,
  newProposal,
  openStore,
  parseApprovers,
  proposalIdOf,
  signVote,
  type ApprovalResult,
  type KvStore,
} from '../../src/distributed/index.js';
import type { PatchPlan } from '../../src/orchestration/index.js';
import { makeEnv, planOf, types, withTraffic } from '../orchestration/helpers.js';
import { startEtcdCluster, type EtcdCluster } from './etcd-cluster.js';
import { approverKey, approversDoc, approversOf, hashOf, payloadOf, rawVote, requestOf, tampered, voteBy, waitFor } from './approval-helpers.js';

// A real 3-member etcd cluster on loopback: quorum approval through it, members killed
// during voting, and votes written straight into etcd by someone who holds no approver key.

const alice = approverKey('alice');
const bob = approverKey('bob', 'ecdsa-p256-sha256');
const carol = approverKey('carol', 'ml-dsa-65');
const mallory = approverKey('mallory');
const list = approversOf([alice, bob, carol], { threshold: 2 });
const PREFIX = '/xps/hotpatch-test';

let cluster: EtcdCluster;
let raw: Etcd3;
const stores: KvStore[] = [];

/** A consensus over its own etcd client (as another host would have), talking to every member. */
async function client(): Promise<StoreConsensus> {
  const spec = `etcd://${cluster.endpoints.map((e) => e.replace(/^http:\/\//, '')).join(',')}`;
  const store = await openStore(spec);
  stores.push(store);
  return new StoreConsensus(store, { prefix: PREFIX });
}

before(async () => {
  cluster = await startEtcdCluster();
  raw = new Etcd3({ hosts: cluster.endpoints });
});

after(async () => {
  raw?.close();
  await Promise.allSettled(stores.map((s) => s.close()));
  await cluster?.stop();
});

/** Once the proposal for `request` exists, casts the keys' votes through `voter`. */
async function castWhenProposed(voter: StoreConsensus, request: ReturnType<typeof requestOf>, keys: (typeof alice)[]): Promise<void> {
  const id = proposalIdOf(request);
  await waitFor(async () => (await voter.proposal(id)) !== undefined, 15_000, `proposal ${id}`);
  const proposal = (await voter.proposal(id))!;
  for (const k of keys) await voter.vote(voteBy(k, proposal, Date.now()));
}

test('etcd: a Planner plan with a DistributedApproval approver waits for the signed quorum, then activates', async () => {
  const env = await makeEnv();
  try {
    const agent = await client();
    const voter = await client();
    const proc = env.process();
    proc.registries.approvers.register('quorum', new DistributedApproval({ consensus: agent, approvers: list, waitMs: 20_000 }));
    const planner = await proc.open();
    await env.publish('fix-etcd', '1.0.1');
    planner.addPlan(planOf('p1', { patch: 'fix-etcd', approver: 'quorum' }) as PatchPlan);
    // The approver learns the payload hash from the verified manifest; the voters read the proposal.
    const voting = (async () => {
      await waitFor(async () => (await voter.proposals()).some((p) => p.patchId === 'fix-etcd'), 15_000, 'the proposal');
      const proposal = (await voter.proposals()).find((p) => p.patchId === 'fix-etcd')!;
      assert.deepEqual([proposal.target, proposal.version], ['xps.crypto.hash.sha256', '1.0.1']);
      assert.equal(
        proc.events.some((e) => e.type === 'Approved'),
        false,
        'approved before any vote',
      );
      for (const k of [alice, carol]) await voter.vote(voteBy(k, proposal, Date.now()));
    })();
    const [{ result, errors }] = await Promise.all([withTraffic(proc, planner.runOnce('p1')), voting]);
    assert.equal(result.status, 'activated', result.reason);
    assert.equal(errors, 0);
    assert.equal(proc.target.active.version, '1.0.1');
    assert.deepEqual(types(proc.events).slice(0, 5), ['Planned', 'Fetched', 'Verified', 'Approved', 'Staged']);
    const approved = proc.events.find((e) => e.type === 'Approved')!;
    assert.deepEqual(approved.detail?.approvedBy, ['alice', 'carol']);
    assert.equal(approved.detail?.required, 2);
  } finally {
    await env.close();
  }
});

/** The member that is the Raft leader now (asked through etcd's JSON gateway). */
async function leader(): Promise<EtcdCluster['members'][number]> {
  const ids = await Promise.all(
    cluster.members.map(async (m) => {
      const res = await fetch(`${m.clientUrl}/v3/maintenance/status`, { method: 'POST', body: '{}' });
      const body = (await res.json()) as { header: { member_id: string }; leader: string };
      return { m, self: body.header.member_id, leader: body.leader };
    }),
  );
  const found = ids.find((x) => x.self === x.leader);
  assert.ok(found !== undefined, 'no leader');
  return found.m;
}

test('etcd: the leader killed during voting — the approval still completes', async () => {
  const agent = await client();
  const voter = await client();
  const request = requestOf({ patchId: 'etcd-one-down' });
  const approval = new DistributedApproval({ consensus: agent, approvers: list, waitMs: 20_000, pollMs: 500 });
  const pending = approval.waitForQuorum(request);
  await castWhenProposed(voter, request, [alice]);
  const victim = await leader();
  await victim.kill();
  try {
    await castWhenProposed(voter, request, [bob]);
    const result = await pending;
    assert.deepEqual(result.approvedBy, ['alice', 'bob']);
  } finally {
    await victim.start();
  }
});

test('etcd: two members killed — no approval (fail closed, clear error); once they return a new approve succeeds', async () => {
  const agent = await client();
  const voter = await client();
  const request = requestOf({ patchId: 'etcd-two-down' });
  const approval = new DistributedApproval({ consensus: agent, approvers: list, waitMs: 1500, pollMs: 250 });
  // The proposal exists and one vote is in; then the cluster loses its quorum.
  const first = approval.waitForQuorum(request).catch((e: unknown) => e);
  await castWhenProposed(voter, request, [alice]);
  await Promise.all([cluster.members[1]!.kill(), cluster.members[2]!.kill()]);
  let outcome: ApprovalResult | HotPatchError;
  try {
    // The waiting approver cannot read the store any more: it must not approve.
    outcome = (await first) as ApprovalResult | HotPatchError;
    const second = await approval.waitForQuorum(request).catch((e: unknown) => e as HotPatchError);
    for (const o of [outcome, second]) {
      if (process.env.SHOW_ERRORS === '1') console.log((o as Error).message);
      assert.ok(!('approvedBy' in o), `approved without a quorum: ${JSON.stringify(o)}`);
      const e = o as HotPatchError;
      assert.ok(e.code === 'IO' || e.code === 'APPROVAL_MISSING', `code ${e.code}: ${e.message}`);
      assert.match(e.message, /^approval of etcd-two-down 1\.0\.1: /);
      if (e.code === 'IO') assert.match(e.message, /consensus store unavailable, not approving \(fail closed\)/);
    }
  } finally {
    await Promise.all([cluster.members[1]!.start(), cluster.members[2]!.start()]);
  }
  // Recovery: the store answers again; a second vote completes the quorum.
  const recovered = new DistributedApproval({ consensus: agent, approvers: list, waitMs: 20_000, pollMs: 500 });
  const [result] = await Promise.all([recovered.waitForQuorum(request), castWhenProposed(voter, request, [bob])]);
  assert.deepEqual(result.approvedBy, ['alice', 'bob']);
});

test('etcd: forged, duplicated, expired and wrong-hash votes written straight into etcd are ignored', async () => {
  const alias = { ...carol, keyid: 'carol-2' };
  const withAlias = parseApprovers(approversDoc([alice, bob, carol, alias], { threshold: 2 }));
  const agent = await client();
  const request = requestOf({ patchId: 'etcd-forged', payloadHash: hashOf('forged') });
  const id = proposalIdOf(request);
  // Let the agent create the proposal (a short first wait), then write straight into etcd.
  await new DistributedApproval({ consensus: agent, approvers: withAlias, waitMs: 0 }).approve(request).catch(() => undefined);
  const proposal = (await agent.proposal(id))!;
  const put = (keyid: string, envelope: string) => raw.put(`${PREFIX}/votes/${id}/${keyid}`).value(envelope);
  const older = newProposal(request, { now: Date.now() - 7_200_000, ttlMs: 3_600_000, proposer: 'old' });
  await put('mallory', voteBy(mallory, proposal, Date.now()).envelope); // unknown key
  await put('alice', rawVote(mallory, id, payloadOf(voteBy(alice, proposal, Date.now()))).envelope.replace('"keyid": "mallory"', '"keyid": "alice"')); // another key under alice's id
  await put('bob', tampered(signVote(older, bob.privateKey, 'bob', { now: Date.now() - 7_100_000 }), { expiresAt: proposal.expiresAt }).envelope); // expired vote, its expiry changed
  await put('carol', voteBy(carol, proposal, Date.now()).envelope); // valid
  await put('carol-2', voteBy(alias, proposal, Date.now()).envelope); // the same key under a second id
  const approval = new DistributedApproval({ consensus: agent, approvers: withAlias, waitMs: 800, pollMs: 100 });
  await assert.rejects(approval.approve(request), (e: HotPatchError) => {
    assert.equal(e.code, 'APPROVAL_MISSING');
    assert.match(e.message, /: 1 of 2 required approvals \(ignored: /);
    assert.deepEqual(e.detail?.counted, ['carol']);
    assert.deepEqual(
      (e.detail?.ignored as { keyid: string; reason: string }[]).map((i) => `${i.keyid}: ${i.reason.replace(/ \(.*$/, '')}`),
      ['alice: bad signature', 'bob: bad signature', 'carol-2: same public key as carol, already counted', 'mallory: unknown key'],
    );
    return true;
  });
  // Valid signatures, wrong content: a vote for another payload hash, a vote for the expired instance.
  await put('alice', rawVote(alice, id, { ...payloadOf(voteBy(alice, proposal, Date.now())), payloadHash: hashOf('evil') }).envelope);
  await put('bob', signVote(older, bob.privateKey, 'bob', { now: Date.now() - 7_100_000 }).envelope);
  await assert.rejects(approval.approve(request), (e: HotPatchError) => {
    assert.equal(e.code, 'APPROVAL_MISSING');
    const reasons = Object.fromEntries((e.detail?.ignored as { keyid: string; reason: string }[]).map((i) => [i.keyid, i.reason]));
    assert.match(reasons.alice!, /^vote for another payload hash/);
    assert.match(reasons.bob!, /^vote for another instance of the proposal/);
    return true;
  });
  // An expired proposal written straight into etcd, with valid votes for it: never approved;
  // the agent renews it instead and the old votes stop counting.
  const expiredRequest = requestOf({ patchId: 'etcd-expired', payloadHash: hashOf('expired') });
  const expired = newProposal(expiredRequest, { now: Date.now() - 7_200_000, ttlMs: 3_600_000, proposer: 'old' });
  await raw.put(`${PREFIX}/proposals/${expired.id}`).value(JSON.stringify(expired));
  for (const k of [alice, bob])
    await raw.put(`${PREFIX}/votes/${expired.id}/${k.keyid}`).value(signVote(expired, k.privateKey, k.keyid, { now: Date.now() - 7_100_000 }).envelope);
  await assert.rejects(
    new DistributedApproval({ consensus: agent, approvers: list, waitMs: 500, pollMs: 100 }).approve(expiredRequest),
    (e: HotPatchError) => e.code === 'APPROVAL_MISSING' && /0 of 2 required approvals \(ignored: alice: vote for another instance/.test(e.message),
  );
  // Unaffected: a legitimate second vote completes the first proposal.
  await put('alice', voteBy(alice, proposal, Date.now()).envelope);
  assert.deepEqual((await approval.waitForQuorum(request)).approvedBy, ['alice', 'carol']);
});

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { HotPatchError } from '../../src/core/index.js';
import {
  DistributedApproval,
  EmbeddedStore,
  StoreConsensus,
  getConsensus,
  newProposal,
  proposalIdOf,
  setConsensus,
  signVote,
  type Consensus,
  type KvStore,
} from '../../src/distributed/index.js';
import { approverKey, approversOf, assertCode, hashOf, requestOf, voteBy, waitFor } from './approval-helpers.js';
import { until, withDeadline } from '../support/wait.js';

const alice = approverKey('alice');
const bob = approverKey('bob', 'ecdsa-p256-sha256');
const carol = approverKey('carol');
const mallory = approverKey('mallory');
const list = approversOf([alice, bob, carol], { threshold: 2 });

let dir: string;
const stores: KvStore[] = [];
/** A consensus over its own EmbeddedStore instance on the shared directory (as another process would have). */
async function client(prefix = '/t'): Promise<StoreConsensus> {
  const store = await EmbeddedStore.open(dir, { pollMs: 20 });
  stores.push(store);
  return new StoreConsensus(store, { prefix });
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hotpatch-approval-'));
});
after(async () => {
  setConsensus(undefined);
  await Promise.all(stores.map((s) => s.close()));
  await rm(dir, { recursive: true, force: true });
});

/** Waits for the proposal of `request` to appear, then casts the given keys' votes from another client. */
async function castWhenProposed(voter: Consensus, request: ReturnType<typeof requestOf>, keys: (typeof alice)[]): Promise<void> {
  const id = proposalIdOf(request);
  await waitFor(async () => (await voter.proposal(id)) !== undefined, 10_000, 'the proposal');
  const proposal = (await voter.proposal(id))!;
  for (const k of keys) assert.equal(await voter.vote(voteBy(k, proposal, Date.now())), true);
}

test('with an embedded store: approve proposes, waits, and resolves once a quorum of signed votes arrives', async () => {
  const agent = await client();
  const voter = await client();
  const request = requestOf({ patchId: 'emb-ok' });
  // The poll interval is the whole wait: only the watch can wake it before the deadline, so
  // an approval (rather than APPROVAL_MISSING after 15 s) shows it was woken by the watch.
  const approval = new DistributedApproval({ consensus: agent, approvers: list, waitMs: 15_000, pollMs: 15_000 });
  const [result] = await Promise.all([approval.waitForQuorum(request), castWhenProposed(voter, request, [mallory, alice, bob])]);
  assert.deepEqual(result, { proposalId: proposalIdOf(request), approvedBy: ['alice', 'bob'], required: 2 });
  // The same activation asked again (another agent) finds the same proposal, already approved.
  const again = await new DistributedApproval({ consensus: voter, approvers: list, waitMs: 0 }).waitForQuorum(request);
  assert.deepEqual(again.approvedBy, ['alice', 'bob']);
  // Repeated votes are not stored twice.
  const proposal = (await voter.proposal(result.proposalId))!;
  assert.equal(await voter.vote(voteBy(alice, proposal, Date.now())), false);
  assert.deepEqual(
    (await voter.votes(result.proposalId)).map((v) => v.keyid),
    ['alice', 'bob', 'mallory'],
  );
});

test('with an embedded store: a quorum not reached in time is APPROVAL_MISSING, saying how far off and why votes were ignored', async () => {
  const agent = await client();
  const request = requestOf({ patchId: 'emb-missing' });
  const approval = new DistributedApproval({ consensus: agent, approvers: list, waitMs: 400, pollMs: 50 });
  const voting = castWhenProposed(await client(), request, [alice, mallory]);
  const started = Date.now();
  await assert.rejects(
    approval.approve(request),
    assertCode(
      'APPROVAL_MISSING',
      /^approval of emb-missing 1\.0\.1: 1 of 2 required approvals \(ignored: mallory: unknown key\); proposal p-[0-9a-f]{32}, waited 400 ms$/,
    ),
  );
  await voting;
  // A lower bound only (a busy machine makes it longer, never shorter): it really waited.
  const waited = Date.now() - started;
  assert.ok(waited >= 350, `waited ${waited} ms`);
  // An abort ends the wait at once, still without approving: aborted once the wait has begun
  // (its first read of the votes), long before its 60 s deadline.
  const controller = new AbortController();
  let reads = 0;
  const counting: Consensus = Object.assign(Object.create(agent) as StoreConsensus, {
    votes: async (id: string) => {
      reads += 1;
      return agent.votes(id);
    },
  });
  const slow = new DistributedApproval({ consensus: counting, approvers: list, waitMs: 60_000 });
  const aborting = until(() => reads > 0, 15_000, 'the wait to begin').then(() => controller.abort());
  await assert.rejects(
    withDeadline(slow.approve(request, controller.signal), 15_000, 'the aborted approval to end'),
    assertCode('APPROVAL_MISSING', /aborted while waiting/),
  );
  await aborting;
});

test('the seed injection point: getConsensus() without one set is INVALID; DistributedApproval uses the current one at call time', async () => {
  setConsensus(undefined);
  assert.throws(() => getConsensus(), assertCode('INVALID', /no consensus configured/));
  const approval = new DistributedApproval({ approvers: list, waitMs: 0 });
  await assert.rejects(approval.approve(requestOf()), assertCode('INVALID', /no consensus configured/));
  const current = await client('/injected');
  setConsensus(current);
  assert.equal(getConsensus(), current);
  const request = requestOf({ patchId: 'emb-injected' });
  await Promise.all([approval.approve(request).catch(() => undefined), castWhenProposed(current, request, [alice, carol])]);
  const result = await new DistributedApproval({ approvers: list, waitMs: 5000 }).waitForQuorum(request);
  assert.deepEqual(result.approvedBy, ['alice', 'carol']);
  setConsensus(undefined);
});

test('an expired proposal is renewed by the next approve; votes for the old instance no longer count, new ones do', async () => {
  const agent = await client();
  const request = requestOf({ patchId: 'emb-renew', payloadHash: hashOf('renew') });
  const old = newProposal(request, { now: Date.now() - 7_200_000, ttlMs: 3_600_000, proposer: 'yesterday' });
  assert.equal(await agent.propose(old), true);
  for (const k of [alice, bob]) await agent.vote(signVote(old, k.privateKey, k.keyid, { now: Date.now() - 7_000_000 }));
  const approval = new DistributedApproval({ consensus: agent, approvers: list, waitMs: 300, pollMs: 50, proposalTtlMs: 600_000 });
  await assert.rejects(
    approval.approve(request),
    assertCode('APPROVAL_MISSING', /0 of 2 required approvals \(ignored: alice: vote for another instance of the proposal/),
  );
  const renewed = (await agent.proposal(old.id))!;
  assert.ok(Date.parse(renewed.expiresAt) > Date.now() + 500_000, "renewed for the approver's ttl");
  // Fresh votes replace the stale ones (compare-and-swap on the exact stale vote).
  for (const k of [alice, bob]) {
    const stale = (await agent.votes(old.id)).find((v) => v.keyid === k.keyid)!;
    assert.equal(await agent.vote(voteBy(k, renewed, Date.now()), { replacing: stale }), true);
  }
  assert.deepEqual((await approval.waitForQuorum(request)).approvedBy, ['alice', 'bob']);
});

test('a ratio quorum follows the voters registered with leases; a dropped voter lowers it', async () => {
  const agent = await client('/ratio');
  const ratio = approversOf([alice, bob, carol], { ratio: 0.5, min: 1 });
  const leases = await Promise.all([agent.grantLease(60_000), agent.grantLease(60_000), agent.grantLease(60_000)]);
  for (const [i, k] of [alice, bob, carol].entries()) await agent.registerVoter(k.keyid, leases[i]!);
  assert.equal(await agent.voterCount(), 3);
  const request = requestOf({ patchId: 'emb-ratio' });
  const approval = new DistributedApproval({ consensus: agent, approvers: ratio, waitMs: 300, pollMs: 50 });
  await Promise.all([
    assert.rejects(approval.approve(request), assertCode('APPROVAL_MISSING', /1 of 2 required approvals/)),
    castWhenProposed(agent, request, [alice]),
  ]);
  await leases[2]!.revoke();
  assert.equal(await agent.voterCount(), 2);
  assert.deepEqual(await approval.waitForQuorum(request), { proposalId: proposalIdOf(request), approvedBy: ['alice'], required: 1 });
});

test('invalid options and requests are INVALID, naming the argument', async () => {
  const agent = await client();
  assert.throws(() => new DistributedApproval({ consensus: agent, approvers: list, waitMs: -1 }), assertCode('INVALID', /waitMs/));
  assert.throws(() => new DistributedApproval({ consensus: agent, approvers: {} as never }), assertCode('INVALID', /approvers/));
  const approval = new DistributedApproval({ consensus: agent, approvers: list, waitMs: 0 });
  await assert.rejects(approval.approve({ ...requestOf(), patchId: '../x' }), assertCode('INVALID', /patchId/));
  await assert.rejects(approval.approve({ ...requestOf(), payloadHash: 'nohash' }), assertCode('INVALID', /payloadHash/));
  assert.throws(() => new StoreConsensus(stores[0]!, { prefix: 'no-slash' }), assertCode('INVALID', /prefix/));
});

test('store errors never approve: IO while waiting fails closed with IO; an error that clears before the deadline is retried', async () => {
  const real = await client('/flaky');
  let failedReads = 0;
  let clearAfter = Infinity;
  // The votes are in the store, but reading them fails (as etcd without quorum would) until
  // `clearAfter` failed reads have happened.
  const flaky: Consensus = Object.assign(Object.create(real) as StoreConsensus, {
    votes: async (id: string) => {
      if (failedReads < clearAfter) {
        failedReads += 1;
        throw new HotPatchError('IO', 'etcd unreachable or without quorum');
      }
      return real.votes(id);
    },
  });
  const request = requestOf({ patchId: 'emb-flaky' });
  const proposal = newProposal(request, { now: Date.now(), ttlMs: 600_000, proposer: 'test' });
  await real.propose(proposal);
  for (const k of [alice, bob]) await real.vote(voteBy(k, (await real.proposal(proposal.id))!, Date.now()));
  const approval = new DistributedApproval({ consensus: flaky, approvers: list, waitMs: 300, pollMs: 50 });
  await assert.rejects(
    approval.approve(request),
    assertCode(
      'IO',
      /^approval of emb-flaky 1\.0\.1: consensus store unavailable, not approving \(fail closed\): etcd unreachable or without quorum; proposal p-/,
    ),
  );
  // The error clears after two more failed reads: the wait retried through them.
  failedReads = 0;
  clearAfter = 2;
  const result = await new DistributedApproval({ consensus: flaky, approvers: list, waitMs: 15_000, pollMs: 50 }).waitForQuorum(request);
  assert.ok(failedReads >= 2, `${failedReads} failed reads before the error cleared`);
  assert.deepEqual(result.approvedBy, ['alice', 'bob']);
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { generateKeyPair } from '../../src/crypto-agile/index.js';
import { HotPatchError } from '../../src/core/index.js';
import {
  countVotes,
  newProposal,
  parseApprovers,
  parseProposal,
  encodeProposal,
  proposalIdOf,
  requiredApprovals,
  type SignedVote,
} from '../../src/distributed/index.js';
import {
  T0,
  approverKey,
  approversDoc,
  approversOf,
  assertCode,
  hashOf,
  payloadOf,
  proposalOf,
  rawVote,
  requestOf,
  tampered,
  voteBy,
} from './approval-helpers.js';

const alice = approverKey('alice');
const bob = approverKey('bob', 'ecdsa-p256-sha256');
const carol = approverKey('carol', 'ml-dsa-65');
const mallory = approverKey('mallory');
const list = approversOf([alice, bob, carol], { threshold: 2 });
const proposal = proposalOf();
const at = { now: T0 + 5000, voterCount: 0 };

test('two valid votes of a 2-of-3 list approve; the algorithm of each comes from the list', () => {
  const tally = countVotes(proposal, [voteBy(alice, proposal), voteBy(carol, proposal)], list, at);
  assert.deepEqual(tally, { approved: true, counted: ['alice', 'carol'], required: 2, ignored: [] });
  const one = countVotes(proposal, [voteBy(bob, proposal)], list, at);
  assert.deepEqual([one.approved, one.counted, one.required], [false, ['bob'], 2]);
});

test('forged votes do not count: an unknown key, another key under a listed id, a changed field under a valid signature', () => {
  const byMallory = voteBy(mallory, proposal);
  const malloryAsAlice = rawVote(mallory, proposal.id, { ...payloadOf(voteBy(alice, proposal)) }, 'alice');
  const fakeAlice = { ...malloryAsAlice, envelope: malloryAsAlice.envelope.replace('"keyid": "mallory"', '"keyid": "alice"') };
  const changed = tampered(voteBy(bob, proposal), { payloadHash: hashOf('evil') });
  const tally = countVotes(proposal, [byMallory, fakeAlice, changed, voteBy(carol, proposal)], list, at);
  assert.deepEqual(tally.counted, ['carol']);
  assert.equal(tally.approved, false);
  assert.deepEqual(tally.ignored, [
    { keyid: 'mallory', reason: 'unknown key' },
    { keyid: 'alice', reason: 'bad signature' },
    { keyid: 'bob', reason: 'bad signature' },
  ]);
});

test('a validly signed vote for another payload hash, target, version or patch id is ignored, saying which', () => {
  for (const [field, value, words] of [
    ['payloadHash', hashOf('other'), /another payload hash/],
    ['target', 'xps.other', /another target/],
    ['version', '9.9.9', /another version/],
    ['patchId', 'fix-999', /another patch id/],
    ['proposalId', 'p-00000000000000000000000000000000', /another proposal/],
  ] as const) {
    const vote = rawVote(alice, proposal.id, { ...payloadOf(voteBy(alice, proposal)), [field]: value });
    const tally = countVotes(proposal, [vote], list, at);
    assert.deepEqual(tally.counted, [], field);
    assert.match(tally.ignored[0]!.reason, words);
  }
  // A vote cast for another activation, copied under this proposal's id by a store writer.
  const other = proposalOf({ payloadHash: hashOf('payload-2') });
  const copied = { ...voteBy(alice, other), proposalId: proposal.id };
  assert.match(countVotes(proposal, [copied], list, at).ignored[0]!.reason, /another proposal/);
});

test('an expired proposal counts nothing; a vote outside its lifetime, or for an earlier instance of it, does not count', () => {
  const votes = [voteBy(alice, proposal), voteBy(bob, proposal)];
  const expired = countVotes(proposal, votes, list, { now: T0 + 3_600_000, voterCount: 0 });
  assert.equal(expired.approved, false);
  assert.match(expired.ignored[0]!.reason, /proposal expired at 2030-01-01T01:00:00.000Z/);
  // Cast long before the proposal, or "in the future".
  const early = voteBy(alice, proposal, T0 - 60_000);
  const future = voteBy(bob, proposal, T0 + 600_000);
  const t = countVotes(proposal, [early, future], list, at);
  assert.deepEqual(
    t.ignored.map((i) => i.reason.replace(/cast at [^,]+/, 'cast at X')),
    ['vote cast at X, before the proposal was made (2030-01-01T00:00:00.000Z)', 'vote cast at X, in the future'],
  );
  // The same activation proposed again after expiry: the old votes were for the old instance.
  const renewed = newProposal(requestOf(), { now: T0 + 3_700_000, ttlMs: 3_600_000, proposer: 'test' });
  assert.equal(renewed.id, proposal.id);
  const r = countVotes(renewed, votes, list, { now: T0 + 3_700_000, voterCount: 0 });
  assert.deepEqual(r.counted, []);
  assert.match(r.ignored[0]!.reason, /another instance of the proposal/);
});

test('duplicates count once: the same vote twice, one key under two ids', () => {
  const alias = { ...alice, keyid: 'alice-2' };
  const withAlias = parseApprovers(approversDoc([alice, alias, bob], { threshold: 2 }));
  const same = voteBy(alice, proposal);
  const tally = countVotes(proposal, [same, same, voteBy(alias, proposal)], withAlias, at);
  assert.deepEqual(tally.counted, ['alice']);
  assert.equal(tally.approved, false);
  assert.deepEqual(tally.ignored, [
    { keyid: 'alice', reason: 'repeated vote' },
    { keyid: 'alice-2', reason: 'same public key as alice, already counted' },
  ]);
});

test('malformed votes are ignored with a reason: garbage, wrong type, two signatures, stored under another id, unknown payload field', () => {
  const good = voteBy(alice, proposal);
  const env = JSON.parse(good.envelope) as { payloadType: string; payload: string; signatures: { keyid: string; sig: string }[] };
  const votes: SignedVote[] = [
    { proposalId: proposal.id, keyid: 'alice', envelope: 'not json' },
    { ...good, envelope: JSON.stringify({ ...env, payloadType: 'application/vnd.xps.hotpatch.manifest+json' }) },
    { ...good, envelope: JSON.stringify({ ...env, signatures: [env.signatures[0], env.signatures[0]] }) },
    { ...good, keyid: 'bob' },
    rawVote(alice, proposal.id, { ...payloadOf(good), extra: 1 }),
    rawVote(alice, proposal.id, { ...payloadOf(good), decision: 'reject' }),
    rawVote(alice, proposal.id, { ...payloadOf(good), keyid: 'bob' }),
  ];
  const tally = countVotes(proposal, votes, list, at);
  assert.deepEqual(tally.counted, []);
  assert.deepEqual(
    tally.ignored.map((i) => i.reason.split(':')[0]),
    [
      'malformed envelope',
      'wrong payload type "application/vnd.xps.hotpatch.manifest+json"',
      'a vote carries exactly one signature, this one 2',
      'signed as "alice" but stored under "bob"',
      'malformed vote',
      'malformed vote',
      'vote names key id "bob"',
    ],
  );
});

test('a ratio quorum asks for ceil(ratio × voterCount) keys, never fewer than min nor 1', () => {
  const ratio = approversOf([alice, bob, carol], { ratio: 0.66, min: 2 });
  assert.equal(requiredApprovals(ratio.quorum, 0), 2);
  assert.equal(requiredApprovals(ratio.quorum, 3), 2);
  assert.equal(requiredApprovals(ratio.quorum, 4), 3);
  assert.equal(requiredApprovals(ratio.quorum, 100), 66);
  assert.equal(requiredApprovals(approversOf([alice], { ratio: 0.1 }).quorum, 1), 1);
  const votes = [voteBy(alice, proposal), voteBy(bob, proposal)];
  assert.equal(countVotes(proposal, votes, ratio, { now: at.now, voterCount: 3 }).approved, true);
  assert.deepEqual(countVotes(proposal, votes, ratio, { now: at.now, voterCount: 4 }).required, 3);
});

test('the approvers list is parsed strictly', () => {
  const doc = approversDoc([alice, bob], { threshold: 2 });
  assert.equal(parseApprovers(JSON.stringify(doc)).distinctKeys, 2);
  assert.throws(() => parseApprovers({ ...doc, extra: 1 }), assertCode('INVALID', /unknown field "extra"/));
  assert.throws(() => parseApprovers(approversDoc([alice, bob], { threshold: 0 })), assertCode('INVALID', /below 1/));
  assert.throws(() => parseApprovers(approversDoc([alice, bob], { threshold: 3 })), assertCode('INVALID', /never be met/));
  assert.throws(() => parseApprovers(approversDoc([alice, { ...alice, keyid: 'a2' }], { threshold: 2 })), assertCode('INVALID', /only 1 distinct/));
  assert.throws(() => parseApprovers(approversDoc([alice, bob], { threshold: 1, min: 1 })), assertCode('INVALID', /unknown field "min"/));
  assert.throws(() => parseApprovers(approversDoc([alice, bob], { ratio: 0 })), assertCode('INVALID'));
  assert.throws(() => parseApprovers(approversDoc([alice, bob], { ratio: 1.5 })), assertCode('INVALID'));
  assert.throws(() => parseApprovers(approversDoc([alice, bob], { ratio: 0.5, min: 3 })), assertCode('INVALID'));
  assert.throws(() => parseApprovers(approversDoc([alice, bob], {})), assertCode('INVALID'));
  assert.throws(() => parseApprovers({ keys: {}, quorum: { threshold: 1 } }), assertCode('INVALID', /no keys/));
  assert.throws(() => parseApprovers({ keys: { 'a/b': { alg: 'ed25519', public_key: alice.publicPem } }, quorum: { threshold: 1 } }), assertCode('INVALID'));
  assert.throws(
    () => parseApprovers({ keys: { a: { alg: 'ecdsa-p256-sha256', public_key: alice.publicPem } }, quorum: { threshold: 1 } }),
    assertCode('INVALID'),
  );
  assert.throws(() => parseApprovers({ keys: { a: { alg: 'ed25519', public_key: 'AAAA' } }, quorum: { threshold: 1 } }), assertCode('INVALID'));
  assert.throws(
    () => parseApprovers({ keys: { a: { alg: 'dsa', public_key: alice.publicPem } }, quorum: { threshold: 1 } }),
    assertCode('ALGORITHM_DISALLOWED'),
  );
  assert.throws(() => parseApprovers('{"keys":'), assertCode('PARSE'));
});

test('a proposal id is the same for the same activation on every agent, and binds all four fields', () => {
  const a = proposalOf({}, T0);
  const b = proposalOf({ payloadHash: requestOf().payloadHash.toUpperCase().replace('SHA256', 'sha256') }, T0 + 99_000);
  assert.equal(a.id, b.id);
  assert.match(a.id, /^p-[0-9a-f]{32}$/);
  for (const change of [{ payloadHash: hashOf('x') }, { target: 'xps.other' }, { version: '1.0.2' }, { patchId: 'fix-102' }]) {
    assert.notEqual(proposalIdOf(requestOf(change)), a.id);
  }
  assert.deepEqual(parseProposal(encodeProposal(a)), a);
  assert.throws(() => parseProposal({ ...a, id: proposalIdOf(requestOf({ version: '2.0.0' })) }), assertCode('INVALID', /not the id of its fields/));
  assert.throws(() => parseProposal({ ...a, extra: true }), assertCode('INVALID'));
  assert.throws(() => parseProposal({ ...a, expiresAt: a.createdAt }), assertCode('INVALID'));
  assert.throws(() => proposalOf({ version: 'v1' }), assertCode('INVALID'));
});

test('property: the counted set never holds two keys with one fingerprint, and only listed keys whose vote verifies count', () => {
  // A pool of keys: listed ones (some under two ids), and unlisted ones posing under listed ids.
  const keys = [approverKey('k0'), approverKey('k1', 'ecdsa-p256-sha256'), approverKey('k2'), approverKey('k3')];
  const aliases = [
    { ...keys[0]!, keyid: 'k0-alias' },
    { ...keys[1]!, keyid: 'k1-alias' },
  ];
  const listed = [...keys.slice(0, 3), ...aliases];
  const pool = parseApprovers(approversDoc(listed, { threshold: 3 }));
  const outsider = approverKey('k3');
  const p = proposalOf();
  const valid = listed.map((k) => voteBy(k, p));
  type Kind = 'valid' | 'forged' | 'tampered' | 'wrong-hash' | 'unlisted';
  const variants: { vote: SignedVote; kind: Kind }[] = [
    ...valid.map((vote) => ({ vote, kind: 'valid' as const })),
    ...listed.map((k) => ({ vote: rawVote(outsider, p.id, payloadOf(voteBy(k, p)), k.keyid), kind: 'forged' as const })),
    ...valid.map((v) => ({ vote: tampered(v, { version: '6.6.6' }), kind: 'tampered' as const })),
    ...listed.map((k) => ({ vote: rawVote(k, p.id, { ...payloadOf(voteBy(k, p)), payloadHash: hashOf('w') }), kind: 'wrong-hash' as const })),
    { vote: voteBy(keys[3]!, p), kind: 'unlisted' as const },
  ];
  const fingerprint = new Map(listed.map((k) => [k.keyid, pool.keys.get(k.keyid)!.key.fingerprint]));
  fc.assert(
    fc.property(fc.array(fc.nat({ max: variants.length - 1 }), { maxLength: 24 }), (picks) => {
      const chosen = picks.map((i) => variants[i]!);
      const tally = countVotes(
        p,
        chosen.map((c) => c.vote),
        pool,
        { now: T0 + 5000, voterCount: 0 },
      );
      const prints = tally.counted.map((id) => fingerprint.get(id));
      assert.equal(new Set(prints).size, prints.length, 'two counted keys share a fingerprint');
      for (const id of tally.counted) {
        assert.ok(pool.keys.has(id), `${id} is not listed`);
        assert.ok(
          chosen.some((c) => c.kind === 'valid' && c.vote.keyid === id),
          `${id} counted without a valid vote`,
        );
      }
      // Every distinct listed key with a valid vote counts (the set is also maximal).
      const expected = new Set(chosen.filter((c) => c.kind === 'valid').map((c) => fingerprint.get(c.vote.keyid)));
      assert.equal(tally.counted.length, expected.size);
      assert.equal(tally.approved, expected.size >= 3);
      assert.equal(tally.counted.length + tally.ignored.length, chosen.length);
    }),
    { numRuns: 200 },
  );
});

test('a key pair generated elsewhere (base64 SPKI in the list) verifies its votes', () => {
  const { privateKey, publicKey } = generateKeyPair('ed25519');
  const b64 = Buffer.from(publicKey.spki).toString('base64');
  const l = parseApprovers({ keys: { ext: { alg: 'ed25519', public_key: b64 } }, quorum: { threshold: 1 } });
  const vote = voteBy({ keyid: 'ext', privateKey, publicPem: '', alg: 'ed25519' }, proposal);
  assert.equal(countVotes(proposal, [vote], l, at).approved, true);
});

test('a stored proposal that lives longer than the 30-day maximum is refused, so old votes cannot be replayed for years', () => {
  const created = new Date('2026-01-01T00:00:00Z');
  const request = { patchId: 'fix-1', target: 'xps.crypto.hash.sha256', version: '1.0.1', payloadHash: `sha256:${'ab'.repeat(32)}` };
  const stored = {
    id: proposalIdOf(request),
    ...request,
    createdAt: created.toISOString(),
    expiresAt: new Date(created.getTime() + 100 * 365 * 86_400_000).toISOString(),
    proposer: 'mallory',
  };
  assert.throws(
    () => parseProposal(JSON.stringify(stored)),
    (e: unknown) => e instanceof HotPatchError && e.code === 'INVALID' && /maximum/.test((e as Error).message),
  );
});

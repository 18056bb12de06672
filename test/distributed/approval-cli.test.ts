import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { DistributedApproval, EmbeddedStore, StoreConsensus, newProposal, parseApprovers } from '../../src/distributed/index.js';
import { hotpatch } from '../cli/run-cli.js';
import { hashOf } from './approval-helpers.js';

// The operator's side of approval, through the real `hotpatch` binary against an embedded
// store shared with an in-process agent: propose, approve, proposals.

let dir: string;
let spec: string;
let approversFile: string;
const HASH = hashOf('cli-payload');
const TARGET = 'xps.crypto.hash.sha256';

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hotpatch-approval-cli-'));
  spec = `file:${join(dir, 'store')}`;
  const entries: Record<string, unknown> = {};
  for (const [name, alg] of [
    ['alice', 'ed25519'],
    ['bob', 'ml-dsa-65'],
  ] as const) {
    const r = hotpatch(['keygen', '--alg', alg, '--out', join(dir, 'keys'), '--name', name, '--json']);
    assert.equal(r.status, 0, r.stderr);
    Object.assign(entries, r.json?.trust_entry);
  }
  approversFile = join(dir, 'approvers.json');
  await writeFile(approversFile, JSON.stringify({ keys: entries, quorum: { threshold: 2 } }));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const key = (name: string): string => join(dir, 'keys', `${name}.key`);

test('propose prints a stable proposal id; proposing again finds the same open proposal', () => {
  const args = ['propose', '--store', spec, '--patch', 'fix-cli', '--target', TARGET, '--version', '1.0.1', '--payload-hash', HASH, '--ttl', '1h'];
  const human = hotpatch(args);
  assert.equal(human.status, 0, human.stderr);
  const id = human.stdout.split('\n')[0]!;
  assert.match(id, /^p-[0-9a-f]{32}$/);
  const again = hotpatch([...args, '--json']);
  assert.equal(again.status, 0, again.stderr);
  assert.deepEqual([again.json?.ok, again.json?.id, again.json?.outcome], [true, id, 'existing']);
  // The hex case does not matter: the same activation, the same proposal.
  const upper = hotpatch([...args.slice(0, -4), '--payload-hash', `sha256:${HASH.slice(7).toUpperCase()}`, '--json']);
  assert.equal(upper.json?.id, id);
});

test('approve signs and stores a vote once; proposals shows what counts against an approvers list; an agent then approves', async () => {
  const proposed = hotpatch(['propose', '--store', spec, '--patch', 'fix-rt', '--target', TARGET, '--version', '2.0.0', '--payload-hash', HASH, '--json']);
  const id = proposed.json?.id as string;
  assert.equal(proposed.json?.outcome, 'created');

  const voted = hotpatch(['approve', '--store', spec, '--proposal', id, '--key', key('alice'), '--json']);
  assert.equal(voted.status, 0, voted.stderr);
  assert.deepEqual([voted.json?.keyid, voted.json?.alg, voted.json?.outcome], ['alice', 'ed25519', 'cast']);
  const twice = hotpatch(['approve', '--store', spec, '--proposal', id, '--key', key('alice'), '--json']);
  assert.deepEqual([twice.status, twice.json?.outcome], [0, 'already']);

  const listed = hotpatch(['proposals', '--store', spec, '--approvers', approversFile, '--json']);
  assert.equal(listed.status, 0, listed.stderr);
  const row = (listed.json?.proposals as Record<string, unknown>[]).find((p) => p.id === id)!;
  assert.deepEqual(
    [row.patchId, row.version, row.status, row.votes, row.counted, row.required, row.approved],
    ['fix-rt', '2.0.0', 'open', 1, ['alice'], 2, false],
  );
  const human = hotpatch(['proposals', '--store', spec, '--approvers', approversFile]);
  assert.match(human.stdout, new RegExp(`${id}  fix-rt ${TARGET} 2\\.0\\.0  open until \\S+  1 vote\\(s\\), 1 of 2 counting\\n`));

  // An agent waiting for this activation is approved once bob (ML-DSA-65) votes from the CLI.
  const store = await EmbeddedStore.open(join(dir, 'store'), { pollMs: 20 });
  try {
    const approval = new DistributedApproval({
      consensus: new StoreConsensus(store),
      approvers: parseApprovers(await readFile(approversFile)),
      waitMs: 20_000,
      pollMs: 100,
    });
    const waiting = approval.waitForQuorum({ patchId: 'fix-rt', target: TARGET, version: '2.0.0', payloadHash: HASH });
    const bob = hotpatch(['approve', '--store', spec, '--proposal', id, '--key', key('bob'), '--json']);
    assert.equal(bob.status, 0, bob.stderr);
    assert.deepEqual(await waiting, { proposalId: id, approvedBy: ['alice', 'bob'], required: 2 });
  } finally {
    await store.close();
  }
  const final = hotpatch(['proposals', '--store', spec, '--approvers', approversFile, '--json']);
  const done = (final.json?.proposals as Record<string, unknown>[]).find((p) => p.id === id)!;
  assert.deepEqual([done.counted, done.approved], [['alice', 'bob'], true]);
});

test('approve refuses an unknown or expired proposal (exit 1); bad flags and files are usage errors (exit 2)', async () => {
  const unknown = hotpatch(['approve', '--store', spec, '--proposal', `p-${'0'.repeat(32)}`, '--key', key('alice'), '--json']);
  assert.deepEqual([unknown.status, unknown.json?.code], [1, 'NOT_FOUND']);
  assert.match(unknown.stderr, /no proposal p-0+ in the store/);

  const store = await EmbeddedStore.open(join(dir, 'store'));
  const old = newProposal(
    { patchId: 'fix-old', target: TARGET, version: '1.0.0', payloadHash: HASH },
    { now: Date.now() - 7_200_000, ttlMs: 3_600_000, proposer: 'test' },
  );
  try {
    assert.equal(await new StoreConsensus(store).propose(old), true);
  } finally {
    await store.close();
  }
  const expired = hotpatch(['approve', '--store', spec, '--proposal', old.id, '--key', key('alice'), '--json']);
  assert.deepEqual([expired.status, expired.json?.code], [1, 'EXPIRED']);
  const listed = hotpatch(['proposals', '--store', spec, '--json']);
  assert.equal((listed.json?.proposals as Record<string, unknown>[]).find((p) => p.id === old.id)?.status, 'expired');

  const usage: string[][] = [
    ['approve', '--store', spec, '--key', key('alice')],
    ['approve', '--store', spec, '--proposal', 'nope', '--key', key('alice')],
    ['approve', '--store', spec, '--proposal', old.id, '--key', join(dir, 'missing.key')],
    ['propose', '--store', 'zk://x:1', '--patch', 'a', '--target', TARGET, '--version', '1.0.0', '--payload-hash', HASH],
    ['propose', '--store', spec, '--patch', 'a', '--target', TARGET, '--version', '1.0.0', '--payload-hash', HASH, '--ttl', 'forever'],
    ['propose', '--store', spec, '--patch', 'a', '--target', TARGET, '--version', 'v1', '--payload-hash', HASH],
    ['propose', '--store', spec, '--patch', 'a', '--target', TARGET, '--version', '1.0.0', '--payload-hash', 'md5'],
    ['proposals', '--store', spec, '--approvers', join(dir, 'keys', 'alice.pub')],
    ['proposals', '--store', spec, '--prefix', 'relative'],
  ];
  for (const args of usage) {
    const r = hotpatch([...args, '--json']);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.equal(r.json?.ok, false);
  }
});

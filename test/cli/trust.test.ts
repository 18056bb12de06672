/*
 * hotpatch trust: stores built and edited only by these commands parse with parseTrustStore
 * and serve hotpatch verify; every edit that would leave an unusable store is refused with
 * nothing written; rotation goes through the library's rotateTrustStore.
 */
import assert from 'node:assert/strict';
import { readFile, readdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { parseTrustStore } from '../../src/verification/index.js';
import { hotpatch, type CliResult } from './run-cli.js';

let dir: string;
let keys: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hotpatch-trust-'));
  keys = join(dir, 'keys');
  for (const [name, alg] of [
    ['a', 'ed25519'],
    ['b', 'ecdsa-p256-sha256'],
    ['c', 'ed25519'],
    ['pq', 'ml-dsa-65'],
    ['ci', 'ed25519'],
  ]) {
    const r = hotpatch(['keygen', '--alg', alg!, '--out', keys, '--name', name!]);
    assert.equal(r.status, 0, r.stderr);
  }
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const pub = (name: string): string => join(keys, `${name}.pub`);
const key = (name: string): string => join(keys, `${name}.key`);
const show = (r: CliResult): string => `exit ${r.status}\n${r.stdout}\n${r.stderr}`;

function ok(args: string[]): CliResult {
  const r = hotpatch([...args, '--json']);
  assert.equal(r.status, 0, `${args.join(' ')}: ${show(r)}`);
  assert.equal(r.json?.ok, true);
  return r;
}

async function packSigned(repo: string, id: string, signers: string[]): Promise<void> {
  const payload = join(dir, `${id}.mjs`);
  await writeFile(payload, `export const api = { id: ${JSON.stringify(id)} };\n`);
  ok(['pack', '--repo', repo, '--id', id, '--target', 'xps.crypto.hash.sha256', '--version', '1.0.0', '--type', 'esm', '--payload', payload]);
  for (const s of signers) ok(['sign', '--repo', repo, '--id', id, '--key', key(s)]);
}

test('a store built only by trust init, add-key and set-threshold parses, and verify reads "2 keys, threshold 2 of 3 trusted"', async () => {
  const file = join(dir, 'built.json');
  const init = ok(['trust', 'init', '--out', file, '--public-key', pub('a'), '--public-key', `bee=${pub('b')}`]);
  assert.deepEqual((init.json?.store as { threshold: number }).threshold, 2, 'default threshold: every key given');
  ok(['trust', 'add-key', '--trust', file, '--public-key', pub('pq'), '--targets', 'xps.crypto.*,xps.demo.*']);
  const set = ok(['trust', 'set-threshold', '--trust', file, '2']);
  assert.match(String(set.json?.message), /threshold 2 → 2/);

  const store = parseTrustStore(await readFile(file));
  assert.deepEqual([...store.keys.keys()], ['a', 'bee', 'pq']);
  assert.deepEqual(
    [...store.keys.values()].map((k) => k.key.alg),
    ['ed25519', 'ecdsa-p256-sha256', 'ml-dsa-65'],
  );
  assert.deepEqual(store.keys.get('pq')!.targets, ['xps.crypto.*', 'xps.demo.*']);
  assert.equal(store.threshold, 2);
  assert.equal(store.version, 1);

  const repo = join(dir, 'repo-built');
  await packSigned(repo, 'p1', ['a']);
  ok(['sign', '--repo', repo, '--id', 'p1', '--key', key('b'), '--keyid', 'bee']);
  const human = hotpatch(['verify', '--repo', repo, '--id', 'p1', '--trust', file]);
  assert.equal(human.status, 0, show(human));
  assert.match(human.stdout, /^signed by: a, bee \(2 keys, threshold 2 of 3 trusted\)$/m);
  const json = ok(['verify', '--repo', repo, '--id', 'p1', '--trust', file]);
  assert.equal(json.json?.threshold, 2);
  assert.equal(json.json?.trusted, 3);

  // One of the two signers removed: its signature is now by an unknown key, and the same patch
  // no longer verifies (exit 1).
  ok(['trust', 'remove-key', '--trust', file, '--id', 'a']);
  const after = hotpatch(['verify', '--repo', repo, '--id', 'p1', '--trust', file, '--json']);
  assert.equal(after.status, 1, show(after));
  assert.equal(after.json?.code, 'UNTRUSTED_KEY');
  assert.match(String(after.json?.message), /^signed by 1 of 2 required keys/);
});

test('edits that would leave an unusable store are refused (exit 2) and leave the file byte for byte, with no temp file', async () => {
  const sub = await mkdtemp(join(dir, 'refusals-'));
  const file = join(sub, 'trust.json');
  ok(['trust', 'init', '--out', file, '--public-key', pub('a'), '--public-key', pub('b'), '--threshold', '2']);
  const before = await readFile(file);
  await writeFile(join(sub, 'garbage.pub'), 'not a key\n');
  const refusals: [string[], RegExp][] = [
    [['trust', 'set-threshold', '--trust', file, '3'], /threshold 3 is above the 2 distinct key\(s\)/],
    [['trust', 'set-threshold', '--trust', file, '0'], /must be a whole number of at least 1/],
    [['trust', 'set-threshold', '--trust', file], /takes one number N, got none/],
    [['trust', 'remove-key', '--trust', file, '--id', 'a'], /removing a leaves 1 distinct key\(s\), below the threshold 2/],
    [['trust', 'remove-key', '--trust', file, '--id', 'nobody'], /has no key nobody/],
    [['trust', 'add-key', '--trust', file, '--public-key', pub('c'), '--id', 'a'], /already has a key a/],
    [['trust', 'add-key', '--trust', file, '--public-key', pub('a'), '--id', 'a2'], /already in the trust store as a/],
    [['trust', 'add-key', '--trust', file, '--public-key', key('c'), '--id', 'c'], /is a private key/],
    [['trust', 'add-key', '--trust', file, '--public-key', join(sub, 'garbage.pub')], /garbage\.pub/],
    [['trust', 'add-key', '--trust', file, '--public-key', pub('c'), '--targets', 'bad pattern'], /cannot be used: .*targets/],
    [['trust', 'add-key', '--trust', file, '--public-key', pub('c'), '--id', '../x'], /must be 1-128 of/],
    [['trust', 'init', '--out', file, '--public-key', pub('c')], /already exists/],
    [['trust', 'init', '--out', join(sub, 'new.json'), '--public-key', pub('c'), '--threshold', '2'], /above the 1 key\(s\) given/],
    [['trust', 'init', '--out', join(sub, 'new.json'), '--public-key', pub('c'), '--public-key', `c2=${pub('c')}`], /are the same public key/],
    [['trust', 'show', '--trust', file, '--id', 'a'], /trust show does not take --id/],
  ];
  for (const [args, message] of refusals) {
    const r = hotpatch([...args, '--json']);
    assert.equal(r.status, 2, `${args.join(' ')}: ${show(r)}`);
    assert.equal(r.json?.ok, false);
    assert.match(String(r.json?.message), message, args.join(' '));
  }
  assert.deepEqual(await readFile(file), before);
  assert.deepEqual((await readdir(sub)).sort(), ['garbage.pub', 'trust.json']);
});

test('remove-key also takes the key out of the rules and the root that list it, and refuses when a rule could not be met', async () => {
  const file = join(dir, 'rules.json');
  const pem = async (n: string): Promise<string> => readFile(pub(n), 'utf8');
  const doc = {
    version: 3,
    keys: {
      a: { alg: 'ed25519', public_key: await pem('a') },
      b: { alg: 'ecdsa-p256-sha256', public_key: await pem('b') },
      c: { alg: 'ed25519', public_key: await pem('c') },
    },
    threshold: 1,
    rules: [
      { targets: ['xps.crypto.*'], threshold: 1, keys: ['a', 'c'] },
      { targets: ['xps.db.*'], threshold: 2, keys: ['b', 'c'] },
    ],
    root: { keys: ['a', 'b', 'c'], threshold: 2 },
  };
  await writeFile(file, JSON.stringify(doc));
  const refused = hotpatch(['trust', 'remove-key', '--trust', file, '--id', 'c', '--json']);
  assert.equal(refused.status, 2, show(refused));
  assert.match(String(refused.json?.message), /rules\[1\]\.threshold is 2 but only 1 distinct keys could sign/);
  const removed = ok(['trust', 'remove-key', '--trust', file, '--id', 'a', '--bump-version']);
  assert.match(String(removed.json?.message), /removed a \(also from rules\[0\], root\)/);
  const store = parseTrustStore(await readFile(file));
  assert.equal(store.version, 4);
  assert.deepEqual(
    store.rules.map((r) => r.keys),
    [['c'], ['b', 'c']],
  );
  assert.deepEqual(store.root, { keys: ['b', 'c'], threshold: 2 });
});

test('trust sign and trust rotate install the next store only when a threshold of the old root and of the new one signed it', async () => {
  const current = join(dir, 'current.json');
  const next = join(dir, 'next.json');
  const envelope = join(dir, 'next.dsse.json');
  ok(['trust', 'init', '--out', current, '--public-key', pub('a'), '--public-key', pub('b'), '--threshold', '2']);
  const original = await readFile(current);
  // The next store: a leaves, c joins, threshold stays 2, version 2.
  await writeFile(next, original);
  ok(['trust', 'add-key', '--trust', next, '--public-key', pub('c')]);
  ok(['trust', 'remove-key', '--trust', next, '--id', 'a', '--bump-version']);

  const first = ok(['trust', 'sign', '--trust', next, '--key', key('a'), '--envelope', envelope]);
  assert.match(first.stderr, /a is not a key of .*next\.json/);
  ok(['trust', 'sign', '--trust', next, '--key', key('b'), '--envelope', envelope]);
  // Old root: a and b (2 of 2). New root: only b so far (1 of 2): refused, nothing changes.
  const early = hotpatch(['trust', 'rotate', '--trust', current, '--envelope', envelope, '--json']);
  assert.equal(early.status, 1, show(early));
  assert.equal(early.json?.code, 'THRESHOLD_NOT_MET');
  assert.match(String(early.json?.message), /of the new store/);
  assert.deepEqual(await readFile(current), original);

  // A key that is not the c of the next store, signing as c, is refused; so is another store's bytes.
  const wrongKey = hotpatch(['trust', 'sign', '--trust', next, '--key', key('a'), '--keyid', 'c', '--envelope', envelope, '--json']);
  assert.equal(wrongKey.status, 2, show(wrongKey));
  assert.match(String(wrongKey.json?.message), /is not the key c of/);
  const wrongBytes = hotpatch(['trust', 'sign', '--trust', current, '--key', key('a'), '--envelope', envelope, '--json']);
  assert.equal(wrongBytes.status, 2, show(wrongBytes));
  assert.match(String(wrongBytes.json?.message), /signs other trust store bytes/);

  const signed = ok(['trust', 'sign', '--trust', next, '--key', key('c'), '--envelope', envelope]);
  assert.deepEqual(signed.json?.signatures, ['a', 'b', 'c']);
  const rotated = ok(['trust', 'rotate', '--trust', current, '--envelope', envelope]);
  assert.equal(rotated.json?.from, 1);
  assert.equal(rotated.json?.to, 2);
  assert.deepEqual(await readFile(current), await readFile(next), 'installed byte for byte as signed');
  const store = parseTrustStore(await readFile(current));
  assert.deepEqual([...store.keys.keys()], ['b', 'c']);

  // The same envelope again is a downgrade to the same version: refused.
  const again = hotpatch(['trust', 'rotate', '--trust', current, '--envelope', envelope, '--json']);
  assert.equal(again.status, 1, show(again));
  assert.equal(again.json?.code, 'DOWNGRADE');

  // The rotated store serves verify: b and c sign, a no longer counts.
  const repo = join(dir, 'repo-rotated');
  await packSigned(repo, 'r1', ['b', 'c']);
  const v = ok(['verify', '--repo', repo, '--id', 'r1', '--trust', current]);
  assert.deepEqual(v.json?.signers, ['b', 'c']);
  await packSigned(repo, 'r2', ['a', 'b']);
  const old = hotpatch(['verify', '--repo', repo, '--id', 'r2', '--trust', current, '--json']);
  assert.equal(old.status, 1, show(old));
});

test('remove-key also takes the key out of the fleet and controllers roles, refuses naming the role it would leave unusable, and show prints both roles', async () => {
  const file = join(dir, 'roles.json');
  const pem = async (n: string): Promise<string> => readFile(pub(n), 'utf8');
  const doc = {
    version: 1,
    keys: {
      a: { alg: 'ed25519', public_key: await pem('a') },
      b: { alg: 'ecdsa-p256-sha256', public_key: await pem('b') },
      c: { alg: 'ed25519', public_key: await pem('c') },
      // The patch signer: role keys never count toward the store-wide threshold.
      ci: { alg: 'ed25519', public_key: await pem('ci') },
    },
    threshold: 1,
    fleet: { keys: ['a', 'b'], threshold: 2, stopThreshold: 1 },
    controllers: { keys: ['b', 'c'] },
  };
  await writeFile(file, JSON.stringify(doc));

  const shown = hotpatch(['trust', 'show', '--trust', file]);
  assert.equal(shown.status, 0, show(shown));
  assert.match(shown.stdout, /^ {2}fleet: 2 of a, b sign a rollout or a resume; 1 a pause or an abort$/m);
  assert.match(shown.stdout, /^ {2}controllers: b, c \(each signs the states it writes alone\)$/m);
  const shownJson = ok(['trust', 'show', '--trust', file]);
  const summary = shownJson.json?.store as { fleet: unknown; controllers: unknown };
  assert.deepEqual(summary.fleet, { keys: ['a', 'b'], threshold: 2, stopThreshold: 1 });
  assert.deepEqual(summary.controllers, { keys: ['b', 'c'] });

  // a is an operator the fleet's threshold needs: refused, naming the role, nothing written.
  const before = await readFile(file);
  const refused = hotpatch(['trust', 'remove-key', '--trust', file, '--id', 'a', '--json']);
  assert.equal(refused.status, 2, show(refused));
  assert.match(String(refused.json?.message), /^removing a leaves the fleet role 1 distinct key\(s\), below its threshold 2/);
  assert.deepEqual(await readFile(file), before);

  // c is one controller of two: it leaves the role with the key.
  const removed = ok(['trust', 'remove-key', '--trust', file, '--id', 'c']);
  assert.match(String(removed.json?.message), /removed c \(also from controllers\)/);
  assert.deepEqual(parseTrustStore(await readFile(file)).controllers, { keys: ['b'] });

  // b is now the only controller: removing it would leave no controller agents listen to.
  await writeFile(file, JSON.stringify({ ...JSON.parse(await readFile(file, 'utf8')), fleet: { keys: ['a', 'b'], threshold: 1 } }));
  const last = hotpatch(['trust', 'remove-key', '--trust', file, '--id', 'b', '--json']);
  assert.equal(last.status, 2, show(last));
  assert.match(String(last.json?.message), /^b is the only key of the controllers role/);

  // With a second controller, b goes from both roles.
  ok(['trust', 'add-key', '--trust', file, '--public-key', pub('pq')]);
  await writeFile(file, JSON.stringify({ ...JSON.parse(await readFile(file, 'utf8')), controllers: { keys: ['b', 'pq'] } }));
  const both = ok(['trust', 'remove-key', '--trust', file, '--id', 'b']);
  assert.match(String(both.json?.message), /removed b \(also from fleet, controllers\)/);
  const store = parseTrustStore(await readFile(file));
  assert.deepEqual(store.fleet, { keys: ['a'], threshold: 1, stopThreshold: 1 });
  assert.deepEqual(store.controllers, { keys: ['pq'] });
});

test('the agents role: show prints it, remove-key takes an agent key out of it, and refuses to remove its last key', async () => {
  const file = join(dir, 'agents-role.json');
  const pem = async (n: string): Promise<string> => readFile(pub(n), 'utf8');
  await writeFile(
    file,
    JSON.stringify({
      version: 1,
      keys: {
        a: { alg: 'ed25519', public_key: await pem('a') },
        b: { alg: 'ecdsa-p256-sha256', public_key: await pem('b') },
        c: { alg: 'ed25519', public_key: await pem('c') },
        pq: { alg: 'ml-dsa-65', public_key: await pem('pq') },
      },
      threshold: 2,
      agents: { keys: ['c', 'pq'] },
    }),
  );
  const shown = hotpatch(['trust', 'show', '--trust', file]);
  assert.equal(shown.status, 0, show(shown));
  assert.match(shown.stdout, /^ {2}agents: c, pq \(each signs its own reports, and nothing else\)$/m);
  assert.deepEqual((ok(['trust', 'show', '--trust', file]).json?.store as { agents: unknown }).agents, { keys: ['c', 'pq'] });

  // The store-wide threshold (2) counts a and b only: an agent's key never helps reach it.
  const removed = ok(['trust', 'remove-key', '--trust', file, '--id', 'c']);
  assert.match(String(removed.json?.message), /removed c \(also from agents\)/);
  assert.deepEqual(parseTrustStore(await readFile(file)).agents, { keys: ['pq'] });
  const before = await readFile(file);
  const last = hotpatch(['trust', 'remove-key', '--trust', file, '--id', 'pq', '--json']);
  assert.equal(last.status, 2, show(last));
  assert.match(String(last.json?.message), /^pq is the only key of the agents role/);
  const below = hotpatch(['trust', 'remove-key', '--trust', file, '--id', 'a', '--json']);
  assert.equal(below.status, 2, show(below));
  assert.match(String(below.json?.message), /leaves 1 distinct key\(s\), below the threshold 2/);
  assert.deepEqual(await readFile(file), before);
});

test('set-role sets the fleet, controllers and agents roles (--keys replaces), refuses what could not be used, and writes nothing then', async () => {
  const sub = await mkdtemp(join(dir, 'set-role-'));
  const file = join(sub, 'trust.json');
  ok(['trust', 'init', '--out', file, '--public-key', pub('a'), '--public-key', pub('b'), '--public-key', pub('c'), '--threshold', '1']);
  ok(['trust', 'add-key', '--trust', file, '--public-key', pub('pq'), '--id', 'agent-1']);

  const fleet = ok(['trust', 'set-role', 'fleet', '--trust', file, '--keys', 'a,b', '--threshold', '2', '--stop-threshold', '1']);
  assert.match(String(fleet.json?.message), /: fleet role set: 2 of a, b sign a rollout or a resume; 1 a pause or an abort; now version 1,/);
  assert.deepEqual((fleet.json?.store as { fleet: unknown }).fleet, { keys: ['a', 'b'], threshold: 2, stopThreshold: 1 });
  // --keys replaces the role's keys; without --stop-threshold a stop needs --threshold keys too.
  const replaced = ok(['trust', 'set-role', 'fleet', '--trust', file, '--keys', 'b, c', '--threshold', '1', '--bump-version']);
  assert.match(String(replaced.json?.message), /fleet role replaced: 1 of b, c sign a rollout or a resume; 1 a pause or an abort; now version 2,/);
  ok(['trust', 'set-role', 'controllers', '--trust', file, '--keys', 'c']);
  const agents = hotpatch(['trust', 'set-role', 'agents', '--trust', file, '--keys', 'agent-1']);
  assert.equal(agents.status, 0, show(agents));
  assert.match(agents.stdout, /: agents role set: agent-1; now version 2,/);

  const store = parseTrustStore(await readFile(file));
  assert.equal(store.version, 2);
  assert.equal(store.threshold, 1);
  assert.deepEqual(store.fleet, { keys: ['b', 'c'], threshold: 1, stopThreshold: 1 });
  assert.deepEqual(store.controllers, { keys: ['c'] });
  assert.deepEqual(store.agents, { keys: ['agent-1'] });
  const shown = hotpatch(['trust', 'show', '--trust', file]);
  assert.match(shown.stdout, /^ {2}fleet: 1 of b, c sign a rollout or a resume; 1 a pause or an abort$/m);

  const before = await readFile(file);
  const refusals: [string[], RegExp][] = [
    [['trust', 'set-role', 'fleet', '--trust', file, '--keys', 'a,b'], /set-role fleet needs --threshold N/],
    [['trust', 'set-role', 'fleet', '--trust', file, '--keys', 'a,b', '--threshold', '3'], /--threshold 3 is above the 2 distinct key\(s\) of the fleet role/],
    [
      ['trust', 'set-role', 'fleet', '--trust', file, '--keys', 'a,b', '--threshold', '1', '--stop-threshold', '2'],
      /--stop-threshold 2 is above --threshold 1/,
    ],
    [['trust', 'set-role', 'fleet', '--trust', file, '--keys', 'a,b', '--threshold', '0'], /--threshold must be a whole number of at least 1/],
    [['trust', 'set-role', 'fleet', '--trust', file, '--keys', 'a,nobody', '--threshold', '1'], /has no key nobody/],
    [['trust', 'set-role', 'fleet', '--trust', file, '--keys', 'a,agent-1', '--threshold', '1'], /cannot be used: .*agent-1 is an agent's key/],
    [['trust', 'set-role', 'controllers', '--trust', file, '--keys', ''], /--keys needs a value/],
    [['trust', 'set-role', 'controllers', '--trust', file, '--keys', ' '], /--keys names no key: a role needs at least one/],
    [['trust', 'set-role', 'controllers', '--trust', file], /--keys names no key/],
    [['trust', 'set-role', 'controllers', '--trust', file, '--keys', 'a,,b'], /--keys takes key ids separated by commas/],
    [['trust', 'set-role', 'controllers', '--trust', file, '--keys', 'a,a'], /--keys names a twice/],
    [['trust', 'set-role', 'controllers', '--trust', file, '--keys', 'a', '--threshold', '1'], /set-role controllers does not take --threshold/],
    [['trust', 'set-role', 'agents', '--trust', file, '--keys', 'c'], /cannot be used/],
    [['trust', 'set-role', 'root', '--trust', file, '--keys', 'a'], /takes one role \(fleet, controllers, agents, index\), got "root"/],
    [['trust', 'set-role', '--trust', file, '--keys', 'a'], /takes one role \(fleet, controllers, agents, index\), got none/],
  ];
  for (const [args, message] of refusals) {
    const r = hotpatch([...args, '--json']);
    assert.equal(r.status, 2, `${args.join(' ')}: ${show(r)}`);
    assert.equal(r.json?.ok, false);
    assert.match(String(r.json?.message), message, args.join(' '));
  }
  assert.deepEqual(await readFile(file), before);
  assert.deepEqual(await readdir(sub), ['trust.json']);

  const help = hotpatch(['trust', '--help']);
  assert.match(help.stdout, /^hotpatch trust set-role +\(fleet --threshold N \[--stop-threshold N\] \| controllers \| agents \|$/m);
  assert.match(help.stdout, /^ +index --threshold N\) --trust FILE --keys ID,… \[--bump-version\] \[--json\]$/m);
});

test('set-role index sets the keys that sign repository indexes and their threshold; they stop counting for patches; removing one below the threshold is refused', async () => {
  const sub = await mkdtemp(join(dir, 'set-role-index-'));
  const file = join(sub, 'trust.json');
  ok(['trust', 'init', '--out', file, '--public-key', pub('a'), '--public-key', pub('b'), '--public-key', pub('c'), '--threshold', '1']);
  const set = ok(['trust', 'set-role', 'index', '--trust', file, '--keys', 'b,c', '--threshold', '2']);
  assert.match(String(set.json?.message), /index role set: 2 of b, c sign a repository index/);
  const store = parseTrustStore(await readFile(file));
  assert.deepEqual(store.index, { keys: ['b', 'c'], threshold: 2 });
  assert.deepEqual(store.root.keys, ['a']);
  assert.match(hotpatch(['trust', 'show', '--trust', file]).stdout, /^ {2}index: 2 of b, c sign a repository index$/m);
  const before = await readFile(file);
  for (const [args, message] of [
    [['trust', 'set-role', 'index', '--trust', file, '--keys', 'b'], /set-role index needs --threshold N/],
    [['trust', 'set-role', 'index', '--trust', file, '--keys', 'b', '--threshold', '2'], /above the 1 distinct key\(s\) of the index role/],
    [
      ['trust', 'set-role', 'index', '--trust', file, '--keys', 'a,b,c', '--threshold', '1'],
      /only 0 distinct keys outside the fleet, controllers, index and agents roles/,
    ],
    [['trust', 'remove-key', '--trust', file, '--id', 'c'], /leaves the index role below its threshold 2/],
  ] as [string[], RegExp][]) {
    const r = hotpatch([...args, '--json']);
    assert.equal(r.status, 2, `${args.join(' ')}: ${show(r)}`);
    assert.match(String(r.json?.message), message, args.join(' '));
  }
  assert.deepEqual(await readFile(file), before);
});

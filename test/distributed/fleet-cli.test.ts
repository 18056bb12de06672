/*
 * `hotpatch fleet` on the command line, in this process (runCli) over the embedded store:
 * rollout --repo takes the patch from its verified signed manifest, rollout --watch follows a
 * rollout to its end, history shows every state of every rollout, and a controller's key is
 * checked before the store is touched. The long-running commands as real processes are in
 * fleet-cli-process.test.ts; a real etcd cluster in fleet-cli-etcd.test.ts.
 */
import assert from 'node:assert/strict';
import { access, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, test } from 'node:test';
import { runCli } from '../../src/cli/main.js';
import { EmbeddedStore, abortRollout, createRollout, fleetKeys, getRollout, listRollouts, pauseRollout, type KvStore } from '../../src/distributed/index.js';
import { publishPatch, sha256Hex, signerOf as patchSigner } from '../support/patches.js';
import { CLI_TRUST, recordingMembers, writeCliFiles, type CliFiles } from './fleet-cli-members.js';
import { GOOD_SOURCE, KEYS, OPERATORS, T, cli, startController, testPrefix, waitFor } from './fleet-helpers.js';

let dir: string;
let repo: string;
let files: CliFiles;
const open = (): Promise<KvStore> => EmbeddedStore.open(dir, { pollMs: 25 });
const ops = (prefix: string) => ({ prefix, trust: CLI_TRUST, signers: OPERATORS });

before(async () => {
  const root = await mkdtemp(join(tmpdir(), 'hotpatch-fleet-cli-'));
  dir = join(root, 'store');
  repo = join(root, 'repo');
  await mkdir(repo);
  files = await writeCliFiles(root);
  await publishPatch(repo, 'cli-good-1', T, '1.0.1', GOOD_SOURCE);
  await publishPatch(repo, 'cli-good-2', T, '1.0.2', GOOD_SOURCE);
  await publishPatch(repo, 'cli-tampered', T, '1.0.3', GOOD_SOURCE);
  await writeFile(join(repo, 'cli-tampered.bin'), GOOD_SOURCE.replace('abc', 'abd'));
  // Signed by a key the trust store does not hold, under a key id it does not know.
  await publishPatch(repo, 'cli-stranger', T, '1.0.4', GOOD_SOURCE, { signers: [patchSigner('stranger', KEYS.outsider.privateKey)] });
});
after(async () => {
  await rm(join(dir, '..'), { recursive: true, force: true });
});

/** JSON lines of a --json run (the events, then the last line). */
const linesOf = (stdout: string): Record<string, unknown>[] =>
  stdout
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);

test('rollout --repo takes target, version and payload hash from the verified manifest, and --watch follows it to completed (exit 0)', async () => {
  const prefix = testPrefix('cli-repo-watch');
  const agents = await recordingMembers(open, prefix, [0, 1, 1]);
  const ctl = await startController(open, { controllerId: 'ctl-a', prefix, leaseTtlMs: 3000, trust: CLI_TRUST });
  try {
    await ctl.controller.whenLeading();
    const run = await cli([
      'fleet',
      'rollout',
      '--store',
      dir,
      '--prefix',
      prefix,
      '--id',
      'repo-1',
      '--repo',
      repo,
      '--patch',
      'cli-good-1',
      '--rings',
      '2',
      '--soak',
      '0',
      '--watch',
      ...files.signing,
    ]);
    assert.equal(run.status, 0, `${run.stdout}\n${run.stderr}`);
    const lines = linesOf(run.stdout);
    const last = lines.at(-1)!;
    assert.equal(last.ok, true);
    const rollout = last.rollout as { target: string; version: string; payloadHash: string; state: { status: string }; signers: string[] };
    assert.equal(rollout.state.status, 'completed');
    assert.equal(rollout.target, T);
    assert.equal(rollout.version, '1.0.1');
    assert.equal(rollout.payloadHash, `sha256:${sha256Hex(GOOD_SOURCE)}`);
    assert.deepEqual(rollout.signers, ['ops-alice', 'ops-bob']);

    // Every state once, in order, from the operators' first to the controller's last.
    const states = lines.filter((l) => l.event === 'rollout');
    assert.deepEqual(
      states.map((s) => s.seq),
      states.map((_, i) => i),
    );
    assert.deepEqual(states[0], { ...states[0], seq: 0, status: 'running', ring: 0, by: 'operator' });
    assert.deepEqual(states.at(-1), { ...states.at(-1), status: 'completed', by: 'ctl-a' });
    assert.ok(
      states.some((s) => s.status === 'running' && s.ring === 1 && s.by === 'ctl-a'),
      'ring 1 opened',
    );
    // Every agent was seen applying the rollout and promoting it, ring 0 before ring 1.
    const agentLines = lines.filter((l) => l.event === 'agent');
    for (const id of ['cli-agent-0', 'cli-agent-1', 'cli-agent-2']) {
      assert.ok(
        agentLines.some((l) => l.agent === id && l.phase === 'promoted' && l.version === '1.0.1'),
        `${id} promoted: ${JSON.stringify(agentLines)}`,
      );
    }
    const ring1Start = lines.findIndex((l) => l.event === 'agent' && l.ring === 1);
    const ring0Promoted = lines.findIndex((l) => l.event === 'agent' && l.ring === 0 && l.phase === 'promoted');
    assert.ok(ring0Promoted !== -1 && ring0Promoted < ring1Start, 'ring 0 promoted before ring 1 was seen working');

    const stored = await getRollout(ctl.store, 'repo-1', { prefix, trust: CLI_TRUST });
    assert.equal(stored.state.status, 'completed');
  } finally {
    await ctl.close();
    await agents.close();
  }
});

test('rollout --repo refuses flags that contradict the signed manifest, and a patch that does not verify, with nothing written', async () => {
  const prefix = testPrefix('cli-repo-refused');
  const good = `sha256:${sha256Hex(GOOD_SOURCE)}`;
  const base = ['fleet', 'rollout', '--store', dir, '--prefix', prefix, '--repo', repo, '--rings', '1', '--soak', '0', ...files.signing];
  const refusals: [string[], number, string, RegExp][] = [
    [['--patch', 'cli-good-1', '--version', '1.0.2'], 1, 'INVALID', /is version 1\.0\.1, not --version 1\.0\.2/],
    [
      ['--patch', 'cli-good-1', '--target', 'xps.crypto.hash.sha512'],
      1,
      'INVALID',
      /targets xps\.crypto\.hash\.sha256, not --target xps\.crypto\.hash\.sha512/,
    ],
    [['--patch', 'cli-good-1', '--payload-hash', `sha256:${'0'.repeat(64)}`], 1, 'HASH_MISMATCH', /has payload hash sha256:[0-9a-f]{64}, not --payload-hash/],
    [['--patch', 'cli-tampered'], 1, 'HASH_MISMATCH', /payload/],
    [['--patch', 'cli-stranger'], 1, 'UNTRUSTED_KEY', /./],
    [['--patch', 'cli-missing'], 3, 'NOT_FOUND', /cli-missing/],
    [['--patch', '../etc/passwd'], 2, 'INVALID', /not a valid patch id/],
  ];
  for (const [args, status, code, message] of refusals) {
    const r = await cli([...base, ...args]);
    assert.equal(r.status, status, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
    assert.equal(r.json.code, code, `${args.join(' ')}: ${String(r.json.message)}`);
    assert.match(String(r.json.message), message, args.join(' '));
  }
  // Flags that agree with the manifest are fine (the hash in upper case too).
  const agreeing = await cli([
    ...base,
    '--patch',
    'cli-good-2',
    '--id',
    'agreeing',
    '--target',
    T,
    '--version',
    '1.0.2',
    '--payload-hash',
    good.toUpperCase().replace('SHA256', 'sha256'),
  ]);
  assert.equal(agreeing.status, 0, agreeing.stderr);
  const store = await open();
  try {
    const { rollouts } = await listRollouts(store, { prefix, trust: CLI_TRUST });
    assert.deepEqual(
      rollouts.map((r) => r.id),
      ['agreeing'],
      'only the agreeing rollout was written',
    );
  } finally {
    await store.close();
  }
  // Without --repo the three flags are required: a usage error.
  const missing = await cli([
    'fleet',
    'rollout',
    '--store',
    dir,
    '--prefix',
    prefix,
    '--patch',
    'x',
    '--target',
    T,
    '--rings',
    '1',
    '--soak',
    '0',
    ...files.signing,
  ]);
  assert.equal(missing.status, 2);
  assert.match(String(missing.json.message), /--version is required/);
});

test('rollout --watch of a patch that fails in ring 0 ends when the rollout is rolled back: exit 1, CANARY_FAILED, every state shown', async () => {
  const prefix = testPrefix('cli-watch-fails');
  // Ring 0: one agent promotes, one fails; ring 1 must never be reached.
  const agents = await recordingMembers(open, prefix, [0, 0, 1], (id) => (id === 'cli-agent-1' ? 'failed' : 'promoted'));
  const ctl = await startController(open, { controllerId: 'ctl-b', prefix, leaseTtlMs: 3000, trust: CLI_TRUST });
  try {
    await ctl.controller.whenLeading();
    const run = await cli([
      'fleet',
      'rollout',
      '--store',
      dir,
      '--prefix',
      prefix,
      '--id',
      'fails-1',
      '--repo',
      repo,
      '--patch',
      'cli-good-1',
      '--rings',
      '2',
      '--soak',
      '0',
      '--watch',
      ...files.signing,
    ]);
    assert.equal(run.status, 1, `${run.stdout}\n${run.stderr}`);
    const lines = linesOf(run.stdout);
    const last = lines.at(-1)!;
    assert.equal(last.ok, false);
    assert.equal(last.code, 'CANARY_FAILED');
    assert.match(String(last.message), /^rollout fails-1 rolled-back at ring 0\/2/);
    assert.deepEqual(last.detail, { rollout: 'fails-1', status: 'rolled-back', ring: 0 });
    const statuses = lines.filter((l) => l.event === 'rollout').map((l) => l.status);
    assert.deepEqual(statuses, ['running', 'halted', 'rolling-back', 'rolled-back']);
    assert.ok(lines.some((l) => l.event === 'agent' && l.agent === 'cli-agent-1' && l.phase === 'failed' && /self-test failed/.test(String(l.reason))));
    assert.ok(!agents.orders.some((o) => o.startsWith('cli-agent-2 apply')), 'ring 1 never applied');
    assert.ok(agents.orders.includes('cli-agent-0 rollback fails-1'), 'the agent that promoted rolled back');
  } finally {
    await ctl.close();
    await agents.close();
  }
});

test('rollout --watch ends with the failing agent’s code when its report carries one: exit 1, SELF_TEST_FAILED', async () => {
  const prefix = testPrefix('cli-watch-self-test');
  const agents = await recordingMembers(open, prefix, [0, 1], (id) => (id === 'cli-agent-0' ? 'self-test-failed' : 'promoted'));
  const ctl = await startController(open, { controllerId: 'ctl-c', prefix, leaseTtlMs: 3000, trust: CLI_TRUST });
  try {
    await ctl.controller.whenLeading();
    const run = await cli([
      'fleet',
      'rollout',
      '--store',
      dir,
      '--prefix',
      prefix,
      '--id',
      'kat-1',
      '--repo',
      repo,
      '--patch',
      'cli-good-1',
      '--rings',
      '2',
      '--soak',
      '0',
      '--watch',
      ...files.signing,
    ]);
    assert.equal(run.status, 1, `${run.stdout}\n${run.stderr}`);
    const last = linesOf(run.stdout).at(-1)!;
    assert.equal(last.ok, false);
    assert.equal(last.code, 'SELF_TEST_FAILED');
    assert.match(
      String(last.message),
      /^rollout kat-1 rolled-back at ring 0\/2: agent cli-agent-0 \(ring 0\) failed cli-good-1: plan kat-1-plan failed \(SELF_TEST_FAILED\)/,
    );
  } finally {
    await ctl.close();
    await agents.close();
  }
});

test('rollout --watch does not believe another rollout’s signed document put under its key: {"event":"ignored"}, and it goes on following its own', async () => {
  const prefix = testPrefix('cli-watch-ignored');
  const keys = fleetKeys(prefix);
  const store = await open();
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (c: Buffer) => (out += c.toString()));
  stderr.on('data', (c: Buffer) => (err += c.toString()));
  const fields = ['--target', T, '--patch', 'cli-good-1', '--version', '1.0.1', '--payload-hash', `sha256:${sha256Hex(GOOD_SOURCE)}`];
  const args = ['fleet', 'rollout', '--store', dir, '--prefix', prefix, '--id', 'good-r', ...fields, '--rings', '1', '--soak', '0', '--watch'];
  // Another rollout, final (aborted: operators' signatures are enough); copied under good-r's key below.
  const spec = { id: 'bad-r', target: T, patchId: 'cli-good-1', version: '1.0.1', payloadHash: `sha256:${sha256Hex(GOOD_SOURCE)}`, rings: 1, soakMs: 0 };
  await createRollout(store, spec, ops(prefix));
  await abortRollout(store, 'bad-r', 'aborted elsewhere', ops(prefix));
  const watching = runCli([...args, ...files.signing, '--json'], { stdout, stderr });
  try {
    await waitFor('the watch to show good-r', () => out.includes('"event":"rollout"'));
    const original = await store.get(`${keys.rollouts}good-r`);
    await store.put(`${keys.rollouts}good-r`, (await store.get(`${keys.rollouts}bad-r`))!);
    await waitFor('the watch to ignore it', () => out.includes('"event":"ignored"'));
    assert.match(err, /warning: ignored .*good-r: rollout good-r as stored now is not believed: document id "bad-r" does not match its key/);
    // Still following good-r: put back, and really aborted, it ends with good-r's own outcome.
    await store.put(`${keys.rollouts}good-r`, original!);
    await abortRollout(store, 'good-r', 'stopped by the test', ops(prefix));
    const status = await watching;
    assert.equal(status, 1, `${out}\n${err}`);
    const lines = linesOf(out);
    const ignored = lines.filter((l) => l.event === 'ignored');
    assert.equal(ignored.length, 1);
    assert.deepEqual(ignored[0], { event: 'ignored', rollout: 'good-r', key: `${keys.rollouts}good-r`, error: 'document id "bad-r" does not match its key' });
    assert.ok(!lines.some((l) => l.event === 'rollout' && l.reason === 'aborted elsewhere'), 'bad-r’s state was never shown as good-r’s');
    const last = lines.at(-1)!;
    assert.equal(last.code, 'ABORTED');
    assert.match(String(last.message), /^rollout good-r aborted at ring 0\/1: stopped by the test/);
  } catch (error) {
    // Its reader gone, the watch stops (as `| head` stops it): the test does not hang on it.
    stdout.emit('error', Object.assign(new Error('reader gone'), { code: 'EPIPE' }));
    await watching.catch(() => undefined);
    throw new Error(`${(error as Error).message}\nstdout: ${out}\nstderr: ${err}`, { cause: error });
  } finally {
    await store.close();
  }
});

test('read-only and operator fleet commands on an embedded store that does not exist: exit 3, NOT_FOUND, nothing created', async () => {
  const root = await mkdtemp(join(tmpdir(), 'hotpatch-fleet-nostore-'));
  try {
    const missing = join(root, 'no-store');
    for (const spec of [`file:${missing}`, missing, `file://${missing}`]) {
      for (const args of [
        ['fleet', 'status', '--store', spec],
        ['fleet', 'status', '--store', spec, '--watch'],
        ['fleet', 'history', '--store', spec],
        ['fleet', 'pause', '--store', spec, '--rollout', 'r1', ...files.signing],
        ['fleet', 'abort', '--store', spec, '--rollout', 'r1', ...files.signing],
        ['fleet', 'rollout', '--store', spec, '--id', 'r1', '--repo', repo, '--patch', 'cli-good-1', '--rings', '1', '--soak', '0', ...files.signing],
      ]) {
        const run = await cli(args);
        assert.equal(run.status, 3, `${args.join(' ')}: ${run.stdout}\n${run.stderr}`);
        assert.equal(run.json.code, 'NOT_FOUND');
        assert.equal(run.json.message, `no fleet store at ${spec} (${missing} does not exist; hotpatch fleet controller creates it)`);
        await assert.rejects(access(missing), /ENOENT/, `${args.join(' ')} created ${missing}`);
      }
    }
    // A usage error is still a usage error (exit 2), before the store is looked at.
    const usage = await cli(['fleet', 'pause', '--store', missing, ...files.signing]);
    assert.equal(usage.status, 2);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test('history lists rollouts newest first with their spec signers and every state, verified or not', async () => {
  const prefix = testPrefix('cli-history');
  const store = await open();
  try {
    const spec = { target: T, patchId: 'cli-good-1', version: '1.0.1', payloadHash: `sha256:${sha256Hex(GOOD_SOURCE)}`, rings: 2, soakMs: 0 };
    let t = Date.now() - 60_000; // in the past: a spec dated in the future is refused
    const at = (): number => (t += 1000);
    await createRollout(store, { ...spec, id: 'hist-old' }, { ...ops(prefix), now: at });
    await pauseRollout(store, 'hist-old', 'change freeze', { ...ops(prefix), now: at, actor: 'alice@laptop' });
    const aborted = await cli([
      'fleet',
      'abort',
      '--store',
      dir,
      '--prefix',
      prefix,
      '--rollout',
      'hist-old',
      '--reason',
      'wrong build',
      '--trust',
      files.trust,
      '--key',
      files.alice,
    ]);
    assert.equal(aborted.status, 0, aborted.stderr);
    await createRollout(store, { ...spec, id: 'hist-new', patchId: 'cli-good-2', version: '1.0.2' }, { ...ops(prefix), now: at });

    const all = await cli(['fleet', 'history', '--store', dir, '--prefix', prefix, '--trust', files.trust]);
    assert.equal(all.status, 0, all.stderr);
    assert.equal(all.json.verified, true);
    type Item = {
      id: string;
      verified: boolean;
      error?: string;
      signers: string[];
      status: string;
      states: { seq: number; status: string; by: string; actor?: string; reason?: string }[];
    };
    const rollouts = all.json.rollouts as Item[];
    assert.deepEqual(
      rollouts.map((r) => [r.id, r.status, r.verified]),
      [
        ['hist-new', 'running', true],
        ['hist-old', 'aborted', true],
      ],
    );
    const old = rollouts[1]!;
    assert.deepEqual(old.signers, ['ops-alice', 'ops-bob']);
    assert.deepEqual(
      old.states.map((s) => [s.seq, s.status, s.by, s.reason]),
      [
        [0, 'running', 'operator', undefined],
        [1, 'paused', 'operator', 'change freeze'],
        [2, 'aborted', 'operator', 'wrong build'],
      ],
    );
    assert.match(String(old.states[2]!.actor), /@/, 'the current state says who the operator claims to be');

    const one = await cli(['fleet', 'history', '--store', dir, '--prefix', prefix, '--trust', files.trust, '--rollout', 'hist-old']);
    assert.deepEqual(
      (one.json.rollouts as Item[]).map((r) => r.id),
      ['hist-old'],
    );
    const newest = await cli(['fleet', 'history', '--store', dir, '--prefix', prefix, '--limit', '1']);
    assert.deepEqual(
      (newest.json.rollouts as Item[]).map((r) => [r.id, r.verified]),
      [['hist-new', false]],
    );
    assert.equal(newest.json.verified, false);
    assert.deepEqual((newest.json.rollouts as Item[])[0]!.signers, ['ops-alice', 'ops-bob'], 'unchecked: the key ids the envelope claims');
    assert.match(newest.json.message as string, /^1 rollout\(s\) of 2$/);

    // A store writer forges the old rollout's state: still listed, marked as not verifying, with why.
    const key = `${fleetKeys(prefix).rollouts}hist-old`;
    const stored = JSON.parse((await store.get(key))!) as { state: { signatures: { keyid: string; sig: string }[] } };
    stored.state.signatures = [{ keyid: 'ops-alice', sig: Buffer.alloc(64, 7).toString('base64') }];
    await store.put(key, JSON.stringify(stored));
    const forged = await cli(['fleet', 'history', '--store', dir, '--prefix', prefix, '--trust', files.trust]);
    const item = (forged.json.rollouts as Item[]).find((r) => r.id === 'hist-old')!;
    assert.equal(item.verified, false);
    assert.match(String(item.error), /signature|signed/i);
    assert.equal(item.states.length, 3, 'its states are still shown');

    const missing = await cli(['fleet', 'history', '--store', dir, '--prefix', prefix, '--rollout', 'nope']);
    assert.equal(missing.status, 3);
    assert.equal(missing.json.code, 'NOT_FOUND');
    assert.equal((await cli(['fleet', 'history', '--store', dir, '--limit', '0'])).status, 2);
    assert.equal((await cli(['fleet', 'history', '--store', dir, '--key', files.alice])).status, 2);
  } finally {
    await store.close();
  }
});

test('fleet controller refuses a key that is not one of the trust store’s controllers, with exit 2 and before the store is touched', async () => {
  const untouched = join(dir, '..', 'never-opened');
  const refusals: [string[], RegExp][] = [
    [['--id', 'ctl-x', '--trust', files.trust, '--key', files.alice], /ops-alice is not one of the controllers of .*\(ctl-a, ctl-b\)/],
    [['--id', 'ctl-x', '--trust', files.trust, '--key', `ctl-a=${files.ctlB}`], /is not the key ctl-a of/],
    [['--id', 'ctl-x', '--trust', files.trust, '--key', files.ctlA, '--key', files.ctlB], /takes one --key/],
    [['--id', 'operator', '--trust', files.trust, '--key', files.ctlA], /--id operator is reserved/],
    [['--id', '../x', '--trust', files.trust, '--key', files.ctlA], /not a valid patch id/],
    [['--id', 'ctl-x', '--trust', files.trust, '--key', files.ctlA, '--lease-ttl', 'soon'], /--lease-ttl must be a whole number/],
    [['--id', 'ctl-x', '--key', files.ctlA], /--trust is required/],
  ];
  for (const [args, message] of refusals) {
    const r = await cli(['fleet', 'controller', '--store', untouched, ...args]);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
    assert.match(String(r.json.message), message);
  }
  await assert.rejects(access(untouched), 'the store directory was never created');
  // A trust store without a controllers role names that.
  const bare = join(dir, '..', 'bare-trust.json');
  const doc = JSON.parse(await readFile(files.trust, 'utf8')) as Record<string, unknown>;
  delete doc.controllers;
  await writeFile(bare, JSON.stringify(doc));
  const noRole = await cli(['fleet', 'controller', '--store', untouched, '--id', 'c', '--trust', bare, '--key', files.ctlA]);
  assert.equal(noRole.status, 2);
  assert.match(String(noRole.json.message), /it has no controllers role/);
});

test('status --watch on a terminal redraws in place, and text from the store cannot drive the terminal; it ends when its reader goes away', async () => {
  const prefix = testPrefix('cli-status-tty');
  const store = await open();
  // What any store writer can put there: an agent report whose reason is a terminal escape.
  const agent = {
    agentId: 'tty-agent',
    ring: 0,
    targets: { [T]: { version: '1.0.0', phase: 'failed', health: 'unknown', reason: '\x1b[2Jgone\x07', updatedAt: new Date().toISOString() } },
  };
  await store.put(`${fleetKeys(prefix).agents}tty-agent`, JSON.stringify(agent));
  const terminal = Object.assign(new PassThrough(), { isTTY: true });
  const stderr = new PassThrough();
  let shown = '';
  const drawn: (() => void)[] = [];
  terminal.on('data', (c: Buffer) => {
    shown += c.toString();
    for (const d of drawn.splice(0)) d();
  });
  const drawnWith = async (text: string): Promise<void> => {
    while (!shown.includes(text)) await new Promise<void>((resolve) => drawn.push(resolve));
  };
  const run = runCli(['fleet', 'status', '--store', dir, '--prefix', prefix, '--watch'], { stdout: terminal, stderr });
  try {
    await drawnWith('ring 0: 1 agent(s)');
    await createRollout(
      store,
      { id: 'tty-1', target: T, patchId: 'cli-good-1', version: '1.0.1', payloadHash: `sha256:${sha256Hex(GOOD_SOURCE)}`, rings: 1, soakMs: 0 },
      ops(prefix),
    );
    await drawnWith('tty-1');
    const frames = shown.split('\x1b[H\x1b[2J');
    assert.equal(frames[0], '', 'every picture starts by clearing the screen');
    assert.equal(frames.length, 3, `two pictures: ${JSON.stringify(shown)}`);
    assert.match(frames[1]!, /tty-agent {2}xps\.crypto\.hash\.sha256 {2}1\.0\.0 \(built-in\) {2}failed {2}unknown {2}— \?\[2Jgone\?/);
    assert.equal(shown.replaceAll('\x1b[H\x1b[2J', '').includes('\x1b'), false, 'no escape from the store reaches the terminal');
  } finally {
    // The reader goes away (a closed pipe): the watch ends as an interrupt would, with its normal status.
    terminal.emit('error', Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }));
    assert.equal(await run, 0);
    await store.close();
  }
});

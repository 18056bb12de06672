/*
 * The long-running `hotpatch fleet` commands as real processes over the embedded store:
 * `fleet controller` (two of them: one leads and drives a rollout, the other waits; SIGTERM
 * hands over at once) and `fleet status --watch` (a picture per change, until SIGTERM).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { EmbeddedStore, createRollout, pauseRollout, type KvStore } from '../../src/distributed/index.js';
import { CLI_TRUST, recordingMembers, writeCliFiles, type CliFiles } from './fleet-cli-members.js';
import { CliProcess } from './fleet-cli-process.js';
import { OPERATORS, T, testPrefix } from './fleet-helpers.js';

let root: string;
let dir: string;
let files: CliFiles;
const open = (): Promise<KvStore> => EmbeddedStore.open(dir, { pollMs: 25 });
const ops = (prefix: string) => ({ prefix, trust: CLI_TRUST, signers: OPERATORS });
const spec = (id: string) => ({ id, target: T, patchId: 'proc-patch', version: '1.0.1', payloadHash: `sha256:${'ab'.repeat(32)}`, rings: 2, soakMs: 0 });

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'hotpatch-fleet-cli-proc-'));
  dir = join(root, 'store');
  files = await writeCliFiles(root);
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

test('fleet controller: the first leads and drives a rollout, the second says it stands by; SIGTERM stops the leader (exit 0) and the standby says it leads', async () => {
  const prefix = testPrefix('cli-controllers');
  const agents = await recordingMembers(open, prefix, [0, 1]);
  const controller = (id: string, key: string): CliProcess =>
    new CliProcess(id, [
      'fleet',
      'controller',
      '--store',
      dir,
      '--prefix',
      prefix,
      '--id',
      id,
      '--trust',
      files.trust,
      '--key',
      key,
      '--lease-ttl',
      '3000',
      '--json',
    ]);
  const a = controller('ctl-a', files.ctlA);
  let b: CliProcess | undefined;
  const store = await open();
  try {
    assert.deepEqual(await a.line('started', (l) => l.event === 'started'), { event: 'started', controller: 'ctl-a' });
    await a.line('leading', (l) => l.event === 'leading');
    b = controller('ctl-b', files.ctlB);
    const standby = await b.line('standby', (l) => l.event === 'standby');
    assert.deepEqual(standby, { event: 'standby', controller: 'ctl-b', leader: 'ctl-a' });

    await createRollout(store, spec('proc-1'), ops(prefix));
    const completed = await a.line('the rollout completed', (l) => l.event === 'transition' && l.to === 'completed');
    assert.deepEqual(completed, { ...completed, rollout: 'proc-1', from: 'running', ring: 2, by: 'ctl-a' });
    const transitions = a.lines.filter((l) => l.event === 'transition');
    assert.deepEqual(
      transitions.map((t) => [t.from, t.to, t.ring]),
      [
        ['running', 'running', 1],
        ['running', 'completed', 2],
      ],
    );
    assert.match(String(transitions[0]!.reason), /ring 0 passed/);

    const stopped = await a.stop('SIGTERM');
    assert.deepEqual(stopped, { code: 0, signal: null }, a.stderr);
    assert.deepEqual(a.lines.at(-1), { ok: true, code: 'OK', message: 'controller ctl-a stopped (SIGTERM)', event: 'stopped', controller: 'ctl-a' });
    // A resigned at once: B takes over without waiting out a lease.
    await b.line('leading', (l) => l.event === 'leading');
    assert.equal(b.lines.filter((l) => l.event === 'transition').length, 0, 'the standby wrote nothing while it stood by');
    assert.equal(a.lines.filter((l) => l.event === 'error').length, 0, a.stdout);

    assert.deepEqual(await b.stop('SIGINT'), { code: 0, signal: null }, b.stderr);
    assert.equal(b.lines.at(-1)!.event, 'stopped');
  } finally {
    a.kill('SIGKILL');
    b?.kill('SIGKILL');
    await store.close();
    await agents.close();
  }
});

test('fleet status --watch prints the fleet again on every change, one JSON object per change, until SIGTERM (exit 0)', async () => {
  const prefix = testPrefix('cli-status-watch');
  const store = await open();
  const watch = new CliProcess('status --watch', ['fleet', 'status', '--store', dir, '--prefix', prefix, '--trust', files.trust, '--watch', '--json']);
  try {
    const first = await watch.line('the first picture', (l) => l.event === 'status');
    assert.deepEqual(first.rollouts, []);
    assert.equal(first.verified, true);
    await createRollout(store, spec('watched-1'), ops(prefix));
    type Rollout = { id: string; state: { status: string } };
    await watch.line('the rollout running', (l) => l.event === 'status' && (l.rollouts as Rollout[]).some((r) => r.state.status === 'running'));
    await pauseRollout(store, 'watched-1', 'change freeze', ops(prefix));
    await watch.line('the rollout paused', (l) => l.event === 'status' && (l.rollouts as Rollout[]).some((r) => r.state.status === 'paused'));

    assert.deepEqual(await watch.stop('SIGTERM'), { code: 0, signal: null }, watch.stderr);
    const pictures = watch.lines.filter((l) => l.event === 'status');
    assert.equal(pictures.length, 3, `one picture per change, no repeats: ${watch.stdout}`);
    assert.deepEqual(watch.lines.at(-1), { ok: true, code: 'OK', message: 'stopped watching the fleet (3 change(s) shown)', changes: 3 });
  } finally {
    watch.kill('SIGKILL');
  }

  // For people, not on a terminal: one block per change.
  const human = new CliProcess('status --watch (text)', ['fleet', 'status', '--store', dir, '--prefix', prefix, '--watch']);
  try {
    await human.text('a first block', (s) => /fleet status at .*\n[^]*watched-1 .* paused/.test(s));
    await createRollout(store, { ...spec('watched-2'), target: 'xps.crypto.hash.sha512' }, ops(prefix));
    const text = await human.text('a second block', (s) => /watched-2/.test(s));
    assert.equal(text.match(/^fleet status at /gm)?.length, 2, text);
    assert.deepEqual(await human.stop('SIGINT'), { code: 0, signal: null }, human.stderr);
    assert.match(human.stdout, /stopped watching the fleet \(2 change\(s\) shown\)\n$/);
  } finally {
    human.kill('SIGKILL');
    await store.close();
  }
});

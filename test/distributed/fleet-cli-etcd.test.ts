/*
 * `hotpatch fleet` against a real 3-member etcd cluster: two `fleet controller` processes
 * elect a leader through etcd, and when the leader dies (SIGKILL: no resignation) the standby
 * takes over once its lease ends, says so, and drives the rollout; then, with 2 of the 3
 * members killed, every fleet command says the store has no quorum (exit 3, IO), naming the
 * members it tried.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { createRollout, type KvStore } from '../../src/distributed/index.js';
import { EtcdStore } from '../../src/distributed/etcd-store.js';
import { hotpatchAsync } from '../cli/run-cli.js';
import { startEtcdCluster, type EtcdCluster } from './etcd-cluster.js';
import { CLI_TRUST, recordingMembers, writeCliFiles, type CliFiles } from './fleet-cli-members.js';
import { CliProcess, etcdSpec } from './fleet-cli-process.js';
import { OPERATORS, T, testPrefix } from './fleet-helpers.js';

let cluster: EtcdCluster;
let keysDir: string;
let files: CliFiles;
const open = async (): Promise<KvStore> => new EtcdStore({ endpoints: cluster.endpoints });

before(async () => {
  cluster = await startEtcdCluster();
  keysDir = await mkdtemp(join(tmpdir(), 'hotpatch-fleet-cli-etcd-'));
  files = await writeCliFiles(keysDir);
});
after(async () => {
  await cluster?.stop();
  if (keysDir !== undefined) await rm(keysDir, { recursive: true, force: true });
});

test('etcd: the standby controller takes over from a killed leader and says so; without quorum every fleet command exits 3 naming the members', async () => {
  const prefix = testPrefix('cli-etcd');
  const store = etcdSpec(cluster.endpoints);
  const controller = (id: string, key: string): CliProcess =>
    new CliProcess(id, [
      'fleet',
      'controller',
      '--store',
      store,
      '--prefix',
      prefix,
      '--id',
      id,
      '--trust',
      files.trust,
      '--key',
      key,
      '--lease-ttl',
      '2000',
      '--json',
    ]);
  const agents = await recordingMembers(open, prefix, [0, 1]);
  const operator = await open();
  const a = controller('ctl-a', files.ctlA);
  let b: CliProcess | undefined;
  try {
    await a.line('leading', (l) => l.event === 'leading');
    b = controller('ctl-b', files.ctlB);
    assert.deepEqual(await b.line('standby', (l) => l.event === 'standby'), { event: 'standby', controller: 'ctl-b', leader: 'ctl-a' });

    // The leader dies without resigning: the standby leads once the leader's lease has expired in etcd.
    a.kill('SIGKILL');
    assert.equal((await a.exited).signal, 'SIGKILL');
    await b.line('leading', (l) => l.event === 'leading');
    await createRollout(
      operator,
      { id: 'etcd-cli-1', target: T, patchId: 'etcd-patch', version: '1.0.1', payloadHash: `sha256:${'cd'.repeat(32)}`, rings: 2, soakMs: 0 },
      { prefix, trust: CLI_TRUST, signers: OPERATORS },
    );
    const completed = await b.line('the rollout completed', (l) => l.event === 'transition' && l.to === 'completed');
    assert.equal(completed.by, 'ctl-b');
    assert.deepEqual(await b.stop('SIGTERM'), { code: 0, signal: null }, b.stderr);
    assert.equal(b.lines.at(-1)!.event, 'stopped');
  } finally {
    a.kill('SIGKILL');
    b?.kill('SIGKILL');
    await operator.close();
    await agents.close();
  }

  // Two of three members down: no quorum. Reads fail closed, and the commands say why.
  await Promise.all(cluster.members.slice(0, 2).map((m) => m.kill()));
  const [status, history, ctl] = await Promise.all([
    hotpatchAsync(['fleet', 'status', '--store', store, '--prefix', prefix, '--json']),
    hotpatchAsync(['fleet', 'history', '--store', store, '--prefix', prefix, '--json']),
    hotpatchAsync(['fleet', 'controller', '--store', store, '--prefix', prefix, '--id', 'ctl-a', '--trust', files.trust, '--key', files.ctlA, '--json']),
  ]);
  for (const [name, r] of Object.entries({ status, history, controller: ctl })) {
    assert.equal(r.status, 3, `${name}: ${r.stdout}${r.stderr}`);
    assert.equal(r.json?.code, 'IO', name);
    const message = String(r.json?.message);
    assert.match(message, /^the fleet store etcd:\/\/\S+ cannot be reached or has no quorum \(no answer from a majority of its members /, name);
    for (const endpoint of cluster.endpoints) assert.ok(message.includes(endpoint), `${name} names ${endpoint}: ${message}`);
    assert.match(r.stderr, /^hotpatch: IO: the fleet store .* has no quorum/m, name);
  }
});

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { HotPatchError } from '../../src/core/index.js';
import { EmbeddedStore, openStore, type KvStore } from '../../src/distributed/index.js';
import { EtcdStore } from '../../src/distributed/etcd-store.js';

// `--store` specs: etcd://host:port[,…] for a fleet, a directory (plain or file:) for one host.

const opened: KvStore[] = [];
const dirs: string[] = [];

after(async () => {
  await Promise.all(opened.map((s) => s.close()));
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

async function openKept(spec: string): Promise<KvStore> {
  const store = await openStore(spec);
  opened.push(store);
  return store;
}

test('a directory, plain or as a file: URL, opens one embedded store', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'hotpatch-open-'));
  dirs.push(dir);
  const plain = await openKept(join(dir, 'store'));
  assert.equal(plain.kind, 'embedded');
  assert.ok(plain instanceof EmbeddedStore);
  await plain.put('/k', 'v');
  for (const spec of [`file:${join(dir, 'store')}`, pathToFileURL(join(dir, 'store')).href, relative(process.cwd(), join(dir, 'store'))]) {
    const s = await openKept(spec);
    assert.equal(s.kind, 'embedded', spec);
    assert.equal(await s.get('/k'), 'v', spec);
  }
});

test('etcd://host:port,… opens an etcd store on http endpoints (connecting lazily)', async () => {
  const s = await openKept('etcd://127.0.0.1:2379,etcd-b.example:2380,[::1]:2381');
  assert.equal(s.kind, 'etcd');
  assert.ok(s instanceof EtcdStore);
  assert.deepEqual(s.endpoints, ['http://127.0.0.1:2379', 'http://etcd-b.example:2380', 'http://[::1]:2381']);
});

test('anything else is INVALID', async () => {
  for (const spec of [
    '',
    '  ',
    'etcd://',
    'etcd://host',
    'etcd://h:0',
    'etcd://h:70000',
    'etcd://a:1,',
    'etcd://a:1/path',
    'http://x:1',
    'ftp:/x',
    's3://bucket',
    'file:',
    'file://remote-host/x',
    'a\0b',
  ]) {
    await assert.rejects(openStore(spec), (e: unknown) => e instanceof HotPatchError && e.code === 'INVALID', JSON.stringify(spec));
  }
  await assert.rejects(openStore(42 as unknown as string), (e: unknown) => e instanceof HotPatchError && e.code === 'INVALID');
  assert.throws(
    () => new EtcdStore({ endpoints: [] }),
    (e: unknown) => e instanceof HotPatchError && e.code === 'INVALID',
  );
  assert.throws(
    () => new EtcdStore({ endpoints: ['127.0.0.1:2379'] }),
    (e: unknown) => e instanceof HotPatchError && e.code === 'INVALID',
  );
});

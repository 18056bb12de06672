/*
 * The signed repository index against hostile repositories and mirrors: a frozen (expired)
 * index, an older one replayed (also after a restart), two indexes under one version, a
 * manifest that does not match its entry (mix-and-match), a patch the index does not list, an
 * endless index, an unsigned or wrongly signed one — each refused with its code, a list of
 * mirrors moving on to one that serves a good index, nothing accepted from a bad source.
 */
import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { parsePatchId } from '../../src/core/index.js';
import { FileSystemRepository, HttpRepository, RepositoryMirrors } from '../../src/repo/index.js';
import {
  INDEX_PAYLOAD_TYPE,
  IndexedRepository,
  parseTrustStore,
  signRepositoryIndex,
  verifyPatch,
  verifyRepositoryIndex,
  type RepositoryIndex,
} from '../../src/verification/index.js';
import { isCode } from '../support/assertions.js';
import { CI_TRUST, ciManifest, ciVerifier, publishPatch, signEnvelope, signManifest, signerOf, testKey, type Signer } from '../support/patches.js';
import { withTempDir } from '../support/temp-dir.js';
import { close, listen, requestedName, staticFiles } from '../support/static-server.js';
import type { PatchPlan } from '../../src/orchestration/index.js';
import { FAST_ZDT, makeEnv, planOf, withTraffic } from '../orchestration/helpers.js';

const T = 'xps.demo.f';
const indexKey = testKey('index-1');
const otherKey = testKey('index-2');
const TRUST = parseTrustStore({
  ...CI_TRUST,
  keys: {
    ...CI_TRUST.keys,
    'index-1': { alg: indexKey.alg, public_key: indexKey.publicPem },
    'index-2': { alg: otherKey.alg, public_key: otherKey.publicPem },
  },
  index: { keys: ['index-1'], threshold: 1 },
});
const indexSigner = signerOf('index-1', indexKey.privateKey);
const day = 86_400_000;

/** A repository directory with patches `ids` (version 1.0.N for the N-th), indexed and signed by index-1. */
async function indexedDir(root: string, name: string, ids: readonly string[]): Promise<string> {
  const dir = join(root, name);
  await mkdir(dir);
  for (const [i, id] of ids.entries()) await publishPatch(dir, id, T, `1.0.${i + 1}`, `export const api = { f: () => ${i} };`);
  await signRepositoryIndex(dir, indexKey.privateKey, { keyid: 'index-1' });
  return dir;
}

/** An index envelope over `index` (any fields), signed by `signers`: what a hostile repository may serve. */
function indexEnvelope(index: object, signers: readonly Signer[] = [indexSigner]): string {
  return signEnvelope(INDEX_PAYLOAD_TYPE, new TextEncoder().encode(JSON.stringify(index)), signers);
}

async function currentIndex(dir: string): Promise<RepositoryIndex> {
  const envelope = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { payload: string };
  return JSON.parse(Buffer.from(envelope.payload, 'base64').toString()) as RepositoryIndex;
}

const withRoot = (body: (root: string) => Promise<void>): Promise<void> => withTempDir('hotpatch-index-', body);

test('hotpatch index writes an index the reader accepts: list() is its patches, a listed patch verifies, the version rises on each write', async () => {
  await withRoot(async (root) => {
    const dir = await indexedDir(root, 'repo', ['p-1', 'p-2']);
    const floorFile = join(root, 'floor.json');
    const repo = new IndexedRepository(new FileSystemRepository(dir), { trustStore: TRUST, floorFile });
    assert.deepEqual(await repo.list(), ['p-1', 'p-2']);
    assert.deepEqual(await repo.listEntries(), [
      { id: 'p-1', target: T, version: '1.0.1' },
      { id: 'p-2', target: T, version: '1.0.2' },
    ]);
    assert.equal((await verifyPatch(repo, ciVerifier, 'p-2')).manifest.version, '1.0.2');
    assert.equal(JSON.parse(await readFile(floorFile, 'utf8')).version, 1);
    const again = await signRepositoryIndex(dir, indexKey.privateKey, { keyid: 'index-1' });
    assert.equal(again.version, 2);
    assert.equal((await repo.refresh()).index.version, 2);
    assert.equal(JSON.parse(await readFile(floorFile, 'utf8')).version, 2);
    // An index threshold of 2: a second key adds its signature to the same body.
    const two = parseTrustStore({ ...TRUST.document, index: { keys: ['index-1', 'index-2'], threshold: 2 } });
    await assert.rejects(
      new IndexedRepository(new FileSystemRepository(dir), { trustStore: two }).list(),
      isCode('THRESHOLD_NOT_MET', /1 of 2 required index keys/),
    );
    const both = await signRepositoryIndex(dir, otherKey.privateKey, { keyid: 'index-2', addSignature: true });
    assert.deepEqual([both.version, both.signatures], [2, ['index-1', 'index-2']]);
    assert.deepEqual(await new IndexedRepository(new FileSystemRepository(dir), { trustStore: two }).list(), ['p-1', 'p-2']);
  });
});

test('freeze: an expired index is refused (EXPIRED), and a mirror serving one is passed over for a fresh one', async () => {
  await withRoot(async (root) => {
    const fresh = await indexedDir(root, 'fresh', ['p-1']);
    const frozen = join(root, 'frozen');
    await mkdir(frozen);
    await publishPatch(frozen, 'p-1', T, '1.0.1', 'export const api = { f: () => 0 };');
    const stale = { ...(await currentIndex(fresh)), version: 9, expires: new Date(Date.now() - day).toISOString() };
    await writeFile(join(frozen, 'index.json'), indexEnvelope(stale));
    await assert.rejects(
      new IndexedRepository(new FileSystemRepository(frozen), { trustStore: TRUST }).list(),
      isCode('EXPIRED', /version 9 expired at .*stale or frozen/),
    );
    const mirrors = new RepositoryMirrors([
      { name: 'frozen', repository: new FileSystemRepository(frozen) },
      { name: 'fresh', repository: new FileSystemRepository(fresh) },
    ]);
    const repo = new IndexedRepository(mirrors, { trustStore: TRUST });
    assert.deepEqual(await repo.list(), ['p-1']);
    assert.equal(repo.current?.index.version, 1);
    assert.deepEqual(
      mirrors.failures.map((f) => [f.mirror, f.code]),
      [['frozen', 'EXPIRED']],
    );
  });
});

test('rollback: an older index replayed after a newer one is refused (DOWNGRADE), also by a new reader on the same floor file; two bodies under one version: INVALID', async () => {
  await withRoot(async (root) => {
    const dir = await indexedDir(root, 'repo', ['p-1']);
    const oldIndex = await readFile(join(dir, 'index.json'));
    await signRepositoryIndex(dir, indexKey.privateKey, { keyid: 'index-1' });
    const floorFile = join(root, 'floor.json');
    await new IndexedRepository(new FileSystemRepository(dir), { trustStore: TRUST, floorFile }).list();
    const v2 = await readFile(join(dir, 'index.json'));
    await writeFile(join(dir, 'index.json'), oldIndex);
    const restarted = new IndexedRepository(new FileSystemRepository(dir), { trustStore: TRUST, floorFile });
    await assert.rejects(restarted.list(), isCode('DOWNGRADE', /version 1 is older than version 2 already seen/));
    await assert.rejects(verifyPatch(restarted, ciVerifier, 'p-1'), isCode('DOWNGRADE'));
    // The same version 2, another body (a patch dropped): a fork of the index.
    const forked = { ...(await currentIndex(dir)), version: 2, patches: {} };
    await writeFile(join(dir, 'index.json'), indexEnvelope(forked));
    await assert.rejects(restarted.list(), isCode('INVALID', /version 2 differs from the version 2 already seen/));
    await writeFile(join(dir, 'index.json'), v2);
    assert.deepEqual(await restarted.list(), ['p-1']);
    // A floor file that cannot be read is never taken as "no floor".
    await writeFile(floorFile, '{"version": "two"');
    await assert.rejects(
      new IndexedRepository(new FileSystemRepository(dir), { trustStore: TRUST, floorFile }).list(),
      isCode('INVALID', /floor .* is unreadable/),
    );
  });
});

test('mix-and-match: a validly signed manifest that is not the one the index lists is HASH_MISMATCH; a patch the index does not list is NOT_FOUND', async () => {
  await withRoot(async (root) => {
    const dir = await indexedDir(root, 'repo', ['p-1']);
    // The ci key re-signs p-1 as another version: its signature is good, the index says otherwise.
    const payload = await readFile(join(dir, 'p-1.bin'));
    await writeFile(join(dir, 'p-1.json'), signManifest(ciManifest('p-1', T, '1.0.7', payload)));
    const repo = new IndexedRepository(new FileSystemRepository(dir), { trustStore: TRUST });
    await assert.rejects(
      verifyPatch(repo, ciVerifier, 'p-1'),
      isCode('HASH_MISMATCH', /manifest p-1 does not match its entry in repository index version 1 \(version differ\): a mix-and-match/),
    );
    await publishPatch(dir, 'p-unlisted', T, '1.0.9', 'export const api = { f: () => 9 };');
    await assert.rejects(verifyPatch(repo, ciVerifier, 'p-unlisted'), isCode('NOT_FOUND', /not listed in the signed repository index \(version 1\)/));
  });
});

test('mirrors: a mirror serving a manifest that does not match the index is recorded and never trusted for it; the good mirror verifies', async () => {
  await withRoot(async (root) => {
    const good = await indexedDir(root, 'good', ['p-1']);
    const mixed = join(root, 'mixed');
    await mkdir(mixed);
    const payload = await readFile(join(good, 'p-1.bin'));
    await writeFile(join(mixed, 'p-1.bin'), payload);
    await writeFile(join(mixed, 'p-1.json'), signManifest(ciManifest('p-1', T, '1.0.1', payload, { expires: new Date(Date.now() + 2 * day).toISOString() })));
    await writeFile(join(mixed, 'index.json'), await readFile(join(good, 'index.json')));
    const mirrors = new RepositoryMirrors([
      { name: 'mixed', repository: new FileSystemRepository(mixed) },
      { name: 'good', repository: new FileSystemRepository(good) },
    ]);
    const verified = await verifyPatch(new IndexedRepository(mirrors, { trustStore: TRUST }), ciVerifier, 'p-1');
    assert.equal(
      verified.manifest.expires,
      JSON.parse(Buffer.from(JSON.parse(await readFile(join(good, 'p-1.json'), 'utf8')).payload, 'base64').toString()).expires,
    );
    assert.deepEqual(
      mirrors.failures.map((f) => [f.mirror, f.code]),
      [['mixed', 'HASH_MISMATCH']],
    );
    assert.deepEqual(
      mirrors.order('p-1').map((m) => m.name),
      ['good'],
    );
  });
});

test('an index signed by no index key, by a patch key, or not signed at all is refused; a plain listing is not an index', async () => {
  await withRoot(async (root) => {
    const dir = await indexedDir(root, 'repo', ['p-1']);
    const index = await currentIndex(dir);
    const repo = (): IndexedRepository => new IndexedRepository(new FileSystemRepository(dir), { trustStore: TRUST });
    const cases: [string, string, RegExp][] = [
      [indexEnvelope(index, []), 'UNTRUSTED_KEY', /0 of 1 required index keys: the envelope has no signatures/],
      [indexEnvelope(index, [signerOf('ci', testKey('x').privateKey)]), 'UNTRUSTED_KEY', /0 of 1/],
      [indexEnvelope(index, [signerOf('index-1', otherKey.privateKey)]), 'BAD_SIGNATURE', /index-1: bad-signature/],
      [JSON.stringify({ patches: { 'p-1': {} } }), 'INVALID', /not a signed envelope/],
      [indexEnvelope({ ...index, extra: 1 }), 'INVALID', /unknown field/],
    ];
    for (const [bytes, code, message] of cases) {
      await writeFile(join(dir, 'index.json'), bytes);
      await assert.rejects(repo().list(), isCode(code, message), code);
    }
    // The ci key (a patch signer) is not an index key, even with a valid signature.
    assert.throws(() => verifyRepositoryIndex(Buffer.from(indexEnvelope(index, [signerOf('ci', testKey('y').privateKey)])), TRUST), isCode('UNTRUSTED_KEY'));
  });
});

test('over HTTP: an endless index is TOO_LARGE after the cap, a mirror serving one is passed over for a good one', async () => {
  await withRoot(async (root) => {
    const fresh = await indexedDir(root, 'fresh', ['p-1']);
    const endless = await listen((req, res) => {
      if (requestedName(req) !== 'index.json') return void res.writeHead(404).end();
      res.writeHead(200);
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      const pump = (): void => {
        while (res.write(chunk));
        res.once('drain', pump);
      };
      pump();
      res.on('close', () => res.removeAllListeners('drain'));
    });
    const good = await listen(staticFiles(fresh));
    try {
      const alone = new IndexedRepository(new HttpRepository(endless.url), { trustStore: TRUST });
      await assert.rejects(alone.list(), isCode('TOO_LARGE', /repository index/));
      const mirrors = new RepositoryMirrors([
        { name: 'endless', repository: new HttpRepository(endless.url) },
        { name: 'good', repository: new HttpRepository(good.url) },
      ]);
      const repo = new IndexedRepository(mirrors, { trustStore: TRUST });
      assert.deepEqual(await repo.list(), ['p-1']);
      assert.equal((await verifyPatch(repo, ciVerifier, parsePatchId('p-1'))).manifest.id, 'p-1');
      assert.deepEqual(
        mirrors.failures.map((f) => [f.mirror, f.code]),
        [
          ['endless', 'TOO_LARGE'],
          ['endless', 'NOT_FOUND'],
        ],
      );
    } finally {
      await close(endless.server);
      await close(good.server);
    }
  });
});

test('writing an index checks every payload first (a drifted one: nothing written), never goes down in version, and index is no patch id', async () => {
  await withRoot(async (root) => {
    const dir = await indexedDir(root, 'repo', ['p-1']);
    const before = await readFile(join(dir, 'index.json'));
    await writeFile(join(dir, 'p-1.bin'), 'export const api = { f: () => 5 };');
    await assert.rejects(signRepositoryIndex(dir, indexKey.privateKey, { keyid: 'index-1' }), isCode('HASH_MISMATCH'));
    assert.deepEqual(await readFile(join(dir, 'index.json')), before);
    await writeFile(join(dir, 'p-1.bin'), 'export const api = { f: () => 0 };');
    await assert.rejects(signRepositoryIndex(dir, indexKey.privateKey, { keyid: 'index-1', version: 1 }), isCode('INVALID', /not above the current version 1/));
    await assert.rejects(
      signRepositoryIndex(dir, indexKey.privateKey, { keyid: 'index-1', expires: new Date(Date.now() - 1000).toISOString() }),
      isCode('INVALID', /in the past/),
    );
    assert.equal((await signRepositoryIndex(dir, indexKey.privateKey, { keyid: 'index-1', version: 40 })).version, 40);
    await assert.rejects(new FileSystemRepository(dir).publish(parsePatchId('index'), '{}'), isCode('INVALID', /reserved/));
    assert.deepEqual(await new FileSystemRepository(dir).list(), ['p-1']);
  });
});

test('a Planner polling an indexed repository takes the highest version the index lists, not a higher patch it does not list', async () => {
  const env = await makeEnv();
  try {
    await env.publish('fix-1', '1.0.1');
    await env.publish('fix-2', '1.0.2');
    await signRepositoryIndex(env.repoDir, indexKey.privateKey, { keyid: 'index-1' });
    await env.publish('fix-3', '1.0.3'); // published after the index was signed: not offered
    const proc = env.process();
    proc.registries.repositories.register('indexed', new IndexedRepository(new FileSystemRepository(env.repoDir), { trustStore: TRUST }));
    const planner = await proc.open();
    planner.addPlan(planOf('poll-indexed', { repo: 'indexed', zdt: { ...FAST_ZDT, probationMs: 0 } }) as PatchPlan);
    const { result, errors } = await withTraffic(proc, planner.runOnce('poll-indexed'));
    assert.equal(result.status, 'activated', result.reason);
    assert.equal(errors, 0);
    assert.deepEqual([proc.target.active.patchId, proc.target.active.version], ['fix-2', '1.0.2']);
    planner.close();
  } finally {
    await env.close();
  }
});

test('an index signed by a revoked index key is KEY_REVOKED, timestamped or not: an index key stolen before its revocation keeps nothing alive', async () => {
  await withRoot(async (root) => {
    const dir = await indexedDir(root, 'repo', ['p-1']);
    const revoked = parseTrustStore({ ...TRUST.document, revoked: { 'index-1': { at: new Date(Date.now() - day).toISOString() } } });
    await assert.rejects(
      new IndexedRepository(new FileSystemRepository(dir), { trustStore: revoked }).list(),
      isCode('KEY_REVOKED', /index-1 was revoked at .* \(timestamps do not count for repository-index\)/),
    );
  });
});

test('two readers sharing a floor file never lower it: a replay served to the one that saw less is refused', async () => {
  await withRoot(async (root) => {
    const dir = await indexedDir(root, 'repo', ['p-1']);
    const floorFile = join(root, 'floor.json');
    const a = new IndexedRepository(new FileSystemRepository(dir), { trustStore: TRUST, floorFile });
    const b = new IndexedRepository(new FileSystemRepository(dir), { trustStore: TRUST, floorFile });
    await a.list(); // version 1
    await signRepositoryIndex(dir, indexKey.privateKey, { keyid: 'index-1' });
    const v2 = await readFile(join(dir, 'index.json'));
    await signRepositoryIndex(dir, indexKey.privateKey, { keyid: 'index-1' });
    await b.list(); // version 3: the file says 3
    await writeFile(join(dir, 'index.json'), v2);
    await assert.rejects(a.list(), isCode('DOWNGRADE', /version 2 is older than version 3/));
    assert.equal(JSON.parse(await readFile(floorFile, 'utf8')).version, 3);
  });
});

test('a co-signer never signs an index that does not list what the directory holds; an index living past 366 days is refused', async () => {
  await withRoot(async (root) => {
    const dir = await indexedDir(root, 'repo', ['p-1']);
    const planted = { version: 9_000, expires: new Date(Date.now() + day).toISOString(), patches: {} };
    await writeFile(join(dir, 'index.json'), indexEnvelope(planted, []));
    await assert.rejects(
      signRepositoryIndex(dir, otherKey.privateKey, { keyid: 'index-2', addSignature: true }),
      isCode('INVALID', /does not list what the directory holds \(p-1 differ\)/),
    );
    await signRepositoryIndex(dir, indexKey.privateKey, { keyid: 'index-1' });
    const forever = { ...(await currentIndex(dir)), version: 9_001, expires: '2999-01-01T00:00:00Z' };
    await writeFile(join(dir, 'index.json'), indexEnvelope(forever));
    await assert.rejects(new IndexedRepository(new FileSystemRepository(dir), { trustStore: TRUST }).list(), isCode('INVALID', /more than 366 days away/));
    await assert.rejects(signRepositoryIndex(dir, indexKey.privateKey, { keyid: 'index-1', expires: '2999-01-01T00:00:00Z' }), isCode('INVALID', /366 days/));
  });
});

test('a patch id that names an object property (constructor) is looked up as itself: not listed is NOT_FOUND', async () => {
  await withRoot(async (root) => {
    const dir = await indexedDir(root, 'repo', ['p-1']);
    await publishPatch(dir, 'constructor', T, '1.0.9', 'export const api = { f: () => 9 };');
    const repo = new IndexedRepository(new FileSystemRepository(dir), { trustStore: TRUST });
    await assert.rejects(verifyPatch(repo, ciVerifier, 'constructor'), isCode('NOT_FOUND', /not listed/));
  });
});

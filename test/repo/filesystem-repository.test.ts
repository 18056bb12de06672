import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, open, readFile, readdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import type { PatchId } from '../../src/core/index.js';
import { DEFAULT_MAX_MANIFEST_BYTES, FileSystemRepository } from '../../src/repo/index.js';
import { collect, envelopeJson, mkfifo, openFdCount, rejectsWith, tempFilesIn, withTempDir } from './helpers.js';
import { bytesReadDuring } from '../support/io.js';

const pid = (value: string): PatchId => value as PatchId;
const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

test('a published patch round-trips through fetchEnvelope, openPayload, readPayload and list', async () => {
  await withTempDir(async (root) => {
    const repo = new FileSystemRepository(root, { chunkSize: 1000 });
    const json = envelopeJson();
    const payload = new Uint8Array(2500).map((_, i) => i % 251);
    const digest = await repo.publish(pid('hotfix-1'), json, payload);
    assert.deepEqual(digest, { size: 2500, sha256: sha256(payload) });
    assert.equal(Buffer.from(await repo.fetchEnvelope(pid('hotfix-1'))).toString('utf8'), json);
    const chunks: Uint8Array[] = [];
    for await (const chunk of repo.openPayload(pid('hotfix-1'), 2501)) chunks.push(chunk);
    assert.deepEqual(
      chunks.map((c) => c.length),
      [1000, 1000, 500],
    );
    assert.ok(Buffer.concat(chunks).equals(payload));
    assert.ok(Buffer.from(await repo.readPayload(pid('hotfix-1'), 2500)).equals(payload));
    assert.deepEqual(await repo.list(), ['hotfix-1']);
    assert.deepEqual(await tempFilesIn(root), []);
  });
});

test('publishing from a file streams it and returns its size and SHA-256', async () => {
  await withTempDir(async (dir) => {
    const root = join(dir, 'repo');
    await mkdir(root);
    const source = join(dir, 'payload.mjs');
    const content = Buffer.alloc(200_003, 0x5a);
    await writeFile(source, content);
    const repo = new FileSystemRepository(root);
    const digest = await repo.publish(pid('p1'), envelopeJson(), { fromFile: source });
    assert.deepEqual(digest, { size: content.length, sha256: sha256(content) });
    assert.ok((await readFile(join(root, 'p1.bin'))).equals(content));
    assert.equal(await repo.publish(pid('p2'), envelopeJson()), undefined);
    assert.equal(existsSync(join(root, 'p2.bin')), false);
  });
});

test('publish refuses a payload that differs from the expected hash or size and writes nothing', async () => {
  await withTempDir(async (root) => {
    const repo = new FileSystemRepository(root);
    const payload = new Uint8Array([1, 2, 3]);
    await rejectsWith(repo.publish(pid('p'), envelopeJson(), payload, { expectedSha256: 'AB'.repeat(32) }), 'HASH_MISMATCH');
    await rejectsWith(repo.publish(pid('p'), envelopeJson(), payload, { expectedSize: 4 }), 'SIZE_MISMATCH');
    await rejectsWith(repo.publish(pid('p'), envelopeJson(), payload, { maxBytes: 2 }), 'TOO_LARGE');
    assert.deepEqual(await readdir(root), []);
    const ok = await repo.publish(pid('p'), envelopeJson(), payload, {
      expectedSize: 3,
      expectedSha256: sha256(payload).toUpperCase(),
    });
    assert.equal(ok.size, 3);
  });
});

test('writeEnvelope replaces the manifest atomically and refuses what is not an envelope', async () => {
  await withTempDir(async (root) => {
    const repo = new FileSystemRepository(root);
    await repo.publish(pid('p'), envelopeJson('{"v":1}'), new Uint8Array([1]));
    await repo.writeEnvelope(pid('p'), envelopeJson('{"v":2}'));
    assert.equal(Buffer.from(await repo.fetchEnvelope(pid('p'))).toString(), envelopeJson('{"v":2}'));
    await rejectsWith(repo.writeEnvelope(pid('p'), '{not json'), 'PARSE');
    await rejectsWith(repo.writeEnvelope(pid('p'), '{"payloadType":"x"}'), 'INVALID');
    const small = new FileSystemRepository(root, { maxManifestBytes: 10 });
    await rejectsWith(small.writeEnvelope(pid('p'), envelopeJson()), 'TOO_LARGE');
    assert.equal(Buffer.from(await repo.fetchEnvelope(pid('p'))).toString(), envelopeJson('{"v":2}'));
    assert.deepEqual(await tempFilesIn(root), []);
  });
});

test('list returns sorted valid ids of regular manifests and ignores junk, bad names and links', async () => {
  await withTempDir(async (dir) => {
    const root = join(dir, 'repo');
    await mkdir(root);
    await writeFile(join(dir, 'outside.json'), '{}');
    for (const name of ['b2.json', 'a1.json', 'A0.json', 'notes.txt', 'c3.bin', '.hidden.json', 'a..b.json', '-x.json', '.json']) {
      await writeFile(join(root, name), '{}');
    }
    await writeFile(join(root, `${'x'.repeat(129)}.json`), '{}');
    await mkdir(join(root, 'dir.json'));
    await symlink(join(dir, 'outside.json'), join(root, 'link.json'));
    await symlink(join(root, 'a1.json'), join(root, 'inner-link.json'));
    mkfifo(join(root, 'fifo.json'));
    const repo = new FileSystemRepository(root);
    assert.deepEqual(await repo.list(), ['A0', 'a1', 'b2']);
  });
});

test('a missing manifest or payload is NOT_FOUND, and so is a missing root', async () => {
  await withTempDir(async (dir) => {
    const repo = new FileSystemRepository(dir);
    await rejectsWith(repo.fetchEnvelope(pid('absent')), 'NOT_FOUND', /does not exist/);
    await rejectsWith(collect(repo.openPayload(pid('absent'), 10)), 'NOT_FOUND');
    const gone = new FileSystemRepository(join(dir, 'no-such-root'));
    await rejectsWith(gone.fetchEnvelope(pid('x')), 'NOT_FOUND', /repository root/);
    await rejectsWith(gone.list(), 'NOT_FOUND');
  });
});

test('a root that is a regular file gives IO for reads, payloads and listing', async () => {
  await withTempDir(async (dir) => {
    const root = join(dir, 'not-a-dir');
    await writeFile(root, 'x');
    const repo = new FileSystemRepository(root);
    await rejectsWith(repo.fetchEnvelope(pid('p')), 'IO');
    await rejectsWith(collect(repo.openPayload(pid('p'), 10)), 'IO');
    await rejectsWith(repo.list(), 'IO');
    await rejectsWith(repo.publish(pid('p'), envelopeJson(), new Uint8Array([1])), 'IO');
  });
});

const BAD_IDS: unknown[] = [
  '../etc/passwd',
  '..',
  'a/b',
  '/abs',
  'a\0b',
  'é',
  'patch\u2028',
  '',
  'x'.repeat(129),
  '.hidden',
  '-dash',
  'a..b',
  'a b',
  'a\\b',
  42,
  null,
  undefined,
];

test('every malformed id is refused with INVALID by every operation', async () => {
  await withTempDir(async (root) => {
    await writeFile(join(root, 'good.json'), envelopeJson());
    const repo = new FileSystemRepository(root);
    for (const id of BAD_IDS) {
      const bad = id as PatchId;
      await rejectsWith(repo.fetchEnvelope(bad), 'INVALID');
      assert.throws(() => repo.openPayload(bad, 10), { code: 'INVALID' });
      await rejectsWith(repo.readPayload(bad, 10), 'INVALID');
      await rejectsWith(repo.publish(bad, envelopeJson(), new Uint8Array([1])), 'INVALID');
      await rejectsWith(repo.writeEnvelope(bad, envelopeJson()), 'INVALID');
      await rejectsWith(repo.writePayload(bad, new Uint8Array([1])), 'INVALID');
    }
    assert.deepEqual((await readdir(root)).sort(), ['good.json']);
  });
});

test('an id of exactly 128 characters is accepted', async () => {
  await withTempDir(async (root) => {
    const repo = new FileSystemRepository(root);
    const id = pid('a'.repeat(128));
    await repo.publish(id, envelopeJson(), new Uint8Array([7]));
    assert.deepEqual(await repo.list(), [id]);
  });
});

test('a manifest that is a symbolic link pointing outside the root is refused as INVALID', async () => {
  await withTempDir(async (dir) => {
    const root = join(dir, 'repo');
    await mkdir(root);
    await writeFile(join(dir, 'secret.json'), envelopeJson());
    await symlink(join(dir, 'secret.json'), join(root, 'evil.json'));
    const repo = new FileSystemRepository(root);
    await rejectsWith(repo.fetchEnvelope(pid('evil')), 'INVALID', /symbolic link/);
  });
});

test('a payload that is a symbolic link pointing outside the root is refused as INVALID', async () => {
  await withTempDir(async (dir) => {
    const root = join(dir, 'repo');
    await mkdir(root);
    await writeFile(join(dir, 'secret.bin'), 'secret');
    await writeFile(join(root, 'evil.json'), envelopeJson());
    await symlink(join(dir, 'secret.bin'), join(root, 'evil.bin'));
    const repo = new FileSystemRepository(root);
    await rejectsWith(collect(repo.openPayload(pid('evil'), 100)), 'INVALID', /symbolic link/);
    await rejectsWith(repo.readPayload(pid('evil'), 100), 'INVALID');
  });
});

test('a root reached through a symbolic link is resolved once and works', async () => {
  await withTempDir(async (dir) => {
    await mkdir(join(dir, 'real'));
    await symlink(join(dir, 'real'), join(dir, 'alias'));
    const repo = new FileSystemRepository(join(dir, 'alias'));
    await repo.publish(pid('p'), envelopeJson(), new Uint8Array([1]));
    assert.equal(await repo.pathOf(pid('p'), 'manifest'), join(dir, 'real', 'p.json'));
    assert.ok(existsSync(join(dir, 'real', 'p.bin')));
  });
});

test('a manifest that is a directory or a FIFO is INVALID as not a regular file, without hanging', async () => {
  await withTempDir(async (root) => {
    await mkdir(join(root, 'd.json'));
    mkfifo(join(root, 'f.json'));
    const repo = new FileSystemRepository(root);
    await rejectsWith(repo.fetchEnvelope(pid('d')), 'INVALID', /not a regular file/);
    await rejectsWith(repo.fetchEnvelope(pid('f')), 'INVALID', /not a regular file/);
  });
});

test('a manifest of exactly 1 MiB is read and one of 1 MiB + 1 is TOO_LARGE', async () => {
  await withTempDir(async (root) => {
    assert.equal(DEFAULT_MAX_MANIFEST_BYTES, 1024 * 1024);
    await writeFile(join(root, 'max.json'), Buffer.alloc(1024 * 1024, 0x20));
    await writeFile(join(root, 'over.json'), Buffer.alloc(1024 * 1024 + 1, 0x20));
    const repo = new FileSystemRepository(root);
    assert.equal((await repo.fetchEnvelope(pid('max'))).length, 1024 * 1024);
    const error = await rejectsWith(repo.fetchEnvelope(pid('over')), 'TOO_LARGE', /larger than the limit of 1048576 bytes/);
    assert.equal(error.detail?.limit, 1024 * 1024);
  });
});

test('a sparse 100 MB manifest is refused as TOO_LARGE without being read', async () => {
  await withTempDir(async (root) => {
    const handle = await open(join(root, 'huge.json'), 'w');
    await handle.truncate(100 * 1000 * 1000);
    await handle.close();
    const repo = new FileSystemRepository(root);
    const { result: error, bytesRead } = await bytesReadDuring(() => rejectsWith(repo.fetchEnvelope(pid('huge')), 'TOO_LARGE'));
    assert.equal(error.detail?.size, 100 * 1000 * 1000);
    // Counted, not timed: reading it would be 100 MB; refusing it reads at most the 1 MiB limit.
    assert.ok(bytesRead <= 2 * 1024 * 1024, `read ${bytesRead} bytes of the 100 MB file`);
  });
});

test('maxManifestBytes lowers the manifest limit', async () => {
  await withTempDir(async (root) => {
    await writeFile(join(root, 'p.json'), Buffer.alloc(11));
    await rejectsWith(new FileSystemRepository(root, { maxManifestBytes: 10 }).fetchEnvelope(pid('p')), 'TOO_LARGE', /limit of 10 bytes/);
  });
});

test('openPayload yields exactly maxBytes bytes of a file one byte longer', async () => {
  await withTempDir(async (root) => {
    await writeFile(join(root, 'p.bin'), Buffer.alloc(1001, 1));
    const repo = new FileSystemRepository(root, { chunkSize: 128 });
    assert.equal((await collect(repo.openPayload(pid('p'), 1000))).length, 1000);
    assert.equal((await collect(repo.openPayload(pid('p'), 0))).length, 0);
    assert.equal((await collect(repo.openPayload(pid('p'), 5000))).length, 1001);
    await rejectsWith(repo.readPayload(pid('p'), 1000), 'TOO_LARGE', /limit of 1000 bytes/);
  });
});

test('openPayload checks maxBytes at once', async () => {
  const repo = new FileSystemRepository('/nonexistent-root');
  for (const bad of [-1, 1.5, Number.NaN, '10', Number.MAX_SAFE_INTEGER + 1]) {
    assert.throws(() => repo.openPayload(pid('p'), bad as number), { code: 'INVALID' });
  }
});

test('a FIFO in place of the payload is INVALID and does not hang', async () => {
  await withTempDir(async (root) => {
    mkfifo(join(root, 'p.bin'));
    const repo = new FileSystemRepository(root);
    await rejectsWith(collect(repo.openPayload(pid('p'), 100)), 'INVALID', /not a regular file/);
  });
});

test('a consumer that stops early closes the payload file', async () => {
  await withTempDir(async (root) => {
    await writeFile(join(root, 'p.bin'), Buffer.alloc(100_000));
    const repo = new FileSystemRepository(root, { chunkSize: 1024 });
    const before = openFdCount();
    let during = -1;
    for await (const chunk of repo.openPayload(pid('p'), 100_000)) {
      assert.equal(chunk.length, 1024);
      during = openFdCount();
      break;
    }
    assert.equal(during, before + 1);
    assert.equal(openFdCount(), before);
  });
});

test('aborting a payload stream throws ABORTED and closes the file', async () => {
  await withTempDir(async (root) => {
    await writeFile(join(root, 'p.bin'), Buffer.alloc(10_000));
    const repo = new FileSystemRepository(root, { chunkSize: 1000 });
    const controller = new AbortController();
    const before = openFdCount();
    let seen = 0;
    await rejectsWith(
      (async () => {
        for await (const chunk of repo.openPayload(pid('p'), 10_000, controller.signal)) {
          seen += chunk.length;
          controller.abort(new Error('operator abort'));
        }
      })(),
      'ABORTED',
    );
    assert.equal(seen, 1000);
    assert.equal(openFdCount(), before);
    await rejectsWith(repo.fetchEnvelope(pid('p'), AbortSignal.abort()), 'ABORTED');
    await rejectsWith(repo.list(AbortSignal.abort()), 'ABORTED');
  });
});

test('publish refuses to write through a symbolic link and leaves nothing behind', async () => {
  await withTempDir(async (dir) => {
    const root = join(dir, 'repo');
    await mkdir(root);
    await writeFile(join(dir, 'target.json'), 'precious');
    await writeFile(join(dir, 'target.bin'), 'precious-bin');
    const repo = new FileSystemRepository(root);

    // A link as the manifest: the payload must not be written either.
    await symlink(join(dir, 'target.json'), join(root, 'a.json'));
    await rejectsWith(repo.publish(pid('a'), envelopeJson(), new Uint8Array([1])), 'INVALID', /symbolic link/);
    await rejectsWith(repo.writeEnvelope(pid('a'), envelopeJson()), 'INVALID', /symbolic link/);
    assert.equal(existsSync(join(root, 'a.bin')), false);

    // A link as the payload.
    await symlink(join(dir, 'target.bin'), join(root, 'b.bin'));
    await rejectsWith(repo.publish(pid('b'), envelopeJson(), new Uint8Array([1])), 'INVALID', /symbolic link/);
    await rejectsWith(repo.writePayload(pid('b'), new Uint8Array([1])), 'INVALID', /symbolic link/);
    assert.equal(existsSync(join(root, 'b.json')), false);

    assert.equal(await readFile(join(dir, 'target.json'), 'utf8'), 'precious');
    assert.equal(await readFile(join(dir, 'target.bin'), 'utf8'), 'precious-bin');
    assert.deepEqual((await readdir(root)).sort(), ['a.json', 'b.bin']);
  });
});

test('publish refuses a payload source that is not a regular file', async () => {
  await withTempDir(async (dir) => {
    mkfifo(join(dir, 'fifo'));
    const repo = new FileSystemRepository(dir);
    await rejectsWith(repo.publish(pid('p'), envelopeJson(), { fromFile: join(dir, 'fifo') }), 'INVALID', /not a regular file/);
    await rejectsWith(repo.publish(pid('p'), envelopeJson(), { fromFile: join(dir, 'missing') }), 'NOT_FOUND');
    await rejectsWith(repo.publish(pid('p'), envelopeJson(), 'bytes' as unknown as Uint8Array), 'INVALID');
    assert.deepEqual((await readdir(dir)).sort(), ['fifo']);
  });
});

test('the constructor checks the root and options', () => {
  assert.throws(() => new FileSystemRepository(''), { code: 'INVALID' });
  assert.throws(() => new FileSystemRepository(5 as unknown as string), { code: 'INVALID' });
  assert.throws(() => new FileSystemRepository('/r', { maxManifestBytes: -1 }), { code: 'INVALID' });
  assert.throws(() => new FileSystemRepository('/r', { chunkSize: 0 }), { code: 'INVALID' });
});

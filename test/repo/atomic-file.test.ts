import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, open, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { HotPatchError } from '../../src/core/index.js';
import { copyFileAtomic, readFileBounded, readFileChunks, writeFileAtomic, writeFileExclusive } from '../../src/repo/index.js';
import { collect, mkfifo, openFdCount, rejectsWith, tempFilesIn, withTempDir } from './helpers.js';

test('writeFileAtomic creates and then replaces a file, leaving no temp file', async () => {
  await withTempDir(async (dir) => {
    const file = join(dir, 'state.json');
    await writeFileAtomic(file, 'first');
    assert.equal(await readFile(file, 'utf8'), 'first');
    await writeFileAtomic(file, new Uint8Array([1, 2, 3]));
    assert.deepEqual([...(await readFile(file))], [1, 2, 3]);
    assert.deepEqual(await tempFilesIn(dir), []);
  });
});

test('writeFileAtomic applies an explicit mode exactly and otherwise keeps the existing mode', async () => {
  await withTempDir(async (dir) => {
    const file = join(dir, 'secret');
    await writeFileAtomic(file, 'k', { mode: 0o600 });
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    await chmod(file, 0o640);
    await writeFileAtomic(file, 'k2');
    assert.equal((await stat(file)).mode & 0o777, 0o640);
    await writeFileAtomic(file, 'k3', { mode: 0o755 });
    assert.equal((await stat(file)).mode & 0o777, 0o755);
  });
});

test('writeFileAtomic streams chunks from an async iterable', async () => {
  await withTempDir(async (dir) => {
    const file = join(dir, 'out.bin');
    async function* chunks(): AsyncGenerator<Uint8Array> {
      for (let i = 0; i < 5; i += 1) yield new Uint8Array(1000).fill(i);
    }
    await writeFileAtomic(file, chunks());
    const bytes = await readFile(file);
    assert.equal(bytes.length, 5000);
    assert.equal(bytes[4999], 4);
  });
});

test('writeFileAtomic refuses data of an invalid type before creating anything and keeps the old content', async () => {
  await withTempDir(async (dir) => {
    const file = join(dir, 'state.json');
    await writeFile(file, 'old');
    await rejectsWith(writeFileAtomic(file, 42 as unknown as string), 'INVALID', /data must be/);
    await rejectsWith(writeFileAtomic(file, { length: 3 } as unknown as Uint8Array), 'INVALID');
    assert.equal(await readFile(file, 'utf8'), 'old');
    assert.deepEqual(await tempFilesIn(dir), []);
  });
});

test('writeFileAtomic removes its temp file and keeps the old content when the data source fails midway', async () => {
  await withTempDir(async (dir) => {
    const file = join(dir, 'state.json');
    await writeFile(file, 'old');
    const boom = new Error('source broke');
    async function* failing(): AsyncGenerator<Uint8Array> {
      yield new Uint8Array(4096).fill(7);
      throw boom;
    }
    const error = await rejectsWith(writeFileAtomic(file, failing()), 'IO', /source broke/);
    assert.equal(error.cause, boom);
    assert.equal(await readFile(file, 'utf8'), 'old');
    assert.deepEqual(await tempFilesIn(dir), []);
  });
});

test('writeFileAtomic refuses a non-Uint8Array chunk midway and cleans up', async () => {
  await withTempDir(async (dir) => {
    const file = join(dir, 'state.json');
    await writeFile(file, 'old');
    const chunks = [new Uint8Array([1]), 'two' as unknown as Uint8Array];
    await rejectsWith(writeFileAtomic(file, chunks), 'INVALID', /chunk 1/);
    assert.equal(await readFile(file, 'utf8'), 'old');
    assert.deepEqual(await tempFilesIn(dir), []);
  });
});

test('writeFileAtomic refuses to replace a symbolic link and leaves its target untouched', async () => {
  await withTempDir(async (dir) => {
    const outside = join(dir, 'outside.txt');
    await writeFile(outside, 'precious');
    const link = join(dir, 'state.json');
    await symlink(outside, link);
    await rejectsWith(writeFileAtomic(link, 'evil'), 'INVALID', /symbolic link/);
    assert.equal(await readFile(outside, 'utf8'), 'precious');
    assert.deepEqual(await tempFilesIn(dir), []);
  });
});

test('writeFileAtomic reports IO when the directory does not exist', async () => {
  await withTempDir(async (dir) => {
    await rejectsWith(writeFileAtomic(join(dir, 'missing', 'f'), 'x'), 'IO');
  });
});

test('writeFileAtomic stops with ABORTED on an aborted signal and writes nothing', async () => {
  await withTempDir(async (dir) => {
    const file = join(dir, 'f');
    await writeFile(file, 'old');
    const controller = new AbortController();
    async function* chunks(): AsyncGenerator<Uint8Array> {
      yield new Uint8Array([1]);
      controller.abort(new Error('stop'));
      yield new Uint8Array([2]);
    }
    await rejectsWith(writeFileAtomic(file, chunks(), { signal: controller.signal }), 'ABORTED');
    assert.equal(await readFile(file, 'utf8'), 'old');
    assert.deepEqual(await tempFilesIn(dir), []);
  });
});

test('writeFileExclusive creates a file with the mode asked and refuses to overwrite one', async () => {
  await withTempDir(async (dir) => {
    const file = join(dir, 'k.key');
    await writeFileExclusive(file, 'secret', { mode: 0o600 });
    assert.equal(await readFile(file, 'utf8'), 'secret');
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    const error = await rejectsWith(writeFileExclusive(file, 'other'), 'INVALID', /already exists/);
    assert.deepEqual(error.detail, { exists: true });
    assert.equal(await readFile(file, 'utf8'), 'secret');
    await symlink(join(dir, 'nowhere'), join(dir, 'dangling'));
    await rejectsWith(writeFileExclusive(join(dir, 'dangling'), 'x'), 'INVALID', /already exists/);
    assert.equal(existsSync(join(dir, 'nowhere')), false);
    assert.deepEqual(await tempFilesIn(dir), []);
  });
});

test('readFileBounded reads a file up to exactly the limit', async () => {
  await withTempDir(async (dir) => {
    const file = join(dir, 'f');
    await writeFile(file, Buffer.alloc(1000, 9));
    const bytes = await readFileBounded(file, 1000, { chunkSize: 64 });
    assert.equal(bytes.length, 1000);
    assert.equal(bytes[999], 9);
  });
});

test('readFileBounded refuses a file one byte over the limit with TOO_LARGE naming the limit', async () => {
  await withTempDir(async (dir) => {
    const file = join(dir, 'f');
    await writeFile(file, Buffer.alloc(1001));
    const error = await rejectsWith(readFileBounded(file, 1000), 'TOO_LARGE', /larger than the limit of 1000 bytes/);
    assert.equal(error.detail?.limit, 1000);
  });
});

test('readFileBounded stops reading at limit plus one when the file reports no size', async () => {
  // /proc files are regular files of st_size 0 whose content is produced on read.
  await rejectsWith(readFileBounded('/proc/self/maps', 16), 'TOO_LARGE', /limit of 16 bytes/);
});

test('readFileBounded maps a missing file to NOT_FOUND', async () => {
  await withTempDir(async (dir) => {
    await rejectsWith(readFileBounded(join(dir, 'nope'), 10), 'NOT_FOUND', /does not exist/);
  });
});

test('readFileBounded refuses a symbolic link unless following is asked for', async () => {
  await withTempDir(async (dir) => {
    const target = join(dir, 'target');
    await writeFile(target, 'data');
    await symlink(target, join(dir, 'link'));
    await rejectsWith(readFileBounded(join(dir, 'link'), 10), 'INVALID', /is a symbolic link/);
    assert.equal(Buffer.from(await readFileBounded(join(dir, 'link'), 10, { noFollow: false })).toString(), 'data');
  });
});

test('readFileBounded refuses a directory and a FIFO as not regular files without hanging', async () => {
  await withTempDir(async (dir) => {
    await mkdir(join(dir, 'd'));
    await rejectsWith(readFileBounded(join(dir, 'd'), 10), 'INVALID', /not a regular file/);
    mkfifo(join(dir, 'fifo'));
    await rejectsWith(readFileBounded(join(dir, 'fifo'), 10), 'INVALID', /not a regular file/);
  });
});

test('readFileBounded maps a path through a regular file to IO', async () => {
  await withTempDir(async (dir) => {
    await writeFile(join(dir, 'plain'), 'x');
    await rejectsWith(readFileBounded(join(dir, 'plain', 'child'), 10), 'IO', /ENOTDIR|not a directory/);
  });
});

test('readFileChunks closes its file when the consumer stops early', async () => {
  await withTempDir(async (dir) => {
    const file = join(dir, 'f');
    await writeFile(file, Buffer.alloc(10_000));
    const before = openFdCount();
    let during = -1;
    for await (const chunk of readFileChunks(file, 10_000, { chunkSize: 100 })) {
      assert.equal(chunk.length, 100);
      during = openFdCount();
      break;
    }
    assert.equal(during, before + 1);
    assert.equal(openFdCount(), before);
  });
});

test('readFileBounded and readFileChunks check their arguments', async () => {
  await rejectsWith(readFileBounded('', 1), 'INVALID', /path/);
  await rejectsWith(readFileBounded('/x', -1), 'INVALID', /maxBytes/);
  await rejectsWith(readFileBounded('/x', 1, { chunkSize: 0 }), 'INVALID', /chunkSize/);
  await rejectsWith(collect(readFileChunks('/x', 1.5)), 'INVALID', /maxBytes/);
});

test('copyFileAtomic streams a file and returns its size and SHA-256', async () => {
  await withTempDir(async (dir) => {
    const source = join(dir, 'src');
    const content = Buffer.alloc(300_001, 0xab);
    await writeFile(source, content);
    const digest = await copyFileAtomic(source, join(dir, 'dst'), { chunkSize: 4096, mode: 0o644 });
    assert.deepEqual(digest, { size: content.length, sha256: createHash('sha256').update(content).digest('hex') });
    assert.ok((await readFile(join(dir, 'dst'))).equals(content));
  });
});

test('copyFileAtomic refuses a source over maxBytes and leaves the destination as it was', async () => {
  await withTempDir(async (dir) => {
    const source = join(dir, 'src');
    await writeFile(source, Buffer.alloc(101));
    await writeFile(join(dir, 'dst'), 'old');
    await rejectsWith(copyFileAtomic(source, join(dir, 'dst'), { maxBytes: 100 }), 'TOO_LARGE');
    assert.equal(await readFile(join(dir, 'dst'), 'utf8'), 'old');
    assert.deepEqual(await tempFilesIn(dir), []);
  });
});

test('a pre-aborted signal stops reads with ABORTED before opening the file', async () => {
  await withTempDir(async (dir) => {
    const file = join(dir, 'f');
    const handle = await open(file, 'w');
    await handle.close();
    const signal = AbortSignal.abort();
    const error = await rejectsWith(readFileBounded(file, 10, { signal }), 'ABORTED');
    assert.ok(error instanceof HotPatchError);
    await rejectsWith(collect(readFileChunks(file, 10, { signal })), 'ABORTED');
  });
});

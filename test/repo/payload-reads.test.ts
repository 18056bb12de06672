import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import type { PatchId } from '../../src/core/index.js';
import { DEFAULT_CHUNK_SIZE, DEFAULT_REPOSITORY_CHUNK_SIZE, FileSystemRepository } from '../../src/repo/index.js';
import { bytesReadDuring } from '../support/io.js';
import { envelopeJson, openFdCount, rejectsWith, withTempDir } from './helpers.js';

const MIB = 1024 * 1024;
const ID = 'p' as PatchId;

test('a FileSystemRepository reads payloads in 1 MiB chunks by default, fresh buffers that later reads leave intact', async () => {
  await withTempDir(async (root) => {
    const payload = randomBytes(3 * MIB + 7);
    await writeFile(join(root, `${ID}.bin`), payload);
    const repo = new FileSystemRepository(root);
    assert.equal(repo.chunkSize, MIB);
    assert.equal(DEFAULT_REPOSITORY_CHUNK_SIZE, MIB);
    const kept: Uint8Array[] = [];
    for await (const chunk of repo.openPayload(ID, payload.length + 1)) kept.push(chunk);
    assert.deepEqual(
      kept.map((c) => c.length),
      [MIB, MIB, MIB, 7],
    );
    assert.ok(Buffer.concat(kept).equals(payload));
    assert.equal(new Set(kept.map((c) => c.buffer)).size, kept.length);
  });
});

test('a small payload or manifest read with the 1 MiB chunk size is not held in a 1 MiB buffer', async () => {
  await withTempDir(async (root) => {
    const payload = randomBytes(100);
    await writeFile(join(root, `${ID}.bin`), payload);
    await writeFile(join(root, `${ID}.json`), envelopeJson());
    const repo = new FileSystemRepository(root);
    const chunks: Uint8Array[] = [];
    for await (const chunk of repo.openPayload(ID, 10 * MIB)) chunks.push(chunk);
    assert.equal(chunks.length, 1);
    assert.ok(Buffer.from(chunks[0]!).equals(payload));
    assert.ok(chunks[0]!.buffer.byteLength <= DEFAULT_CHUNK_SIZE, `a ${chunks[0]!.buffer.byteLength} byte buffer`);
    const whole = await repo.readPayload(ID, 10 * MIB);
    assert.ok(whole.buffer.byteLength <= DEFAULT_CHUNK_SIZE, `a ${whole.buffer.byteLength} byte buffer`);
    const manifest = await repo.fetchEnvelope(ID);
    assert.ok(manifest.buffer.byteLength <= DEFAULT_CHUNK_SIZE, `a ${manifest.buffer.byteLength} byte buffer`);
  });
});

test('the read ahead never reads a payload past maxBytes', async () => {
  await withTempDir(async (root) => {
    await writeFile(join(root, `${ID}.bin`), randomBytes(8 * MIB));
    const repo = new FileSystemRepository(root);
    const { result, bytesRead } = await bytesReadDuring(async () => {
      const sizes: number[] = [];
      for await (const chunk of repo.openPayload(ID, MIB + 100)) {
        sizes.push(chunk.length);
        break; // the read ahead (the last 100 bytes) is in flight here
      }
      return sizes;
    });
    assert.deepEqual(result, [MIB]);
    // MIB + 100 payload bytes and /proc/self/io itself (a few hundred); never a second MiB.
    assert.ok(bytesRead < MIB + 64 * 1024, `read ${bytesRead} bytes`);
  });
});

test('aborting hands on no chunk read ahead before the abort, and leaves no file open', async () => {
  await withTempDir(async (root) => {
    await writeFile(join(root, `${ID}.bin`), randomBytes(4 * MIB));
    const repo = new FileSystemRepository(root);
    const controller = new AbortController();
    const before = openFdCount();
    let seen = 0;
    await rejectsWith(
      (async () => {
        for await (const chunk of repo.openPayload(ID, 4 * MIB + 1, controller.signal)) {
          seen += chunk.length;
          controller.abort(new Error('operator abort'));
        }
      })(),
      'ABORTED',
      /reading payload .* was aborted/,
    );
    assert.equal(seen, MIB);
    assert.equal(openFdCount(), before);
  });
});

test('a consumer that stops while the next read is in flight leaves no file open', async () => {
  await withTempDir(async (root) => {
    await writeFile(join(root, `${ID}.bin`), randomBytes(4 * MIB));
    const repo = new FileSystemRepository(root);
    const before = openFdCount();
    let during = -1;
    for await (const chunk of repo.openPayload(ID, 4 * MIB + 1)) {
      assert.equal(chunk.length, MIB);
      during = openFdCount();
      break;
    }
    assert.equal(during, before + 1);
    assert.equal(openFdCount(), before);
    // A failure of the consumer closes the file too.
    await assert.rejects(
      (async () => {
        for await (const _chunk of repo.openPayload(ID, 4 * MIB + 1)) throw new Error('consumer failed');
      })(),
      /consumer failed/,
    );
    assert.equal(openFdCount(), before);
  });
});

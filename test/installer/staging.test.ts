import assert from 'node:assert/strict';
import { chmod, lstat, mkdir, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { test } from 'node:test';
import { DynamicInstaller, STAGED_MODE } from '../../src/installer/index.js';
import { manifestFor, namesIn, rejectsWith, sha256Hex, utf8, withTempDir } from './helpers.js';

const MODULE = utf8('export const api = { add: (a, b) => a + b };\n');

async function* chunksOf(bytes: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < bytes.length; i += size) yield bytes.slice(i, i + size);
}

test('stage writes the payload under staging/<sha256>.mjs, read-only, and reports its size', async () => {
  await withTempDir(async (dir) => {
    const installer = new DynamicInstaller(dir);
    const { manifest, facts } = manifestFor(MODULE);
    const staged = await installer.stage(manifest, facts, MODULE);
    const sha = sha256Hex(MODULE);
    assert.equal(installer.stagingDir, join(dir, 'staging'));
    assert.deepEqual(staged, { path: join(dir, 'staging', `${sha}.mjs`), sha256: sha, size: MODULE.length, type: 'esm' });
    assert.equal(installer.stagedPathFor(sha, 'esm'), staged.path);
    assert.deepEqual(await readFile(staged.path), Buffer.from(MODULE));
    assert.equal((await stat(staged.path)).mode & 0o777, STAGED_MODE);
    assert.equal(STAGED_MODE, 0o444);
  });
});

test('stage names wasm and native payloads with their own extensions', async () => {
  await withTempDir(async (dir) => {
    const installer = new DynamicInstaller(dir);
    const bytes = utf8('not really a binary');
    const sha = sha256Hex(bytes);
    const wasm = manifestFor(bytes, { type: 'wasm' });
    const native = manifestFor(bytes, { type: 'native' });
    assert.equal(basename((await installer.stage(wasm.manifest, wasm.facts, bytes)).path), `${sha}.wasm`);
    assert.equal(basename((await installer.stage(native.manifest, native.facts, bytes)).path), `${sha}.node`);
  });
});

test('stage is idempotent: staging the same content twice gives the same path and one file', async () => {
  await withTempDir(async (dir) => {
    const installer = new DynamicInstaller(dir);
    const { manifest, facts } = manifestFor(MODULE);
    const first = await installer.stage(manifest, facts, MODULE);
    const second = await installer.stage(manifest, facts, chunksOf(MODULE, 7));
    assert.deepEqual(second, first);
    assert.deepEqual(await namesIn(installer.stagingDir), [basename(first.path)]);
  });
});

test('stage accepts a streamed payload and hashes across chunk boundaries', async () => {
  await withTempDir(async (dir) => {
    const installer = new DynamicInstaller(dir);
    const big = new Uint8Array(300_000).map((_, i) => (i * 31) & 0xff);
    const { manifest, facts } = manifestFor(big, { type: 'wasm' });
    const staged = await installer.stage(manifest, facts, chunksOf(big, 65_537));
    assert.equal(staged.sha256, sha256Hex(big));
    assert.equal(staged.size, big.length);
    assert.deepEqual(await readFile(staged.path), Buffer.from(big));
  });
});

test('stage checks a sha384 manifest hash and still names the file by its sha256', async () => {
  await withTempDir(async (dir) => {
    const installer = new DynamicInstaller(dir);
    const { manifest, facts } = manifestFor(MODULE, { alg: 'sha384' });
    assert.equal(facts.hashAlgorithm, 'sha384');
    const staged = await installer.stage(manifest, facts, MODULE);
    assert.equal(basename(staged.path), `${sha256Hex(MODULE)}.mjs`);

    const wrong = manifestFor(MODULE, { alg: 'sha384', hashHex: '00'.repeat(48) });
    await rejectsWith(installer.stage(wrong.manifest, wrong.facts, MODULE), 'HASH_MISMATCH', /sha384/);
    assert.deepEqual(await namesIn(installer.stagingDir), [basename(staged.path)]);
  });
});

test('stage refuses bytes that do not match the manifest hash and leaves no file and no temp behind', async () => {
  await withTempDir(async (dir) => {
    const installer = new DynamicInstaller(dir);
    const { manifest, facts } = manifestFor(MODULE);
    const evil = utf8('export const api = { add: (a, b) => a - b };\n');
    assert.equal(evil.length, MODULE.length);
    const error = await rejectsWith(installer.stage(manifest, facts, evil), 'HASH_MISMATCH');
    assert.equal(error.detail?.expected, facts.hashHex);
    assert.deepEqual(await namesIn(installer.stagingDir), []);
  });
});

test('stage refuses one byte more than payload_size, stops reading, and leaves nothing', async () => {
  await withTempDir(async (dir) => {
    const installer = new DynamicInstaller(dir);
    const { manifest, facts } = manifestFor(MODULE);
    const longer = new Uint8Array([...MODULE, 0x0a]);
    await rejectsWith(installer.stage(manifest, facts, longer), 'SIZE_MISMATCH', /longer than payload_size/);
    assert.deepEqual(await namesIn(installer.stagingDir), []);

    // An endless source is read only up to payload_size + 1 bytes.
    let produced = 0;
    async function* endless(): AsyncGenerator<Uint8Array> {
      for (;;) {
        produced += 16;
        yield new Uint8Array(16);
      }
    }
    await rejectsWith(installer.stage(manifest, facts, endless()), 'SIZE_MISMATCH');
    assert.ok(produced <= MODULE.length + 16, `read ${produced} bytes of an endless source`);
    assert.deepEqual(await namesIn(installer.stagingDir), []);
  });
});

test('stage refuses one byte less than payload_size and leaves nothing', async () => {
  await withTempDir(async (dir) => {
    const installer = new DynamicInstaller(dir);
    const { manifest, facts } = manifestFor(MODULE);
    const error = await rejectsWith(installer.stage(manifest, facts, MODULE.subarray(0, MODULE.length - 1)), 'SIZE_MISMATCH', /1 missing/);
    assert.deepEqual(error.detail, { expected: MODULE.length, actual: MODULE.length - 1 });
    assert.deepEqual(await namesIn(installer.stagingDir), []);
  });
});

test('stage refuses a manifest hash algorithm that is not supported before touching the disk', async () => {
  await withTempDir(async (dir) => {
    const installer = new DynamicInstaller(dir);
    const { manifest, facts } = manifestFor(MODULE);
    await rejectsWith(installer.stage(manifest, { ...facts, hashAlgorithm: 'md5' }, MODULE), 'ALGORITHM_DISALLOWED');
    assert.deepEqual(await namesIn(installer.stagingDir), []);
  });
});

test('stage never follows a symbolic link at the final path', async () => {
  await withTempDir(async (dir) => {
    const installer = new DynamicInstaller(dir);
    const { manifest, facts } = manifestFor(MODULE);
    const outside = join(dir, 'outside.txt');
    await writeFile(outside, 'untouched');
    await mkdir(installer.stagingDir, { recursive: true });
    const final = installer.stagedPathFor(sha256Hex(MODULE), 'esm');
    await symlink(outside, final);
    await rejectsWith(installer.stage(manifest, facts, MODULE), 'INVALID', /symbolic link/);
    assert.equal(await readFile(outside, 'utf8'), 'untouched');
    assert.ok((await lstat(final)).isSymbolicLink());
    assert.deepEqual(await namesIn(installer.stagingDir), [basename(final)]);
  });
});

test('stage replaces a corrupted file under the content address with the verified bytes', async () => {
  await withTempDir(async (dir) => {
    const installer = new DynamicInstaller(dir);
    const { manifest, facts } = manifestFor(MODULE);
    const staged = await installer.stage(manifest, facts, MODULE);
    await chmod(staged.path, 0o644);
    await writeFile(staged.path, 'garbage');
    const again = await installer.stage(manifest, facts, MODULE);
    assert.equal(again.path, staged.path);
    assert.deepEqual(await readFile(staged.path), Buffer.from(MODULE));
    assert.equal((await stat(staged.path)).mode & 0o777, 0o444);
    assert.deepEqual(await namesIn(installer.stagingDir), [basename(staged.path)]);
  });
});

test('stage makes a reused file read-only again when its mode was loosened', async () => {
  await withTempDir(async (dir) => {
    const installer = new DynamicInstaller(dir);
    const { manifest, facts } = manifestFor(MODULE);
    const staged = await installer.stage(manifest, facts, MODULE);
    await chmod(staged.path, 0o666);
    await installer.stage(manifest, facts, MODULE);
    assert.equal((await stat(staged.path)).mode & 0o777, 0o444);
  });
});

test('stage stops with ABORTED when the signal fires mid-stream, and leaves nothing', async () => {
  await withTempDir(async (dir) => {
    const installer = new DynamicInstaller(dir);
    const { manifest, facts } = manifestFor(MODULE);
    const controller = new AbortController();
    let stopped = false;
    async function* stalling(): AsyncGenerator<Uint8Array> {
      try {
        yield MODULE.subarray(0, 10);
        controller.abort(new Error('operator pressed abort'));
        // A stalled producer: the abort must not wait for it.
        await new Promise(() => undefined);
      } finally {
        stopped = true;
      }
    }
    const error = await rejectsWith(installer.stage(manifest, facts, stalling(), controller.signal), 'ABORTED');
    assert.match(String((error.cause as Error).message), /operator pressed abort/);
    assert.deepEqual(await namesIn(installer.stagingDir), []);
    assert.equal(stopped, false, 'the stalled producer is left to finish on its own');
  });
});

test('stage stops with ABORTED between chunks of a live source and closes the source', async () => {
  await withTempDir(async (dir) => {
    const installer = new DynamicInstaller(dir);
    const { manifest, facts } = manifestFor(MODULE);
    const controller = new AbortController();
    let closed = false;
    async function* source(): AsyncGenerator<Uint8Array> {
      try {
        yield MODULE.subarray(0, 10);
        controller.abort();
        yield MODULE.subarray(10);
      } finally {
        closed = true;
      }
    }
    await rejectsWith(installer.stage(manifest, facts, source(), controller.signal), 'ABORTED');
    assert.equal(closed, true);
    assert.deepEqual(await namesIn(installer.stagingDir), []);
  });
});

test('stage with an already aborted signal writes nothing', async () => {
  await withTempDir(async (dir) => {
    const installer = new DynamicInstaller(dir);
    const { manifest, facts } = manifestFor(MODULE);
    await rejectsWith(installer.stage(manifest, facts, MODULE, AbortSignal.abort()), 'ABORTED');
    assert.deepEqual(await namesIn(installer.stagingDir), []);
  });
});

test('stage reports a failing payload source as IO with the cause, leaving nothing', async () => {
  await withTempDir(async (dir) => {
    const installer = new DynamicInstaller(dir);
    const { manifest, facts } = manifestFor(MODULE);
    const boom = new Error('network reset');
    async function* failing(): AsyncGenerator<Uint8Array> {
      yield MODULE.subarray(0, 5);
      throw boom;
    }
    const error = await rejectsWith(installer.stage(manifest, facts, failing()), 'IO', /network reset/);
    assert.equal(error.cause, boom);
    assert.deepEqual(await namesIn(installer.stagingDir), []);
  });
});

test('stage reports a staging directory it cannot create as IO with the cause', async () => {
  await withTempDir(async (dir) => {
    const blocker = join(dir, 'state');
    await writeFile(blocker, 'a file where the state directory should be');
    const installer = new DynamicInstaller(blocker);
    const { manifest, facts } = manifestFor(MODULE);
    const error = await rejectsWith(installer.stage(manifest, facts, MODULE), 'IO', /staging directory/);
    assert.ok(error.cause instanceof Error);
  });
});

test('stage refuses payload chunks that are not bytes', async () => {
  await withTempDir(async (dir) => {
    const installer = new DynamicInstaller(dir);
    const { manifest, facts } = manifestFor(MODULE);
    async function* strings(): AsyncGenerator<unknown> {
      yield 'export const api = {}';
    }
    await rejectsWith(installer.stage(manifest, facts, strings() as AsyncIterable<Uint8Array>), 'INVALID', /chunk 0 must be a Uint8Array/);
    await rejectsWith(installer.stage(manifest, facts, 'text' as unknown as Uint8Array), 'INVALID', /payload must be/);
    assert.deepEqual(await namesIn(installer.stagingDir), []);
  });
});

test('verifyStaged re-hashes a staged file and returns it', async () => {
  await withTempDir(async (dir) => {
    const installer = new DynamicInstaller(dir);
    const { manifest, facts } = manifestFor(MODULE);
    const staged = await installer.stage(manifest, facts, MODULE);
    // A second installer on the same directory stands for the process after a restart.
    const restarted = new DynamicInstaller(dir);
    assert.deepEqual(await restarted.verifyStaged(staged.sha256.toUpperCase(), 'esm'), staged);
  });
});

test('verifyStaged on a missing file fails with NOT_FOUND', async () => {
  await withTempDir(async (dir) => {
    const installer = new DynamicInstaller(dir);
    await rejectsWith(installer.verifyStaged('ab'.repeat(32), 'esm'), 'NOT_FOUND');
  });
});

test('verifyStaged fails with HASH_MISMATCH when the staged file was changed on disk', async () => {
  await withTempDir(async (dir) => {
    const installer = new DynamicInstaller(dir);
    const { manifest, facts } = manifestFor(MODULE);
    const staged = await installer.stage(manifest, facts, MODULE);
    await chmod(staged.path, 0o644);
    const bytes = await readFile(staged.path);
    bytes[0] = bytes[0]! ^ 1;
    await writeFile(staged.path, bytes);
    await rejectsWith(installer.verifyStaged(staged.sha256, 'esm'), 'HASH_MISMATCH');
  });
});

test('verifyStaged refuses a symbolic link and a directory at the staged path with INVALID', async () => {
  await withTempDir(async (dir) => {
    const installer = new DynamicInstaller(dir);
    await mkdir(installer.stagingDir, { recursive: true });
    const target = join(dir, 'real.mjs');
    await writeFile(target, MODULE);
    const sha = sha256Hex(MODULE);
    await symlink(target, installer.stagedPathFor(sha, 'esm'));
    await rejectsWith(installer.verifyStaged(sha, 'esm'), 'INVALID', /symbolic link/);
    await mkdir(installer.stagedPathFor(sha, 'wasm'));
    await rejectsWith(installer.verifyStaged(sha, 'wasm'), 'INVALID', /not a regular file/);
  });
});

test('stagedPathFor and verifyStaged check their arguments', async () => {
  await withTempDir(async (dir) => {
    const installer = new DynamicInstaller(dir);
    assert.throws(() => installer.stagedPathFor('../../etc/passwd', 'esm'), { code: 'INVALID' });
    assert.throws(() => installer.stagedPathFor('ab'.repeat(32), 'exe' as 'esm'), { code: 'INVALID' });
    await rejectsWith(installer.verifyStaged('abc', 'esm'), 'INVALID', /64 hex digits/);
  });
});

test('the constructor checks its stage directory and cap', () => {
  assert.throws(() => new DynamicInstaller(''), { code: 'INVALID' });
  assert.throws(() => new DynamicInstaller('/tmp/x', { maxLiveVersionsPerTarget: 0 }), { code: 'INVALID' });
  assert.throws(() => new DynamicInstaller('/tmp/x', { maxLiveVersionsPerTarget: 1.5 }), { code: 'INVALID' });
  const installer = new DynamicInstaller('relative/state');
  assert.equal(installer.kind, 'dynamic');
  assert.equal(installer.maxLiveVersionsPerTarget, 16);
  assert.ok(installer.stagingDir.startsWith('/') && installer.stagingDir.endsWith('/relative/state/staging'));
});

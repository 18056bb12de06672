import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { PatchId, PatchRepository, PatchVerifier, VerifiedManifest } from '../../src/core/index.js';
import { FileSystemRepository } from '../../src/repo/index.js';
import { DefaultVerifier, signPatch, verifyPatch } from '../../src/verification/index.js';
import { rejectsWith } from '../support/assertions.js';
import { bytesReadDuring } from '../support/io.js';
import { openFdCount } from '../repo/helpers.js';
import { envelopeBytes, makeKey, manifestFor, trust } from './fixtures.js';

/*
 * verifyPatch (and signPatch) read the payload through repository.openPayload; for a
 * FileSystemRepository that is 1 MiB reads, one read ahead (test/repo/read-ahead.test.ts,
 * test/repo/payload-reads.test.ts). What that means for verification, end to end.
 */

const key = makeKey('team-key-1');
const MIB = 1024 * 1024;
const ID = 'fix-1' as PatchId;

/** A repository directory holding `fix-1.json` (signed, for `manifestPayload`) and `fix-1.bin` (`filePayload`). */
async function withRepo<T>(
  manifestPayload: Uint8Array,
  filePayload: Uint8Array | undefined,
  fn: (dir: string, verifier: DefaultVerifier) => Promise<T>,
): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'xps-verify-reads-'));
  try {
    await writeFile(join(dir, `${ID}.json`), envelopeBytes(manifestFor({}, manifestPayload), [key]));
    if (filePayload !== undefined) await writeFile(join(dir, `${ID}.bin`), filePayload);
    return await fn(dir, new DefaultVerifier(trust([key], 1)));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** A verifier that hands every chunk to `onChunk` on its way to the default verifier's checks. */
function recordingVerifier(inner: PatchVerifier, onChunk: (chunk: Uint8Array) => void): PatchVerifier {
  return {
    verifyEnvelope: (bytes, context) => inner.verifyEnvelope(bytes, context),
    verifyPayload: (verified: VerifiedManifest, chunks: AsyncIterable<Uint8Array>) =>
      inner.verifyPayload(
        verified,
        (async function* () {
          for await (const chunk of chunks) {
            onChunk(chunk);
            yield chunk;
          }
        })(),
      ),
  };
}

test('verifyPatch hands the verifier a default FileSystemRepository payload in 1 MiB chunks', async () => {
  const payload = randomBytes(2 * MIB + MIB / 2);
  await withRepo(payload, payload, async (dir, verifier) => {
    const sizes: number[] = [];
    const verified = await verifyPatch(
      new FileSystemRepository(dir),
      recordingVerifier(verifier, (c) => sizes.push(c.length)),
      ID,
    );
    assert.equal(verified.manifest.payload_size, payload.length);
    assert.deepEqual(sizes, [MIB, MIB, MIB / 2]);
  });
});

test('an explicit chunkSize, smaller or larger than 1 MiB, is the size of the reads verifyPatch hashes', async () => {
  const payload = randomBytes(5 * MIB);
  await withRepo(payload, payload, async (dir, verifier) => {
    const small: number[] = [];
    await verifyPatch(
      new FileSystemRepository(dir, { chunkSize: 64 * 1024 }),
      recordingVerifier(verifier, (c) => small.push(c.length)),
      ID,
    );
    assert.equal(small.length, 80);
    assert.ok(small.every((n) => n === 64 * 1024));
    const large: number[] = [];
    await verifyPatch(
      new FileSystemRepository(dir, { chunkSize: 4 * MIB }),
      recordingVerifier(verifier, (c) => large.push(c.length)),
      ID,
    );
    assert.deepEqual(large, [4 * MIB, MIB]);
  });
});

test("a custom PatchRepository's openPayload is what verifyPatch reads", async () => {
  const payload = randomBytes(3000);
  await withRepo(payload, payload, async (dir, verifier) => {
    const files = new FileSystemRepository(dir);
    const asked: number[] = [];
    const custom: PatchRepository = {
      fetchEnvelope: (id, signal) => files.fetchEnvelope(id, signal),
      openPayload: (_id, maxBytes) => {
        asked.push(maxBytes);
        return (async function* () {
          yield payload.subarray(0, 1000);
          yield payload.subarray(1000);
        })();
      },
      list: (signal) => files.list(signal),
    };
    const sizes: number[] = [];
    await verifyPatch(
      custom,
      recordingVerifier(verifier, (c) => sizes.push(c.length)),
      ID,
    );
    assert.deepEqual(asked, [payload.length + 1]);
    assert.deepEqual(sizes, [1000, 2000]);
  });
});

test('a payload file far longer than payload_size is SIZE_MISMATCH after reading at most payload_size + 1 of its bytes', async () => {
  const payload = randomBytes(100);
  const file = Buffer.concat([payload, randomBytes(8 * MIB)]);
  await withRepo(payload, file, async (dir, verifier) => {
    const repo = new FileSystemRepository(dir);
    const { bytesRead } = await bytesReadDuring(() =>
      rejectsWith(verifyPatch(repo, verifier, ID), 'SIZE_MISMATCH', /longer than payload_size 100 \(read 101 bytes and stopped\)/),
    );
    // The envelope (about a kilobyte), 101 payload bytes and /proc/self/io itself; not a 1 MiB read.
    assert.ok(bytesRead < 64 * 1024, `read ${bytesRead} bytes`);
  });
});

test('a payload one byte short is SIZE_MISMATCH and one with a changed byte past the first read is HASH_MISMATCH', async () => {
  const payload = randomBytes(MIB + 4096);
  await withRepo(payload, payload.subarray(0, payload.length - 1), async (dir, verifier) => {
    await rejectsWith(verifyPatch(new FileSystemRepository(dir), verifier, ID), 'SIZE_MISMATCH', /1 missing/);
  });
  const changed = Buffer.from(payload);
  changed[MIB + 17] = changed[MIB + 17]! ^ 0x40;
  await withRepo(payload, changed, async (dir, verifier) => {
    await rejectsWith(verifyPatch(new FileSystemRepository(dir), verifier, ID), 'HASH_MISMATCH');
  });
});

test('a payload that is a symbolic link, a directory or missing is refused by verifyPatch as INVALID, INVALID and NOT_FOUND', async () => {
  const payload = randomBytes(64);
  await withRepo(payload, undefined, async (dir, verifier) => {
    const repo = new FileSystemRepository(dir);
    await rejectsWith(verifyPatch(repo, verifier, ID), 'NOT_FOUND', /does not exist/);

    const outside = join(dir, 'outside');
    await mkdir(outside);
    await writeFile(join(outside, 'real.bin'), payload);
    await symlink(join(outside, 'real.bin'), join(dir, `${ID}.bin`));
    await rejectsWith(verifyPatch(repo, verifier, ID), 'INVALID', /symbolic link/);

    await rm(join(dir, `${ID}.bin`));
    await mkdir(join(dir, `${ID}.bin`));
    await rejectsWith(verifyPatch(repo, verifier, ID), 'INVALID', /not a regular file/);
  });
});

test('aborting verifyPatch while the payload is read is ABORTED, hands the verifier nothing more and leaves no file open', async () => {
  const payload = randomBytes(4 * MIB);
  await withRepo(payload, payload, async (dir, verifier) => {
    const before = openFdCount();
    const controller = new AbortController();
    let chunks = 0;
    const aborting = recordingVerifier(verifier, () => {
      chunks += 1;
      controller.abort(new Error('operator said stop'));
    });
    await rejectsWith(verifyPatch(new FileSystemRepository(dir), aborting, ID, {}, controller.signal), 'ABORTED');
    assert.equal(chunks, 1);
    assert.equal(openFdCount(), before);
    await rejectsWith(verifyPatch(new FileSystemRepository(dir), verifier, ID, {}, controller.signal), 'ABORTED');
  });
});

test('a verifier that stops after the first chunk leaves no file open, with the read ahead in flight', async () => {
  const payload = randomBytes(4 * MIB);
  await withRepo(payload, payload, async (dir, verifier) => {
    const before = openFdCount();
    const stopping: PatchVerifier = {
      verifyEnvelope: (bytes, context) => verifier.verifyEnvelope(bytes, context),
      verifyPayload: async (_verified, chunks) => {
        for await (const chunk of chunks) {
          assert.equal(chunk.length, MIB);
          break;
        }
      },
    };
    await verifyPatch(new FileSystemRepository(dir), stopping, ID);
    assert.equal(openFdCount(), before);
  });
});

test('signPatch checks the payload through openPayload and refuses one that drifted', async () => {
  const payload = randomBytes(MIB + 5);
  await withRepo(payload, payload, async (dir) => {
    const signed = await signPatch(dir, ID, makeKey('build-bot').privateKey, { keyid: 'build-bot' });
    assert.deepEqual(signed.signatures, ['team-key-1', 'build-bot']);
    await writeFile(join(dir, `${ID}.bin`), Buffer.concat([payload, Buffer.of(0)]));
    await rejectsWith(signPatch(dir, ID, makeKey('other').privateKey, { keyid: 'other' }), 'SIZE_MISMATCH');
  });
});

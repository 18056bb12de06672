/*
 * Benchmark 1 — payload hash throughput.
 *
 * A 256 MiB payload (1 MiB of crypto.randomBytes written 256 times) in a real repository
 * directory, with a real signed manifest. Measured, interleaved, after one warm-up read of
 * each case (so the page cache is warm for all of them):
 *   - baseline: `sha256sum FILE` (spawned; wall time from spawn to exit);
 *   - ours: FileSystemRepository.openPayload(id, size + 1) streamed through
 *     DefaultVerifier.verifyPayload — the code path verifyPatch and `hotpatch verify` run;
 *   - hashProvider('sha256') over the same repository stream (no size checks);
 *   - both again with a larger repository chunkSize (1 MiB);
 *   - reference: node's createReadStream (1 MiB) + createHash, without our repository.
 * Goal (judged on the default repository configuration): ours >= 0.9 × sha256sum throughput.
 * --quick: a 32 MiB payload (sha256sum's start-up then weighs more in its figure).
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DefaultVerifier, FileSystemRepository, hashProvider, type PatchId } from '../src/index.js';
import { DEFAULT_CHUNK_SIZE } from '../src/repo/index.js';
import { makeSignedPatch, makeSigners, makeTrustStore } from './fixtures.js';
import { judge, timeInterleaved, withTempDir, type Row } from './harness.js';

const NAME = 'payload-hash';
const MIB = 1024 * 1024;
const BLOCKS = 256;
const QUICK_BLOCKS = 32;
const LARGE_CHUNK = 1 * MIB;
const GOAL = '>= 0.9';
const ROUNDS = 3;

function sha256sum(file: string): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn('sha256sum', [file], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => (out += d));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) reject(new Error(`sha256sum exited with ${code}`));
      else resolvePromise(out.slice(0, 64));
    });
  });
}

async function hashStream(chunks: AsyncIterable<Uint8Array>): Promise<string> {
  const hasher = hashProvider('sha256').create();
  for await (const chunk of chunks) hasher.update(chunk);
  return Buffer.from(hasher.digest()).toString('hex');
}

async function nodeReference(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file, { highWaterMark: LARGE_CHUNK })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export async function run(options: { quick?: boolean } = {}): Promise<Row[]> {
  const blocks = options.quick === true ? QUICK_BLOCKS : BLOCKS;
  const size = blocks * MIB;
  return withTempDir('xps-bench-payload-', async (dir) => {
    const repoDir = join(dir, 'repo');
    await mkdir(repoDir);
    const id = `bench-payload-${blocks}m` as PatchId;
    const file = join(repoDir, `${id}.bin`);

    // The payload: one random MiB written `blocks` times, hashed while written.
    const block = randomBytes(MIB);
    const expected = createHash('sha256');
    const handle = await open(file, 'w');
    try {
      for (let i = 0; i < blocks; i++) {
        await handle.write(block);
        expected.update(block);
      }
    } finally {
      await handle.close();
    }
    const expectedHex = expected.digest('hex');

    // A real signed manifest (2-of-3 Ed25519) next to it, and its verification up front.
    const signers = makeSigners('ed25519', 3);
    const { store } = makeTrustStore(signers, 2);
    const patch = makeSignedPatch({ id, payloadSha256Hex: expectedHex, payloadSize: size, signedBy: signers.slice(0, 2) });
    await writeFile(join(repoDir, `${id}.json`), patch.envelopeJson);
    const verifier = new DefaultVerifier(store);
    const repoDefault = new FileSystemRepository(repoDir);
    const repoLarge = new FileSystemRepository(repoDir, { chunkSize: LARGE_CHUNK });
    const verified = verifier.verifyEnvelope(await repoDefault.fetchEnvelope(id), { now: Date.now() });

    const check = (what: string) => (hex: string) => {
      if (hex !== expectedHex) throw new Error(`${what} computed ${hex}, expected ${expectedHex}`);
    };
    const kib = (n: number): string => (n >= MIB ? `${n / MIB} MiB` : `${n / 1024} KiB`);
    const defaultLabel = `${kib(repoDefault.chunkSize)} chunks, default`;
    const largeLabel = `${kib(repoLarge.chunkSize)} chunks`;
    const cases = {
      sha256sum: () => sha256sum(file).then(check('sha256sum')),
      verifyDefault: () => verifier.verifyPayload(verified, repoDefault.openPayload(id, size + 1)),
      rawDefault: () => hashStream(repoDefault.openPayload(id, size + 1)).then(check('hashProvider')),
      verifyLarge: () => verifier.verifyPayload(verified, repoLarge.openPayload(id, size + 1)),
      rawLarge: () => hashStream(repoLarge.openPayload(id, size + 1)).then(check('hashProvider')),
      nodeReference: () => nodeReference(file).then(check('createHash')),
    };
    const t = await timeInterleaved(cases, { warmup: 1, rounds: ROUNDS });

    const mbps = (ms: number): number => size / 1e6 / (ms / 1000);
    const base = mbps(t.sha256sum.medianMs);
    const row = (key: keyof typeof cases, label: string, extra: Partial<Row> = {}): Row => {
      const m = mbps(t[key].medianMs);
      return {
        benchmark: NAME,
        case: label,
        unit: 'MB/s',
        median: m,
        best: mbps(t[key].minMs),
        rounds: ROUNDS,
        ...(key === 'sha256sum' ? { status: 'baseline' as const } : { ratio: m / base, baseline: 'sha256sum', status: 'info' as const }),
        ...extra,
      };
    };
    const ratioDefault = mbps(t.verifyDefault.medianMs) / base;
    return [
      row('sha256sum', 'sha256sum FILE (spawn, wall)', { note: `${blocks} MiB file; ${ROUNDS} rounds after 1 warm-up read per case` }),
      row('verifyDefault', `verifyPayload(openPayload) ${defaultLabel}`, {
        goal: GOAL,
        status: judge(ratioDefault, GOAL),
        note:
          `goal judged on this row (default FileSystemRepository, chunkSize ${repoDefault.chunkSize} = DEFAULT_CHUNK_SIZE ${DEFAULT_CHUNK_SIZE}); ` +
          `${((100 * t.nodeReference.medianMs) / t.verifyDefault.medianMs).toFixed(0)}% of the node createReadStream+createHash reference, ` +
          `${((100 * t.verifyLarge.medianMs) / t.verifyDefault.medianMs).toFixed(0)}% of the same path with ${kib(LARGE_CHUNK)} chunks`,
      }),
      row('rawDefault', `hashProvider over openPayload, ${defaultLabel}`),
      row('verifyLarge', `verifyPayload(openPayload) ${largeLabel}`),
      row('rawLarge', `hashProvider over openPayload, ${largeLabel}`),
      row('nodeReference', 'node createReadStream(1 MiB)+createHash'),
    ];
  });
}

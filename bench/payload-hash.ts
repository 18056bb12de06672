/*
 * Benchmark 1 — payload hash throughput.
 *
 * A 256 MiB payload (1 MiB of crypto.randomBytes written 256 times) in a real repository
 * directory, with a real signed 2-of-3 Ed25519 manifest. Every case reads and hashes that one
 * file, in the same process and the same run:
 *   - baseline: node's createReadStream(file, { highWaterMark: 1 MiB }) + createHash('sha256');
 *   - ours: verifyPatch(new FileSystemRepository(dir), verifier, id) — the default path of
 *     verifyPatch and `hotpatch verify` (envelope fetched and verified too: well under 1 ms),
 *     whose openPayload reads in the default 1 MiB chunks, one read ahead;
 *   - verifier.verifyPayload(verified, openPayload(id, size + 1)) of a FileSystemRepository
 *     with an explicit chunkSize of 64 KiB (the default before 1 MiB), still one read ahead;
 *   - node createReadStream with its default highWaterMark (64 KiB) + createHash;
 *   - `sha256sum FILE` (spawned; wall time from spawn to exit).
 * One warm-up round (the page cache is warm for every case), then ROUNDS rounds; each round
 * runs the goal's pair (baseline and ours) back to back, which one first alternating, then the
 * other cases in an order rotated every round, so that a burst of load from elsewhere on the
 * shared machine hits the compared cases alike. Ratios are per round (each case against the
 * baseline of the same round), and the median of those is reported; the note adds the ratio
 * of the medians.
 * Goal: ours >= 0.9 × the baseline's throughput.
 * --quick: a 32 MiB payload.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { FileSystemRepository, verifyPatch, type PatchId } from '../src/index.js';
import { DEFAULT_REPOSITORY_CHUNK_SIZE } from '../src/repo/index.js';
import { writeSignedPayload } from './fixtures.js';
import { elapsedMs, judge, median, withTempDir, type Row } from './harness.js';

const NAME = 'payload-hash';
const MIB = 1024 * 1024;
const BLOCKS = 256;
const QUICK_BLOCKS = 32;
const REFERENCE_CHUNK = 1 * MIB;
/** The explicit chunkSize of the "openPayload" case: the 64 KiB default a repository had before. */
const SMALL_CHUNK = 64 * 1024;
const GOAL = '>= 0.9';
const ROUNDS = 11;

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

async function nodeReference(file: string, highWaterMark?: number): Promise<string> {
  const hash = createHash('sha256');
  const stream = highWaterMark === undefined ? createReadStream(file) : createReadStream(file, { highWaterMark });
  for await (const chunk of stream) hash.update(chunk as Buffer);
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

    // The payload and a real signed manifest (2-of-3 Ed25519) next to it.
    const { verifier, expectedHex } = await writeSignedPayload(repoDir, id, blocks);
    const repo = new FileSystemRepository(repoDir);
    const repoSmall = new FileSystemRepository(repoDir, { chunkSize: SMALL_CHUNK });
    const verified = verifier.verifyEnvelope(await repo.fetchEnvelope(id), { now: Date.now() });

    const check = (what: string) => (hex: string) => {
      if (hex !== expectedHex) throw new Error(`${what} computed ${hex}, expected ${expectedHex}`);
    };
    const kib = (n: number): string => (n >= MIB ? `${n / MIB} MiB` : `${n / 1024} KiB`);
    const cases = {
      reference: {
        label: `node createReadStream(${kib(REFERENCE_CHUNK)})+createHash`,
        op: () => nodeReference(file, REFERENCE_CHUNK).then(check('createHash')),
      },
      verifyPatch: {
        label: 'verifyPatch(FileSystemRepository), default',
        op: () => verifyPatch(repo, verifier, id),
      },
      openPayload: {
        label: `verifyPayload(openPayload), chunkSize ${kib(repoSmall.chunkSize)}`,
        op: () => verifier.verifyPayload(verified, repoSmall.openPayload(id, size + 1)),
      },
      referenceDefault: {
        label: 'node createReadStream (default 64 KiB)+createHash',
        op: () => nodeReference(file).then(check('createHash')),
      },
      sha256sum: {
        label: 'sha256sum FILE (spawn, wall)',
        op: () => sha256sum(file).then(check('sha256sum')),
      },
    };
    type Key = keyof typeof cases;
    const keys = Object.keys(cases) as Key[];
    const others = keys.filter((k) => k !== 'reference' && k !== 'verifyPatch');

    // One warm-up round, then ROUNDS rounds. In each, the goal's pair runs back to back (which
    // of the two goes first alternates), then the other cases in an order rotated every round.
    for (const key of keys) await cases[key].op();
    const ms = Object.fromEntries(keys.map((k) => [k, [] as number[]])) as Record<Key, number[]>;
    for (let r = 0; r < ROUNDS; r++) {
      const pair: Key[] = r % 2 === 0 ? ['reference', 'verifyPatch'] : ['verifyPatch', 'reference'];
      const rest = others.map((_, i) => others[(i + r) % others.length]!);
      for (const key of [...pair, ...rest]) ms[key].push(await elapsedMs(cases[key].op));
    }

    const mbps = (t: number): number => size / 1e6 / (t / 1000);
    /** Per round: this case's throughput over the baseline's in the same round; their median. */
    const pairedRatio = (key: Key): number => median(ms[key].map((t, r) => ms.reference[r]! / t));
    const row = (key: Key, extra: Partial<Row> = {}): Row => {
      const m = mbps(median(ms[key]));
      return {
        benchmark: NAME,
        case: cases[key].label,
        unit: 'MB/s',
        median: m,
        best: mbps(Math.min(...ms[key])),
        rounds: ROUNDS,
        ...(key === 'reference' ? { status: 'baseline' as const } : { ratio: pairedRatio(key), baseline: cases.reference.label, status: 'info' as const }),
        ...extra,
      };
    };
    const ratio = pairedRatio('verifyPatch');
    const ratioOfMedians = median(ms.reference) / median(ms.verifyPatch);
    return [
      row('reference', {
        note:
          `${blocks} MiB file; 1 warm-up round, then ${ROUNDS} rounds: this case and verifyPatch back to back (alternating which goes first), ` +
          'then the others in a rotating order; ratios: median over rounds of the ratio within each round',
      }),
      row('verifyPatch', {
        goal: GOAL,
        status: judge(ratio, GOAL),
        note:
          `goal judged on this row: default FileSystemRepository (chunkSize ${kib(repo.chunkSize)} = DEFAULT_REPOSITORY_CHUNK_SIZE ${kib(DEFAULT_REPOSITORY_CHUNK_SIZE)}), ` +
          `whose openPayload reads ${kib(repo.chunkSize)} chunks, one read ahead; ratio of the medians ${ratioOfMedians.toFixed(2)}×`,
      }),
      row('openPayload', { note: `an explicit chunkSize of ${kib(SMALL_CHUNK)} (the old default): ${kib(SMALL_CHUNK)} reads, one read ahead` }),
      row('referenceDefault'),
      row('sha256sum'),
    ];
  });
}

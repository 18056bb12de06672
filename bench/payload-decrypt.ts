/*
 * Benchmark — decrypting an encrypted payload (README "Encrypted payloads").
 *
 * A 256 MiB payload (1 MiB of crypto.randomBytes repeated) encrypted with encryptPayload to an
 * X25519 recipient, in 1 MiB chunks, the ciphertext in a file. Cases, in the same process and
 * run, each reading that file with createReadStream (1 MiB reads):
 *   - baseline: raw node:crypto — one AES-256-GCM decipher updated with every ciphertext byte,
 *     and createHash('sha256') of its output: the same two primitives over the same bytes, with
 *     no chunk framing, no per-chunk authentication and no key unwrapping;
 *   - ours: decryptPayload(encryption, id, key, chunks) — the data key unwrapped, every 1 MiB
 *     chunk authenticated, the plaintext's size and HMAC-SHA256 checked at the end (what staging does
 *     before it writes a byte);
 *   - the same with 64 KiB chunks (a payload encrypted with chunkSize 64 KiB).
 * One warm-up round, then ROUNDS rounds; the goal's pair runs back to back (which first
 * alternating), the other case after; ratios are per round, their median reported.
 * Goal: ours >= 0.8 × the baseline's throughput.
 * --quick: a 32 MiB payload and 2 rounds.
 */
import { createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import { decryptPayload, encryptPayload, generateRecipientKey } from '../src/crypto-agile/index.js';
import type { ManifestEncryption } from '../src/core/index.js';
import { writeFileAtomic } from '../src/repo/index.js';
import { elapsedMs, judge, median, withTempDir, type Row } from './harness.js';

const NAME = 'payload-decrypt';
const MIB = 1024 * 1024;
const FULL = { blocks: 256, rounds: 7 };
const QUICK = { blocks: 32, rounds: 2 };
const GOAL = '>= 0.8';
const ID = 'bench-encrypted';

async function* plaintext(blocks: number): AsyncGenerator<Uint8Array> {
  const block = randomBytes(MIB);
  for (let i = 0; i < blocks; i++) yield block;
}

async function encryptedFile(file: string, blocks: number, chunkSize: number, key: ReturnType<typeof generateRecipientKey>): Promise<ManifestEncryption> {
  const run = encryptPayload(plaintext(blocks), [{ kid: 'bench', key: key.publicKey }], { patchId: ID, chunkSize });
  await writeFileAtomic(file, run.ciphertext);
  return run.result().encryption;
}

const chunksOf = (file: string): AsyncIterable<Uint8Array> => createReadStream(file, { highWaterMark: MIB }) as AsyncIterable<Uint8Array>;

async function rawDecryptHash(file: string): Promise<string> {
  const decipher = createDecipheriv('aes-256-gcm', randomBytes(32), randomBytes(12));
  const hash = createHash('sha256');
  for await (const chunk of chunksOf(file)) hash.update(decipher.update(chunk));
  return hash.digest('hex'); // no final(): the tag is not this baseline's to check
}

async function ours(file: string, encryption: ManifestEncryption, key: ReturnType<typeof generateRecipientKey>): Promise<number> {
  let size = 0;
  for await (const piece of decryptPayload(encryption, ID, key.privateKey, chunksOf(file))) size += piece.length;
  return size;
}

export async function run(options: { quick?: boolean } = {}): Promise<Row[]> {
  const { blocks, rounds } = options.quick === true ? QUICK : FULL;
  const size = blocks * MIB;
  const key = generateRecipientKey('x25519-hkdf-sha256');
  return withTempDir('xps-bench-decrypt-', async (dir) => {
    const big = join(dir, 'payload-1m.bin');
    const small = join(dir, 'payload-64k.bin');
    const encBig = await encryptedFile(big, blocks, MIB, key);
    const encSmall = await encryptedFile(small, blocks, 64 * 1024, key);
    const check = (got: number): void => {
      if (got !== size) throw new Error(`decrypted ${got} bytes, expected ${size}`);
    };
    const cases = {
      raw: { label: 'node AES-256-GCM update + SHA-256 (one stream)', op: () => rawDecryptHash(big) },
      ours: { label: 'decryptPayload, 1 MiB chunks (unwrap, per-chunk auth, plaintext MAC)', op: () => ours(big, encBig, key).then(check) },
      small: { label: 'decryptPayload, 64 KiB chunks', op: () => ours(small, encSmall, key).then(check) },
    };
    type Key = keyof typeof cases;
    const keys = Object.keys(cases) as Key[];
    for (const k of keys) await cases[k].op();
    const ms = Object.fromEntries(keys.map((k) => [k, [] as number[]])) as Record<Key, number[]>;
    for (let r = 0; r < rounds; r++) {
      const pair: Key[] = r % 2 === 0 ? ['raw', 'ours'] : ['ours', 'raw'];
      for (const k of [...pair, 'small' as const]) ms[k].push(await elapsedMs(cases[k].op));
    }
    const mbps = (t: number): number => size / 1e6 / (t / 1000);
    const paired = (k: Key): number => median(ms[k].map((t, r) => ms.raw[r]! / t));
    const row = (k: Key, extra: Partial<Row> = {}): Row => ({
      benchmark: NAME,
      case: cases[k].label,
      unit: 'MB/s',
      median: mbps(median(ms[k])),
      best: mbps(Math.min(...ms[k])),
      rounds,
      ...(k === 'raw' ? { status: 'baseline' as const } : { ratio: paired(k), baseline: cases.raw.label, status: 'info' as const }),
      ...extra,
    });
    const ratio = paired('ours');
    return [
      row('raw', {
        note: `${blocks} MiB payload encrypted to an X25519 recipient, read with createReadStream (1 MiB); 1 warm-up round, then ${rounds} rounds; ratios: median of per-round ratios`,
      }),
      row('ours', { goal: GOAL, status: judge(ratio, GOAL), note: 'goal judged on this row' }),
      row('small'),
    ];
  });
}

/*
 * Benchmark 3 — `hotpatch verify` start-to-exit time.
 *
 * A small patch (4 KiB ES module payload, 2-of-3 Ed25519 manifest) in a temporary repository.
 * Spawned, interleaved, 10 measured runs each after 2 warm-up runs:
 *   - `node dist/src/cli/main.js verify --repo DIR --id ID --trust FILE` (must exit 0);
 *   - baseline: `node -e 0` (the cost of starting and stopping node at all);
 *   - reference: `node dist/src/cli/main.js --help` (start-up plus loading every module,
 *     without any verification work), to split the difference into loading vs verifying.
 * No goal: the figures and the difference are reported.
 * --quick: 3 measured runs per case after 1 warm-up run.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CLI_MAIN, PACKAGE_ROOT, makeSignedPatch, makeSigners, makeTrustStore } from './fixtures.js';
import { timeInterleaved, withTempDir, type Row } from './harness.js';

const NAME = 'cli-verify';
const FULL = { rounds: 10, warmup: 2 };
const QUICK = { rounds: 3, warmup: 1 };
const PAYLOAD_BYTES = 4096;

function runNode(args: string[]): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, args, { cwd: PACKAGE_ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolvePromise();
      else reject(new Error(`node ${args.join(' ')} exited with ${code}: ${err.trim()}`));
    });
  });
}

export async function run(options: { quick?: boolean } = {}): Promise<Row[]> {
  const { rounds: ROUNDS, warmup } = options.quick === true ? QUICK : FULL;
  return withTempDir('xps-bench-cli-', async (dir) => {
    const repoDir = join(dir, 'repo');
    await mkdir(repoDir);
    const id = 'bench-cli-small';
    const payload = Buffer.concat([
      Buffer.from('export const api = { digest: (b) => b };\n// '),
      Buffer.from(
        randomBytes(PAYLOAD_BYTES)
          .toString('base64')
          .slice(0, PAYLOAD_BYTES - 44),
      ),
      Buffer.from('\n'),
    ]);
    const signers = makeSigners('ed25519', 3);
    const { document } = makeTrustStore(signers, 2);
    const patch = makeSignedPatch({
      id,
      payloadSha256Hex: createHash('sha256').update(payload).digest('hex'),
      payloadSize: payload.length,
      signedBy: signers.slice(0, 2),
    });
    await writeFile(join(repoDir, `${id}.bin`), payload);
    await writeFile(join(repoDir, `${id}.json`), patch.envelopeJson);
    const trustFile = join(dir, 'trust.json');
    await writeFile(trustFile, JSON.stringify(document, null, 2));

    const verifyArgs = [CLI_MAIN, 'verify', '--repo', repoDir, '--id', id, '--trust', trustFile];
    const t = await timeInterleaved(
      {
        baseline: () => runNode(['-e', '0']),
        help: () => runNode([CLI_MAIN, '--help']),
        verify: () => runNode(verifyArgs),
      },
      { warmup, rounds: ROUNDS },
    );

    const diff = t.verify.medianMs - t.baseline.medianMs;
    const loadDiff = t.help.medianMs - t.baseline.medianMs;
    return [
      {
        benchmark: NAME,
        case: 'node -e 0',
        unit: 'ms',
        median: t.baseline.medianMs,
        best: t.baseline.minMs,
        rounds: ROUNDS,
        status: 'baseline',
        note: `spawn to exit; ${ROUNDS} runs per case after ${warmup} warm-up run(s), interleaved`,
      },
      {
        benchmark: NAME,
        case: 'hotpatch --help',
        unit: 'ms',
        median: t.help.medianMs,
        best: t.help.minMs,
        rounds: ROUNDS,
        ratio: t.help.medianMs / t.baseline.medianMs,
        baseline: 'node -e 0',
        status: 'info',
        note: `+${loadDiff.toFixed(1)} ms over node -e 0 (module loading, no verification)`,
      },
      {
        benchmark: NAME,
        case: 'hotpatch verify (small patch)',
        unit: 'ms',
        median: t.verify.medianMs,
        best: t.verify.minMs,
        rounds: ROUNDS,
        ratio: t.verify.medianMs / t.baseline.medianMs,
        baseline: 'node -e 0',
        status: 'info',
        note: `+${diff.toFixed(1)} ms over node -e 0 (${(t.verify.medianMs - t.help.medianMs).toFixed(1)} ms over --help)`,
      },
      {
        benchmark: NAME,
        case: 'verify − node -e 0',
        unit: 'ms',
        median: diff,
        best: t.verify.minMs - t.baseline.minMs,
        rounds: ROUNDS,
        status: 'info',
      },
    ];
  });
}

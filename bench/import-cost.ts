/*
 * Benchmark 9 — import cost: what `import` of the package root costs a process.
 *
 * Spawned, interleaved (one of each case per round, so a burst of load hits every case alike),
 * wall time from spawn to exit, median of the measured rounds after warm-up rounds:
 *   - baseline: `node -e 0` (starting and stopping node at all);
 *   - reference: `node --input-type=module -e 0` (the same with the ESM loader for the
 *     evaluated code, to separate its cost from the import);
 *   - ours: `node --input-type=module -e "await import('<repo>/dist/src/index.js')"`, the
 *     package root as a service's `import ... from 'xps-hotpatch'` loads it.
 * Goal (reported, not asserted): the root import costs at most 100 ms over `node -e 0`.
 *
 * --quick: 5 rounds after 1 warm-up round (full: 20 after 2).
 */
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { PACKAGE_ROOT } from './fixtures.js';
import { judge, timeInterleaved, type Row } from './harness.js';

const NAME = 'import-cost';
const ROOT_MODULE = resolve(PACKAGE_ROOT, 'dist', 'src', 'index.js');
const GOAL_EXTRA_MS = 100;
const GOAL = '<= 1';
const FULL = { rounds: 20, warmup: 2 };
const QUICK = { rounds: 5, warmup: 1 };

const signed = (ms: number): string => `${ms >= 0 ? '+' : '−'}${Math.abs(ms).toFixed(1)} ms`;

function runNode(args: readonly string[]): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, args, { cwd: PACKAGE_ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => (err += d));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === 0) resolvePromise();
      else reject(new Error(`node ${args.join(' ')} exited with ${code ?? signal}: ${err.trim()}`));
    });
  });
}

export async function run(options: { quick?: boolean } = {}): Promise<Row[]> {
  const { rounds, warmup } = options.quick === true ? QUICK : FULL;
  const importCode = `await import(${JSON.stringify(pathToFileURL(ROOT_MODULE).href)})`;
  const t = await timeInterleaved(
    {
      baseline: () => runNode(['-e', '0']),
      esm: () => runNode(['--input-type=module', '-e', '0']),
      root: () => runNode(['--input-type=module', '-e', importCode]),
    },
    { warmup, rounds },
  );
  const extra = t.root.medianMs - t.baseline.medianMs;
  const ratio = extra / GOAL_EXTRA_MS;
  return [
    {
      benchmark: NAME,
      case: 'node -e 0',
      unit: 'ms',
      median: t.baseline.medianMs,
      best: t.baseline.minMs,
      rounds,
      status: 'baseline',
      note: `spawn to exit; ${rounds} runs per case after ${warmup} warm-up run(s), interleaved`,
    },
    {
      benchmark: NAME,
      case: 'node --input-type=module -e 0 (reference)',
      unit: 'ms',
      median: t.esm.medianMs,
      best: t.esm.minMs,
      rounds,
      ratio: t.esm.medianMs / t.baseline.medianMs,
      baseline: 'node -e 0',
      status: 'info',
      note: `${signed(t.esm.medianMs - t.baseline.medianMs)} over node -e 0`,
    },
    {
      benchmark: NAME,
      case: 'node --input-type=module -e "await import(\'<repo>/dist/src/index.js\')"',
      unit: 'ms',
      median: t.root.medianMs,
      best: t.root.minMs,
      rounds,
      ratio: t.root.medianMs / t.baseline.medianMs,
      baseline: 'node -e 0',
      status: 'info',
      note: `${signed(extra)} over node -e 0 (${signed(t.root.medianMs - t.esm.medianMs)} over --input-type=module -e 0)`,
    },
    {
      benchmark: NAME,
      case: 'root import − node -e 0',
      unit: 'ms',
      median: extra,
      best: t.root.minMs - t.baseline.minMs,
      rounds,
      ratio,
      baseline: `${GOAL_EXTRA_MS} ms`,
      goal: GOAL,
      status: judge(ratio, GOAL),
      note: `goal: the root import costs <= ${GOAL_EXTRA_MS} ms over node -e 0 (medians)`,
    },
  ];
}

/*
 * Benchmark 8 — demo-noisy: `hotpatch demo` beside two CPU-burning neighbours.
 *
 * Two busy-looping node processes (test/support/cpu-burners.ts) start first and run through
 * every demo; then `node dist/src/cli/main.js demo --json` runs 20 times in a row (--quick: 2).
 * A run passes when it exits 0 and its last stdout line is a JSON object with ok: true.
 * Reported: passes out of runs (goal: all of them), the median time of a demo, and for each
 * failed run its reason — the message of the demo's JSON line and the outcome of each plan
 * (or, without a JSON line, the end of its stderr). The burners are killed in `finally`.
 */
import { startCpuBurners } from '../test/support/cpu-burners.js';
import { runNode, type NodeRun } from '../test/support/run-node.js';
import { CLI_MAIN, PACKAGE_ROOT } from './fixtures.js';
import { judge, median, type Row } from './harness.js';

const NAME = 'demo-noisy';
const RUNS = 20;
const QUICK_RUNS = 2;
const BURNERS = 2;
/** Only ends a demo that hangs for good. */
const HANG_GUARD_MS = 5 * 60_000;

/** Why a run failed, from its JSON line (message and each plan's outcome) or its stderr. */
function failureReason(r: NodeRun): string {
  if (r.hung) return `hung: killed after ${HANG_GUARD_MS / 1000} s`;
  const j = r.json;
  if (j === undefined) {
    const err = r.stderr.trim().split('\n').slice(-3).join(' | ');
    return `exit ${r.status ?? r.signal}, no JSON line; stderr: ${err || '(empty)'}`;
  }
  const parts = [`exit ${r.status ?? r.signal}: ${String(j.code)}: ${String(j.message)}`];
  const detail = (j.detail ?? j) as Record<string, unknown>;
  const results = Array.isArray(detail.results) ? (detail.results as Record<string, unknown>[]) : [];
  for (const p of results) parts.push(`${String(p.planId)}: ${String(p.status)}${p.reason === undefined ? '' : ` (${String(p.reason)})`}`);
  if (typeof detail.rollbackReason === 'string') parts.push(`rollback reason: ${detail.rollbackReason}`);
  if (typeof detail.failed === 'number' && detail.failed > 0) parts.push(`${detail.failed} requests failed`);
  return parts.join('; ');
}

export async function run(options: { quick?: boolean } = {}): Promise<Row[]> {
  const runs = options.quick === true ? QUICK_RUNS : RUNS;
  const burners = await startCpuBurners(BURNERS);
  console.log(`${runs} demos beside ${BURNERS} CPU burners (pids ${burners.pids.join(', ')})`);
  const seconds: number[] = [];
  const failures: { run: number; reason: string }[] = [];
  try {
    for (let i = 1; i <= runs; i++) {
      const t0 = performance.now();
      const r = await runNode([CLI_MAIN, 'demo', '--json'], { cwd: PACKAGE_ROOT, hangGuardMs: HANG_GUARD_MS });
      const s = (performance.now() - t0) / 1000;
      seconds.push(s);
      const ok = r.status === 0 && r.json?.ok === true;
      if (!ok) failures.push({ run: i, reason: failureReason(r) });
      console.log(
        `  demo ${String(i).padStart(2)}/${runs}: ${ok ? 'passed' : 'FAILED'} in ${s.toFixed(1)} s${ok ? '' : ` — ${failures[failures.length - 1]!.reason}`}`,
      );
    }
  } finally {
    await burners.stop();
  }
  const passes = runs - failures.length;
  console.log(`\n${passes}/${runs} demos passed beside ${BURNERS} CPU burners`);
  if (failures.length > 0) {
    console.log('failed runs:');
    for (const f of failures) console.log(`  run ${f.run}: ${f.reason}`);
  }
  return [
    {
      benchmark: NAME,
      case: `demo passes beside ${BURNERS} CPU burners`,
      unit: 'runs',
      median: passes,
      best: passes,
      rounds: runs,
      ratio: passes / runs,
      baseline: 'runs',
      goal: '>= 1',
      status: judge(passes / runs, '>= 1'),
      note: `${passes}/${runs} passed${failures.length === 0 ? '' : `; first failure (run ${failures[0]!.run}): ${failures[0]!.reason}`}`,
    },
    {
      benchmark: NAME,
      case: 'one demo, start to exit',
      unit: 's',
      median: median(seconds),
      best: Math.min(...seconds),
      rounds: runs,
      status: 'info',
    },
  ];
}

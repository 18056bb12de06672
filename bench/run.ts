/*
 * Runs the benchmarks and prints, for each, a table of figures with ratios against
 * baselines measured in the same run and the goal next to each; then a summary of the goals
 * and, as the very last line of standard output, one JSON object with every figure.
 *
 *   npm run bench                       # everything
 *   node dist/bench/run.js manifest     # only benchmarks whose name contains "manifest"
 *
 * Missed goals are reported ("goal missed"), never turned into a failing exit status; the
 * status is non-zero only when a benchmark could not run at all (1) or the filter matched
 * nothing (2).
 */
import { cpus } from 'node:os';
import { run as cliVerify } from './cli-verify.js';
import { run as fleetRollout } from './fleet-rollout.js';
import { formatRatio, formatTable, roundFigure, type Row } from './harness.js';
import { run as manifestVerify } from './manifest-verify.js';
import { run as payloadHash } from './payload-hash.js';
import { run as runtimeCalls } from './runtime-calls.js';
import { run as runtimeSwaps } from './runtime-swaps.js';

const BENCHMARKS: readonly { name: string; run: () => Promise<Row[]> }[] = [
  { name: 'payload-hash', run: payloadHash },
  { name: 'manifest-verify', run: manifestVerify },
  { name: 'cli-verify', run: cliVerify },
  { name: 'runtime-calls', run: runtimeCalls },
  { name: 'runtime-swaps', run: runtimeSwaps },
  { name: 'fleet-rollout', run: fleetRollout },
];

async function main(): Promise<number> {
  const filter = process.argv[2];
  const selected = BENCHMARKS.filter((b) => filter === undefined || b.name.includes(filter));
  if (selected.length === 0) {
    console.error(`no benchmark matches ${JSON.stringify(filter)} (benchmarks: ${BENCHMARKS.map((b) => b.name).join(', ')})`);
    return 2;
  }
  const cpuList = cpus();
  console.log(
    `xps-hotpatch benchmarks — node ${process.version}, ${process.platform}-${process.arch}, ` +
      `${cpuList.length} × ${cpuList[0]?.model.trim() ?? 'unknown CPU'}`,
  );

  const rows: Row[] = [];
  const errors: { benchmark: string; error: string }[] = [];
  const started = process.hrtime.bigint();
  for (const b of selected) {
    console.log(`\n== ${b.name} ==`);
    const t0 = process.hrtime.bigint();
    try {
      const result = await b.run();
      rows.push(...result);
      console.log(formatTable(result));
      console.log(`(${(Number(process.hrtime.bigint() - t0) / 1e9).toFixed(1)} s)`);
    } catch (error) {
      const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
      errors.push({ benchmark: b.name, error: error instanceof Error ? error.message : String(error) });
      console.log(`FAILED to run: ${message}`);
    }
  }
  const totalS = Number(process.hrtime.bigint() - started) / 1e9;

  const goals = rows.filter((r) => r.goal !== undefined);
  console.log('\n== goals ==');
  for (const r of goals) {
    console.log(`${r.status.padEnd(11)}  ${r.benchmark}: ${r.case}: ${formatRatio(r.ratio)} vs ${r.baseline} (goal ${r.goal}×)`);
  }
  for (const e of errors) console.log(`not run      ${e.benchmark}: ${e.error}`);
  console.log(`total ${totalS.toFixed(1)} s`);

  console.log(
    JSON.stringify({
      bench: 'xps-hotpatch',
      node: process.version,
      platform: `${process.platform}-${process.arch}`,
      cpus: cpuList.length,
      cpu: cpuList[0]?.model.trim(),
      date: new Date().toISOString(),
      totalSeconds: roundFigure(totalS),
      results: rows.map((r) => ({
        ...r,
        median: roundFigure(r.median),
        best: roundFigure(r.best),
        ...(r.ratio === undefined ? {} : { ratio: roundFigure(r.ratio) }),
      })),
      goals: goals.map((r) => ({ benchmark: r.benchmark, case: r.case, ratio: roundFigure(r.ratio!), goal: r.goal, status: r.status })),
      errors,
    }),
  );
  return errors.length > 0 ? 1 : 0;
}

process.exitCode = await main();

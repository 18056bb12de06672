/*
 * Runs the benchmarks and prints, for each, a table of figures with ratios against
 * baselines measured in the same run and the goal next to each; then a summary of the goals
 * and, as the very last line of standard output, one JSON object with every figure.
 *
 *   npm run bench                       # everything
 *   node dist/bench/run.js manifest     # only benchmarks whose name contains "manifest"
 *   node dist/bench/run.js canary-judge --quick --seed 42
 *
 * Flags, anywhere in the arguments: --quick (a short run, for CI and for trying things out:
 * every benchmark runs in it, each shortening what it measures, see each file's header) and
 * --seed N (benchmarks that make random choices take them from a PRNG seeded with N and print
 * the seed they used).
 *
 * Missed goals are reported ("goal missed"), never turned into a failing exit status; the
 * status is non-zero only when a benchmark could not run at all (1), or the arguments were
 * wrong or the filter matched nothing (2). In --quick mode a benchmark that has not finished
 * after QUICK_LIMIT_S seconds counts as one that could not run: the run stops there (the
 * benchmarks after it are reported not run), prints its summary and exits with 1.
 */
import { cpus } from 'node:os';
import { run as canaryJudge } from './canary-judge.js';
import { run as cliVerify } from './cli-verify.js';
import { run as dashboardRender } from './dashboard-render.js';
import { run as demoNoisy } from './demo-noisy.js';
import { run as fleetProcesses } from './fleet-processes.js';
import { run as fleetRollout } from './fleet-rollout.js';
import { formatRatio, formatTable, roundFigure, type Row } from './harness.js';
import { run as httpFetch } from './http-fetch.js';
import { run as importCost } from './import-cost.js';
import { run as isolationCalls } from './isolation-calls.js';
import { run as manifestVerify } from './manifest-verify.js';
import { run as keySign } from './key-sign.js';
import { run as payloadDecrypt } from './payload-decrypt.js';
import { run as payloadHash } from './payload-hash.js';
import { run as peerReload } from './peer-reload.js';
import { run as runtimeCalls } from './runtime-calls.js';
import { run as runtimeSwaps } from './runtime-swaps.js';

/** In --quick mode, a benchmark still running after this long is taken for hung. */
const QUICK_LIMIT_S = 300;

/** What every benchmark's run() is given. */
interface BenchOptions {
  /** A short run (--quick). */
  quick: boolean;
  /** Seed for the benchmark's random choices (--seed N); undefined: the benchmark picks and prints one. */
  seed: number | undefined;
}

const BENCHMARKS: readonly { name: string; run: (options: BenchOptions) => Promise<Row[]> }[] = [
  { name: 'payload-hash', run: payloadHash },
  { name: 'http-fetch', run: httpFetch },
  { name: 'payload-decrypt', run: payloadDecrypt },
  { name: 'key-sign', run: keySign },
  { name: 'manifest-verify', run: manifestVerify },
  { name: 'cli-verify', run: cliVerify },
  { name: 'runtime-calls', run: runtimeCalls },
  { name: 'runtime-swaps', run: runtimeSwaps },
  { name: 'isolation-calls', run: isolationCalls },
  { name: 'fleet-rollout', run: fleetRollout },
  { name: 'fleet-processes', run: fleetProcesses },
  { name: 'canary-judge', run: canaryJudge },
  { name: 'demo-noisy', run: demoNoisy },
  { name: 'import-cost', run: importCost },
  { name: 'dashboard-render', run: dashboardRender },
  { name: 'peer-reload', run: peerReload },
];

/** The benchmark's rows, or 'timeout' when it is still running after `limitS` seconds. */
async function runLimited(run: Promise<Row[]>, limitS: number | undefined): Promise<Row[] | 'timeout'> {
  if (limitS === undefined) return run;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), limitS * 1000);
  });
  try {
    return await Promise.race([run, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** The filter (first argument that is not a flag) and the flags, wherever they stand. */
function parseArgs(argv: readonly string[]): { filter: string | undefined; options: BenchOptions } | { error: string } {
  const options: BenchOptions = { quick: false, seed: undefined };
  let filter: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--quick') options.quick = true;
    else if (a === '--seed' || a.startsWith('--seed=')) {
      const value = a === '--seed' ? argv[++i] : a.slice('--seed='.length);
      const seed = Number(value);
      if (value === undefined || value === '' || !Number.isSafeInteger(seed) || seed < 0)
        return { error: `--seed needs a non-negative integer, got ${JSON.stringify(value)}` };
      options.seed = seed;
    } else if (a.startsWith('--')) return { error: `unknown flag ${a} (flags: --quick, --seed N)` };
    else if (filter === undefined) filter = a;
    else return { error: `one filter only, got ${JSON.stringify(filter)} and ${JSON.stringify(a)}` };
  }
  return { filter, options };
}

/** Set when a benchmark overran the --quick limit: its work is still pending, so the process must be ended. */
let hung = false;

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  if ('error' in args) {
    console.error(args.error);
    return 2;
  }
  const { filter, options } = args;
  const selected = BENCHMARKS.filter((b) => filter === undefined || b.name.includes(filter));
  if (selected.length === 0) {
    console.error(`no benchmark matches ${JSON.stringify(filter)} (benchmarks: ${BENCHMARKS.map((b) => b.name).join(', ')})`);
    return 2;
  }
  const cpuList = cpus();
  console.log(
    `xps-hotpatch benchmarks — node ${process.version}, ${process.platform}-${process.arch}, ` +
      `${cpuList.length} × ${cpuList[0]?.model.trim() ?? 'unknown CPU'}${options.quick ? ' (quick)' : ''}`,
  );

  const rows: Row[] = [];
  const errors: { benchmark: string; error: string }[] = [];
  const started = process.hrtime.bigint();
  const limitS = options.quick ? QUICK_LIMIT_S : undefined;
  let hungName: string | undefined;
  for (const b of selected) {
    if (hung) {
      errors.push({ benchmark: b.name, error: `skipped: ${hungName} did not finish before it` });
      continue;
    }
    console.log(`\n== ${b.name} ==`);
    const t0 = process.hrtime.bigint();
    try {
      const result = await runLimited(b.run(options), limitS);
      if (result === 'timeout') {
        hung = true;
        hungName = b.name;
        const message = `did not finish within ${limitS} s (the --quick limit per benchmark)`;
        errors.push({ benchmark: b.name, error: message });
        console.log(`FAILED to run: ${message}`);
        continue;
      }
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
      quick: options.quick,
      ...(options.seed === undefined ? {} : { seed: options.seed }),
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
// A hung benchmark's timers, children and sockets would keep the process alive: end it (the
// exit hooks of the CPU burners and etcd members kill those children).
if (hung) process.exit();

/*
 * Benchmark 7 — canary-judge: does the canary judge, with its DEFAULT options, promote good
 * patches and roll back faulty ones, quickly and with little exposure, beside a quiet and a
 * busy neighbour?
 *
 *   node dist/bench/run.js canary-judge            # 13 kinds × 8 = 104 patches (~4 min)
 *   node dist/bench/run.js canary-judge --quick    # one patch per kind (13, ~40 s)
 *   node dist/bench/run.js canary-judge --seed 42  # repeat a run's random choices
 *
 * The parts: canary-judge-calibrate.ts (what "15 % slower" costs on this machine, checked on
 * the real payloads), canary-judge-patches.ts (targets and the 13 kinds of patch),
 * canary-judge-load.ts (the callers), canary-judge-trial.ts (one run and its verdict),
 * canary-judge-report.ts (the figures and the goals).
 *
 * Each run applies one synthetic patch with `twoPhaseApply` on a real signed payload file,
 * staged and imported by DynamicInstaller, its signature checked by DefaultVerifier; in a
 * fresh runtime with a fresh target, under load: sync targets in batches of 100 calls between
 * event-loop turns, the async target with 256 calls in flight (its calls last ~13 ms, so it
 * takes that many to give a 0.5 % first step enough calls). Every other run has one CPU-burning
 * child process beside it. Judge options: the defaults, except `retryOnBaseline: true` (the
 * targets are idempotent) and `probationMs: 2000`.
 *
 * Runs are interleaved (kind 1..13, then again), so a burst of load from elsewhere on the
 * machine hits every kind alike; quiet and noisy runs alternate; targets rotate per kind.
 * Every random choice the bench makes (payload PRNG seeds, fails-after-N's N, input prefixes)
 * comes from a PRNG seeded with the printed seed; the judge's own routing and jitter are left
 * to its defaults. A missed goal is reported, never an error; a run that cannot execute throws.
 */
import { availableParallelism, loadavg } from 'node:os';
import { withTempDir, type Row } from './harness.js';
import { calibrate, describeCheck, refineCalibration } from './canary-judge-calibrate.js';
import { FAIL_AFTER_MAX, FAIL_AFTER_MIN, KINDS, counters, type Calibration } from './canary-judge-patches.js';
import { printReport, reportRows } from './canary-judge-report.js';
import { runTrial, type RunContext, type RunPlan, type RunResult } from './canary-judge-trial.js';
import { patchSigner } from './runtime-calls.js';

const RUNS_PER_KIND = 8;
const PROBATION_MS = 2000;

export interface CanaryJudgeOptions {
  quick?: boolean;
  seed?: number;
}

/** mulberry32, [0, 1); the seed goes through murmur3's fmix32 first, so nearby seeds give unrelated streams. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  a ^= a >>> 16;
  a = Math.imul(a, 0x85ebca6b);
  a ^= a >>> 13;
  a = Math.imul(a, 0xc2b2ae35);
  a ^= a >>> 16;
  a >>>= 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The runs, interleaved by kind; noisy on every other run; targets rotated per kind. */
export function planRuns(perKind: number, random: () => number): RunPlan[] {
  const plans: RunPlan[] = [];
  for (let r = 0; r < perKind; r++) {
    KINDS.forEach((k, ki) => {
      const index = plans.length;
      // Drawn for every run, used or not, so a run's choices do not depend on other kinds.
      const seed = Math.floor(random() * 2 ** 32);
      const failAfterU = random();
      const prefix = Math.floor(random() * 2 ** 32).toString(36);
      const target = k.targets[(r + ki) % k.targets.length]!;
      const failAfter = FAIL_AFTER_MIN + Math.floor(failAfterU * (FAIL_AFTER_MAX[target] - FAIL_AFTER_MIN + 1));
      plans.push({
        index,
        kind: k.kind,
        good: k.good,
        target,
        noisy: index % 2 === 1,
        seed,
        failAfter,
        prefix,
      });
    });
  }
  return plans;
}

function describeCalibration(cal: Calibration): string {
  return (
    `calibration (CPU time per call): SHA-256 core ${cal.coreNs.hash.toFixed(0)} ns, HMAC token core ${cal.coreNs.sign.toFixed(0)} ns, ` +
    `spin ${cal.spinNs.toFixed(2)} ns/iteration, Buffer.alloc(64 KiB) ${cal.allocNs.toFixed(0)} ns; built-in extra ${cal.extraIters.hash} / ${cal.extraIters.sign} ` +
    `iterations, slow-down scale ${cal.slowScale.hash.toFixed(2)} / ${cal.slowScale.sign.toFixed(2)} (SHA-256 / HMAC)`
  );
}

export async function run(options: CanaryJudgeOptions = {}): Promise<Row[]> {
  const quick = options.quick === true;
  const seed = options.seed ?? Math.floor(Math.random() * 2 ** 31);
  console.log(`seed ${seed} (repeat with --seed ${seed})${quick ? ', quick mode' : ''}`);
  const random = seededRandom(seed);
  counters();
  const plans = planRuns(quick ? 1 : RUNS_PER_KIND, random);
  return withTempDir('xps-bench-canary-', async (dir) => {
    const refined = await refineCalibration(calibrate(), dir);
    const cal = refined.cal;
    console.log(describeCalibration(cal));
    console.log(`payload cost over the built-in's (median paired ratio), first measurement: ${describeCheck(refined.first)}`);
    console.log(`payload cost over the built-in's, after ${refined.corrections} correction(s): ${describeCheck(refined.last)}`);
    console.log(
      `${plans.length} patches (${plans.filter((p) => p.good).length} good, ${plans.filter((p) => !p.good).length} faulty; ` +
        `${plans.filter((p) => p.noisy).length} beside a CPU burner); options: defaults + retryOnBaseline, probationMs ${PROBATION_MS}; ` +
        `load average ${loadavg()[0]!.toFixed(2)} on ${availableParallelism()} CPUs`,
    );
    const ctx: RunContext = {
      cal,
      signPatch: patchSigner(),
      dir,
      probationMs: PROBATION_MS,
      burners: 1,
      warmupMs: 300,
      batch: 100,
      concurrency: 256,
      settleMs: 2000,
    };
    const results: RunResult[] = [];
    for (const plan of plans) {
      const r = await runTrial(plan, ctx);
      results.push(r);
      const right = plan.good === (r.verdict === 'promoted');
      console.log(
        `  #${String(plan.index).padStart(3)} ${(plan.kind + ' ').padEnd(17)} ${plan.target.padEnd(17)} ${plan.noisy ? 'noisy' : 'quiet'}  ` +
          `${right ? 'ok ' : 'BAD'} ${r.verdict}${r.rolledBackIn === 'probation' ? ' (probation)' : ''} after ${r.ttvMs.toFixed(0)} ms, ` +
          `exposure ${(r.exposure * 100).toFixed(2)}%, ${(r.callsPerSecond / 1000).toFixed(0)}k calls/s, client-visible failures ${r.failures}` +
          (r.faultStarted === undefined ? '' : ` (N=${plan.failAfter}: failure started ${r.faultStarted})`),
      );
    }
    console.log('');
    printReport(results);
    return reportRows(results);
  });
}

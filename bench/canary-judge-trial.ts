/*
 * canary-judge, part 3: one run. A fresh HotPatchRuntime (temporary state directory, its own
 * EventBus and DynamicInstaller) and a fresh target; a really signed payload; a CPU-burning
 * neighbour for the noisy runs; load from before the apply until the verdict is final; and
 * `twoPhaseApply` with the judge's DEFAULT options except `retryOnBaseline: true` and
 * `probationMs`.
 *
 * Verdict: "promoted" when the apply resolves promoted and no RolledBack arrives within the
 * probation window (probationMs + a 250 ms margin after Promoted); "rolled back" when it
 * rejects with CANARY_FAILED (or resolves rolled-back), or a RolledBack arrives during the
 * probation window (the post-promotion watch). Any other end (a rejection with another code,
 * no CanaryStarted) means the run could not execute: it throws.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { EventBus, HotPatchError, type HotPatchEvent } from '../src/index.js';
import { DynamicInstaller, HotPatchRuntime, twoPhaseApply } from '../src/index-runtime.js';
import { startCpuBurners, type CpuBurners } from '../test/support/cpu-burners.js';
import { startLoad, type Load, type LoadStats } from './canary-judge-load.js';
import {
  HASH,
  SIGN,
  builtinHash,
  builtinLookup,
  builtinSign,
  counters,
  kindSlug,
  patchSource,
  type Calibration,
  type HashApi,
  type Kind,
  type LookupApi,
  type SignApi,
  type TargetName,
} from './canary-judge-patches.js';
import type { BenchPatch } from './runtime-calls.js';

export interface RunPlan {
  index: number;
  kind: Kind;
  good: boolean;
  target: TargetName;
  noisy: boolean;
  /** Seed of the payload's own PRNG. */
  seed: number;
  /** fails-after-N only. */
  failAfter: number;
  /** Prefix of the load's inputs. */
  prefix: string;
}

export interface RunContext {
  cal: Calibration;
  signPatch: (id: string, target: string, version: string, source: string) => BenchPatch;
  /** Parent temporary directory; each run gets its own state directory inside. */
  dir: string;
  probationMs: number;
  /** CPU burners beside a noisy run. */
  burners: number;
  warmupMs: number;
  batch: number;
  concurrency: number;
  settleMs: number;
}

export interface RunResult {
  plan: RunPlan;
  verdict: 'promoted' | 'rolled back';
  /** Where the rollback happened: during the canary, or by the watch during probation. */
  rolledBackIn: 'canary' | 'probation' | undefined;
  /** Why: the RolledBack reason / rejection message, or the promotion's last step reason. */
  reason: string;
  /** CanaryStarted → Promoted (kept) or → RolledBack. */
  ttvMs: number;
  /**
   * Calls answered by the candidate / calls issued, CanaryStarted → the verdict event: the
   * candidate's executions less its shadow calls (for a deterministic target the caller gets
   * the baseline's answer on those).
   */
  exposure: number;
  /** Candidate executions (shadow calls included) / calls issued, same window. */
  candidateShare: number;
  /** Shadow calls (differentialSamples) counted by the judge at its last look before the verdict. */
  shadowedInWindow: number;
  candidateInWindow: number;
  issuedInWindow: number;
  load: LoadStats;
  /** Client-visible failures: threw + wrong + unsettled, over the whole run. */
  failures: number;
  /** Of which after Promoted. */
  failuresAfterPromotion: number;
  /** Calls per second the load issued from CanaryStarted to the verdict. */
  callsPerSecond: number;
  /** Unsettled async calls: when each was issued, in ms after CanaryStarted. */
  unsettledIssuedMs: number[];
  /** Candidate calls over the whole run. */
  candidateCalls: number;
  /** fails-after-N: when the fault started (its call N+1): in the canary, after promotion, or never in the run. */
  faultStarted: 'canary' | 'after promotion' | 'never' | undefined;
  steps: string[];
}

interface Mark {
  at: number;
  candidate: number;
  issued: number;
  failures: number;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The probation watch flips first and records the rollback in state.json afterwards; the run's
 * state directory is removed only once that write has landed (the patch listed as failed), so
 * the runtime never writes into a directory that is gone. Gives up after `maxMs`.
 */
async function recordedAsFailed(dir: string, target: string, patchId: string, maxMs: number): Promise<boolean> {
  const until = performance.now() + maxMs;
  while (performance.now() < until) {
    try {
      const state = JSON.parse(await readFile(join(dir, 'state.json'), 'utf8')) as { targets?: Record<string, { failed?: string[] }> };
      if (state.targets?.[target]?.failed?.includes(patchId) === true) return true;
    } catch {
      // not written yet, or mid-rename: look again
    }
    await sleep(10);
  }
  return false;
}

export async function runTrial(plan: RunPlan, ctx: RunContext): Promise<RunResult> {
  const c = counters();
  const dir = await mkdtemp(join(ctx.dir, `run-${plan.index}-`));
  const bus = new EventBus();
  const runtime = new HotPatchRuntime({ stateDir: dir, bus, installer: new DynamicInstaller(dir) });
  let burners: CpuBurners | undefined;
  let load: Load | undefined;
  try {
    let call: (input: string) => unknown;
    if (plan.target === HASH) {
      const t = runtime.target<HashApi>(plan.target, builtinHash(ctx.cal));
      call = (s) => t.api.digest(s);
    } else if (plan.target === SIGN) {
      const t = runtime.target<SignApi>(plan.target, builtinSign(ctx.cal));
      call = (s) => t.api.sign(s);
    } else {
      const t = runtime.target<LookupApi>(plan.target, builtinLookup());
      call = (s) => t.api.lookup(s);
    }
    const uniqueId = `cj-${process.pid}-${plan.index}-${kindSlug(plan.kind)}-${plan.seed.toString(36)}`;
    const source = patchSource({ kind: plan.kind, target: plan.target, uniqueId, seed: plan.seed, failAfter: plan.failAfter, cal: ctx.cal });
    const patch = ctx.signPatch(uniqueId, plan.target, '1.1.0', source);

    if (plan.noisy) burners = await startCpuBurners(ctx.burners);
    const running = startLoad({
      target: plan.target,
      call,
      async: plan.target !== HASH && plan.target !== SIGN,
      prefix: `${plan.prefix}-`,
      batch: ctx.batch,
      concurrency: ctx.concurrency,
      settleMs: ctx.settleMs,
    });
    load = running;
    // A service has been running a while before it is patched: the built-in is warm.
    await sleep(ctx.warmupMs);

    const mark = (): Mark => ({ at: performance.now(), candidate: c.candidateCalls, issued: running.stats.issued, failures: running.failures() });
    const marks: { started?: Mark; promoted?: Mark; rolledBack?: Mark & { reason: string } } = {};
    const steps: string[] = [];
    let onRolledBack: () => void = () => {};
    const rolledBack = new Promise<void>((resolve) => (onRolledBack = resolve));
    const candidateAtStart = c.candidateCalls;
    let shadowed = 0;
    bus.subscribe((e: HotPatchEvent) => {
      if (e.type === 'CanaryStarted') marks.started ??= mark();
      else if (e.type === 'CanaryStep') {
        steps.push(e.reason);
        if (marks.promoted === undefined && marks.rolledBack === undefined) shadowed = Number(e.detail?.differentialSamples ?? 0);
      } else if (e.type === 'Promoted') marks.promoted ??= mark();
      else if (e.type === 'RolledBack' && marks.rolledBack === undefined) {
        marks.rolledBack = { ...mark(), reason: e.reason };
        onRolledBack();
      }
    });

    let reason: string;
    let rejected: string | undefined;
    try {
      const result = await twoPhaseApply(runtime.installer!, patch.verified, patch.payload, {
        runtime,
        retryOnBaseline: true,
        probationMs: ctx.probationMs,
      });
      if (result.outcome === 'promoted') {
        reason = `promoted: ${result.reason}; last step: ${steps[steps.length - 1] ?? 'none'}`;
        // The post-promotion watch: a RolledBack inside the probation window counts.
        await Promise.race([rolledBack, sleep(ctx.probationMs + 250)]);
      } else if (result.outcome === 'rolled-back') {
        reason = result.reason;
        rejected = result.reason;
      } else {
        throw new Error(`run ${plan.index} (${plan.kind} on ${plan.target}): twoPhaseApply ended ${result.outcome}: ${result.reason}`);
      }
    } catch (error) {
      if (!(error instanceof HotPatchError) || error.code !== 'CANARY_FAILED') {
        throw new Error(`run ${plan.index} (${plan.kind} on ${plan.target}) could not execute: ${error instanceof Error ? error.message : String(error)}`, {
          cause: error,
        });
      }
      reason = error.message;
      rejected = error.message;
    }
    const end = mark();
    const stats = await running.stop();
    if (marks.promoted !== undefined && marks.rolledBack !== undefined) await recordedAsFailed(dir, plan.target, uniqueId, 3000);
    const started = marks.started;
    if (started === undefined) throw new Error(`run ${plan.index} (${plan.kind} on ${plan.target}): no CanaryStarted event`);
    const rb = marks.rolledBack;
    const verdictMark = rb ?? marks.promoted ?? end;
    const verdict = rejected !== undefined || rb !== undefined ? 'rolled back' : 'promoted';
    const failures = stats.threw + stats.wrong + stats.unsettled;
    const promotedFailures = marks.promoted === undefined ? 0 : failures - marks.promoted.failures;
    const issuedInWindow = verdictMark.issued - started.issued;
    const candidateCalls = end.candidate - candidateAtStart;
    const inCanary = (marks.promoted?.candidate ?? end.candidate) - candidateAtStart;
    const faultStarted =
      plan.kind !== 'fails-after-N' ? undefined : candidateCalls <= plan.failAfter ? 'never' : inCanary > plan.failAfter ? 'canary' : 'after promotion';
    const candidateInWindow = verdictMark.candidate - started.candidate;
    return {
      plan,
      verdict,
      rolledBackIn: verdict === 'promoted' ? undefined : marks.promoted !== undefined ? 'probation' : 'canary',
      reason: rb?.reason ?? reason,
      ttvMs: verdictMark.at - started.at,
      exposure: issuedInWindow > 0 ? Math.max(0, candidateInWindow - shadowed) / issuedInWindow : 0,
      candidateShare: issuedInWindow > 0 ? candidateInWindow / issuedInWindow : 0,
      shadowedInWindow: shadowed,
      candidateInWindow,
      issuedInWindow,
      callsPerSecond: verdictMark.at > started.at ? (issuedInWindow * 1000) / (verdictMark.at - started.at) : 0,
      unsettledIssuedMs: stats.unsettledIssuedAt.map((t) => t - started.at),
      load: stats,
      failures,
      failuresAfterPromotion: promotedFailures,
      candidateCalls,
      faultStarted,
      steps,
    };
  } finally {
    await load?.stop();
    runtime.close();
    await burners?.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

import { lstat } from 'node:fs/promises';
import { join } from 'node:path';
import { boundMessage, emitRedactedWarning, isPatchId, type HotPatchEvent } from '../core/index.js';
import type { HotPatchRuntime } from '../zero-downtime/index.js';
import { MAX_REASON } from './journal.js';
import type { PlanRunResult, PlanState } from './plan.js';
import { resultOf, type Outcome } from './run-outcome.js';

/**
 * Where a plan the journal left `running` stands after a restart (see `Planner.recover`):
 * `activated` if its patch is active; `rolled-back` if state.json lists the patch as failed;
 * a death in the apply phase is counted (`crashes`) and, at `maxApplyCrashes`, blamed on the
 * patch (failed, CRASHED, recorded failed; `warning` to say loudly); otherwise `pending`, to run
 * again. Updates `state.version` / `state.crashes`; the caller settles the outcome.
 */
export async function recoveryOutcome(state: PlanState, runtime: HotPatchRuntime, maxApplyCrashes: number): Promise<{ outcome: Outcome; warning?: string }> {
  const plan = state.plan;
  const phase = state.phase ?? 'fetch';
  const patchId = state.patchId;
  if (patchId !== undefined) {
    const saved = runtime.store === undefined ? undefined : (await runtime.store.read()).targets[plan.target];
    const declared = runtime.list().find((t) => t.name === plan.target);
    const activeId = declared !== undefined ? declared.active.patchId : (saved?.active?.id ?? null);
    if (activeId === patchId) {
      if (declared !== undefined && state.version === undefined) state.version = declared.active.version;
      return { outcome: { status: 'activated', reason: `${patchId} was found active after a restart (the run was interrupted during ${phase})` } };
    }
    if (saved?.failed.includes(patchId) === true) {
      return {
        outcome: {
          status: 'rolled-back',
          reason: `${patchId} was rolled back: the run was interrupted during ${phase} and the runtime recorded the patch as failed; it is not run again`,
        },
      };
    }
  }
  if (phase === 'apply' && patchId !== undefined && !(await mayHaveRun(runtime, patchId))) {
    // Its signed manifest is kept once staging ends, before the code is loaded: without it the
    // process died while the payload was fetched or staged (a large one decrypting, say), with
    // none of the patch's code run. That is not the patch's death to count.
    return { outcome: { status: 'pending', reason: `interrupted during apply, while ${patchId} was being staged (none of its code had run); will run again` } };
  }
  if (phase === 'apply' && patchId !== undefined) {
    // The process died while the patch's code was loading or serving canary calls: count it,
    // and past the limit blame the patch rather than run it into the ground again (a patch
    // calling process.exit() in init(), looping at import, exhausting memory).
    const crashes = (state.crashes ?? 0) + 1;
    state.crashes = crashes;
    if (crashes >= maxApplyCrashes) {
      const reason = `the process died ${crashes === 1 ? 'once' : `${crashes} times`} while applying ${patchId} (loading, self-testing or in canary): the patch is blamed, recorded as failed and not run again (maxApplyCrashes ${maxApplyCrashes})`;
      try {
        await runtime.recordFailure(plan.target, patchId);
      } catch (error) {
        // The plan still fails for good (the journal says CRASHED); polling just lacks the mark.
        emitRedactedWarning(`recording ${patchId} as failed did not reach state.json: ${(error as Error).message}`, { code: 'HOTPATCH_STATE_WRITE_FAILED' });
      }
      return { outcome: { status: 'failed', reason, code: 'CRASHED', announce: true }, warning: `plan ${plan.id}: ${reason}` };
    }
    return {
      outcome: {
        status: 'pending',
        reason: `interrupted during apply: the process died with ${patchId} loading or in canary (${crashes} of ${maxApplyCrashes} deaths before the patch is blamed); will run again`,
      },
    };
  }
  return { outcome: { status: 'pending', reason: `interrupted during ${phase}; will run again` } };
}

/**
 * Whether the patch's code may have run in this state directory: its kept manifest exists
 * (written after staging, before loading; from an earlier attempt too). In doubt — no state
 * directory, a file that cannot be checked — it may have.
 */
async function mayHaveRun(runtime: HotPatchRuntime, patchId: string): Promise<boolean> {
  if (runtime.stateDir === undefined || !isPatchId(patchId)) return true;
  try {
    await lstat(join(runtime.stateDir, 'manifests', `${patchId}.json`));
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== 'ENOENT';
  }
}

/** What recovering the plans needs of their planner. */
export interface RecoveryContext {
  readonly runtime: HotPatchRuntime;
  /** The plans, live: settling one may drop finished plans from it. */
  readonly states: ReadonlyMap<string, PlanState>;
  /** Whether this process is running the plan now (then it is left alone). */
  isRunning(id: string): boolean;
  /** Settles a plan the journal left `running` (see `recoveryOutcome`). */
  recoverOne(state: PlanState): Promise<void>;
  settle(state: PlanState, outcome: Outcome): Promise<PlanRunResult>;
}

/**
 * The body of `Planner.recover`: settles each plan the journal left `running`, and turns
 * `rolled-back` each activated plan whose patch the restart reverted. Returns what changed.
 */
export async function recoverPlans(ctx: RecoveryContext): Promise<PlanRunResult[]> {
  const results: PlanRunResult[] = [];
  const saved = ctx.runtime.store === undefined ? undefined : await ctx.runtime.store.read();
  for (const state of ctx.states.values()) {
    if (ctx.isRunning(state.plan.id)) continue;
    if (state.status === 'running') {
      await ctx.recoverOne(state);
      results.push(resultOf(state));
      continue;
    }
    // An activated plan whose patch the restart reverted (it died inside its probation)
    // must not keep claiming it runs.
    const patchId = state.patchId;
    if (state.status === 'activated' && patchId !== undefined && saved?.targets[state.plan.target]?.failed.includes(patchId) === true) {
      const active = ctx.runtime.list().find((t) => t.name === state.plan.target)?.active;
      if (active?.patchId !== patchId) {
        await ctx.settle(state, {
          status: 'rolled-back',
          reason: `${patchId} was reverted after a restart (the runtime recorded it as failed); now on ${active?.version ?? 'another version'}`,
        });
        results.push(resultOf(state));
      }
    }
  }
  return results;
}

/**
 * A version a plan activated was rolled back later (operator, probation watch): the plan
 * says so, so status, plans, state.json and the report agree. `changed` is called for each
 * plan so marked (the caller writes the journal).
 */
export function markRolledBackAfterActivation(
  event: HotPatchEvent,
  states: Iterable<PlanState>,
  isRunning: (id: string) => boolean,
  changed: () => void,
): void {
  for (const s of states) {
    if (s.status !== 'activated' || s.patchId !== event.id || s.plan.target !== event.target || isRunning(s.plan.id)) continue;
    s.status = 'rolled-back';
    s.reason = boundMessage(`rolled back after its activation: ${event.reason}`, MAX_REASON);
    delete s.code;
    s.updatedAt = new Date().toISOString();
    changed();
  }
}

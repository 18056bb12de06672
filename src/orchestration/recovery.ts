import { emitRedactedWarning } from '../core/index.js';
import type { HotPatchRuntime } from '../zero-downtime/index.js';
import type { PlanState } from './plan.js';
import type { Outcome } from './run-outcome.js';

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

import { HotPatchError } from '../core/index.js';
import type { HotPatchRuntime } from '../zero-downtime/index.js';
import { FINAL_STATUSES, type PlanRunResult, type PlanState } from './plan.js';
import { resultOf, type Outcome } from './run-outcome.js';

/**
 * The body of `Planner.cancel`: a plan not running is settled `failed` ("cancelled: …",
 * ABORTED); one running its apply has that apply aborted; an ended plan → INVALID; one
 * running another phase → ABORTED.
 */
export async function cancelPlan(
  state: PlanState,
  reason: string,
  running: boolean,
  runtime: HotPatchRuntime,
  settle: (state: PlanState, outcome: Outcome) => Promise<PlanRunResult>,
): Promise<PlanRunResult> {
  const id = state.plan.id;
  if (FINAL_STATUSES.includes(state.status)) throw new HotPatchError('INVALID', `plan ${id} has already ended (${state.status}): nothing to cancel`);
  if (running) {
    const target = runtime.list().find((t) => t.name === state.plan.target);
    if (state.phase === 'apply' && target?.applying !== undefined && target.applying.patchId === state.patchId) {
      target.abort(`cancelled: ${reason}`);
      return resultOf(state);
    }
    throw new HotPatchError('ABORTED', `plan ${id} is running (${state.phase ?? 'starting'}); it can be cancelled once that phase ends, or its apply aborted`);
  }
  return settle(state, { status: 'failed', reason: `cancelled: ${reason}`, code: 'ABORTED', announce: true });
}

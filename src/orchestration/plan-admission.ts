import { HotPatchError } from '../core/index.js';
import { FINAL_STATUSES, planKey, type PatchPlan, type PlanState } from './plan.js';

/**
 * Whether a checked plan may be added (see `Planner.addPlan`): the state of the same plan
 * when it is there already (added again, returned unchanged), else undefined. Another plan
 * under its id, or a dependency on a plan not added yet → INVALID; components not registered
 * → NOT_FOUND (from `checkComponents`); `maxOpen` plans not finished yet → TOO_LARGE.
 */
export function admitPlan(plan: PatchPlan, states: ReadonlyMap<string, PlanState>, checkComponents: () => void, maxOpen: number): PlanState | undefined {
  const existing = states.get(plan.id);
  if (existing !== undefined) {
    if (planKey(existing.plan) === planKey(plan)) return existing;
    throw new HotPatchError('INVALID', `a different plan with id ${plan.id} already exists (remove it first)`, { detail: { plan: plan.id } });
  }
  for (const dep of plan.dependsOn ?? []) {
    if (!states.has(dep)) {
      throw new HotPatchError(
        'INVALID',
        `plan ${plan.id} depends on ${dep}, which is not a known plan (add it first; plans are added in dependency order, so there is no cycle)`,
      );
    }
  }
  checkComponents();
  const open = [...states.values()].filter((s) => !FINAL_STATUSES.includes(s.status)).length;
  if (open >= maxOpen) {
    throw new HotPatchError('TOO_LARGE', `${open} plans are not finished yet (maxOpenPlans ${maxOpen}); finish or remove some before adding ${plan.id}`);
  }
  return undefined;
}

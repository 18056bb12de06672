import type { Outcome } from './run-outcome.js';
import type { PatchPlan, PlanState } from './plan.js';
import { windowStatus } from './window.js';

/**
 * Whether a plan may start now, as far as its dependencies and time window say: undefined
 * when it may; otherwise the outcome — failed for good (a failed or rolled-back dependency,
 * one no longer planned, a window that never opens again) or waiting (a dependency not yet
 * activated, a window closed for now). A failure outranks a wait, so a plan that can never
 * run says so at once rather than waiting on a dependency first.
 */
export function readiness(state: PlanState, states: ReadonlyMap<string, PlanState>, nowMs: number): Outcome | undefined {
  const notReady: string[] = [];
  for (const dep of state.plan.dependsOn ?? []) {
    const d = states.get(dep);
    if (d === undefined) return { status: 'failed', reason: `dependency ${dep} is no longer planned`, code: 'NOT_FOUND', announce: true };
    if (d.status === 'failed' || d.status === 'rolled-back') {
      const what = d.status === 'failed' ? 'failed' : 'was rolled back';
      return { status: 'failed', reason: `dependency ${dep} ${what}${d.reason === undefined ? '' : `: ${d.reason}`}`, announce: true };
    }
    if (d.status !== 'activated') notReady.push(`${dep} (${d.status})`);
  }
  const window = windowOutcome(state.plan, nowMs);
  if (window !== undefined && window.status === 'failed') return window;
  if (notReady.length > 0)
    return { status: 'waiting', reason: `waiting for ${notReady.length === 1 ? 'dependency' : 'dependencies'} ${notReady.join(', ')} to activate` };
  return window;
}

/** undefined when the plan's window is open; otherwise the outcome (waiting, or failed for good). */
export function windowOutcome(plan: PatchPlan, nowMs: number): Outcome | undefined {
  const w = windowStatus(plan.window, nowMs);
  if (w.open) return undefined;
  if (w.closedForever === true) return { status: 'failed', reason: `time window: ${w.reason}`, announce: true };
  const out: Outcome = { status: 'waiting', reason: `outside its time window: ${w.reason}` };
  if (w.nextOpenMs !== undefined) out.nextOpenMs = w.nextOpenMs;
  return out;
}

import { emitRedactedWarning } from '../core/index.js';
import { FINAL_STATUSES, type PlanState, type PlanStatus } from './plan.js';

/** Statuses a round (or `runWaiting`) may run. */
const RUNNABLE: readonly PlanStatus[] = ['pending', 'waiting'];

/**
 * One round of the planner's loop: the due plans by target lanes (one plan per target at a
 * time, lanes side by side, each lane in dependency order); then, at once, those whose
 * dependencies settled during the pass. `run` runs one plan exclusively; its failure is a
 * warning (HOTPATCH_PLAN_ERROR), never the end of the round. `runnable` says whether a plan is
 * still to run when its turn comes (it may have been removed, or be running elsewhere).
 */
export async function runRound(
  states: () => PlanState[],
  runnable: (state: PlanState) => boolean,
  run: (state: PlanState) => Promise<unknown>,
  signal: AbortSignal,
): Promise<void> {
  const all = states();
  let due = all.filter((s) => RUNNABLE.includes(s.status));
  // Each pass after the first runs only plans whose dependency just settled: a chain of them
  // is at most as long as there are plans.
  const limit = all.length;
  for (let pass = 0; due.length > 0 && pass <= limit && !signal.aborted; pass++) {
    const lanes = new Map<string, PlanState[]>();
    for (const s of due) {
      const lane = lanes.get(s.plan.target) ?? [];
      lane.push(s);
      lanes.set(s.plan.target, lane);
    }
    await Promise.all(
      [...lanes.values()].map(async (lane) => {
        for (const s of lane) {
          if (signal.aborted) return;
          if (!RUNNABLE.includes(s.status) || !runnable(s)) continue;
          try {
            await run(s);
          } catch (error) {
            emitRedactedWarning(error instanceof Error ? error : new Error(String(error)), {
              code: 'HOTPATCH_PLAN_ERROR',
              detail: `plan ${s.plan.id} could not run`,
            });
          }
        }
      }),
    );
    // Plans whose dependencies settled during this pass run again at once.
    const settled = new Set(due.filter((s) => FINAL_STATUSES.includes(s.status)).map((s) => s.plan.id));
    due = states().filter((s) => RUNNABLE.includes(s.status) && (s.plan.dependsOn ?? []).some((d) => settled.has(d)));
  }
}

/** Resolves after `ms`, or at once when `signal` aborts (never rejects). */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

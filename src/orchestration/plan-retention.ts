import { FINAL_STATUSES, type PlanState } from './plan.js';

/**
 * Ids of the oldest finished plans past `keepFinished`, to drop from memory and the journal
 * (their history stays in the audit log). Never one `pinned` says to keep (the plan settling
 * now, one running) or one a kept plan depends on. Oldest first by when they finished (journal
 * order breaks ties), so recent outcomes stay visible.
 */
export function finishedPlansToDrop(states: readonly PlanState[], keepFinished: number, pinned: (state: PlanState) => boolean): string[] {
  const finished = states.filter((s) => FINAL_STATUSES.includes(s.status));
  let excess = finished.length - keepFinished;
  if (excess <= 0) return [];
  const needed = new Set(states.flatMap((s) => s.plan.dependsOn ?? []));
  finished.sort((a, b) => a.updatedAt.localeCompare(b.updatedAt));
  const dropped: string[] = [];
  for (const s of finished) {
    if (excess <= 0) break;
    if (pinned(s) || needed.has(s.plan.id)) continue;
    dropped.push(s.plan.id);
    excess -= 1;
  }
  return dropped;
}

/*
 * Public surface of orchestration: plans, the planner (runOnce, runLoop, recover), time
 * windows, the crash-resumable journal, and the check of storable canary options (shared
 * with fleet rollouts).
 */
export { Planner } from './planner.js';
export type { PlannerOptions } from './planner.js';
export type { DryRunCheck, DryRunCheckName, DryRunReport } from './dry-run.js';
export { FINAL_STATUSES, PLAN_PHASES, PLAN_STATUSES, checkPlan } from './plan.js';
export type { PatchPlan, PlanPhase, PlanRunResult, PlanState, PlanStatus, PlanZdtOptions } from './plan.js';
export type { PlanPin } from './plan-pin.js';
export { WEEKDAYS, checkTimeWindow, checkWeeklyWindow, formatWeeklyWindow, parseWeeklyWindow, windowStatus } from './window.js';
export type { TimeWindow, WeeklyWindow, Weekday, WindowStatus } from './window.js';
export { PERSISTABLE_ZDT_BOOLEANS, PERSISTABLE_ZDT_FIELDS, PERSISTABLE_ZDT_NUMBERS, checkPersistableZdt, overlayZdtOptions } from './persistable-zdt.js';
export type { PersistableZdtOptions } from './persistable-zdt.js';
export { JOURNAL_FILE, parseJournal } from './journal.js';
export type { JournalFile } from './journal.js';

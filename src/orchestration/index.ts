/*
 * Public surface of orchestration: plans, the planner (runOnce, runLoop, recover), time
 * windows and the crash-resumable journal.
 */
export { Planner } from './planner.js';
export type { PlannerOptions } from './planner.js';
export { FINAL_STATUSES, PLAN_PHASES, PLAN_STATUSES, checkPlan } from './plan.js';
export type { PatchPlan, PlanPhase, PlanRunResult, PlanState, PlanStatus, PlanZdtOptions } from './plan.js';
export { WEEKDAYS, checkTimeWindow, checkWeeklyWindow, formatWeeklyWindow, parseWeeklyWindow, windowStatus } from './window.js';
export type { TimeWindow, WeeklyWindow, Weekday, WindowStatus } from './window.js';
export { JOURNAL_FILE, parseJournal } from './journal.js';
export type { JournalFile } from './journal.js';

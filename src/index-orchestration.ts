/**
 * `xps-hotpatch/orchestration`: plans and the `Planner` (runOnce, runLoop, recover, dryRun),
 * time windows. Public API: see test/api/exports.test.ts.
 */
export {
  Planner,
  formatWeeklyWindow,
  parseWeeklyWindow,
  type DryRunCheck,
  type DryRunCheckName,
  type DryRunReport,
  type PatchPlan,
  type PersistableZdtOptions,
  type PlanPhase,
  type PlanPin,
  type PlanRunResult,
  type PlanState,
  type PlanStatus,
  type PlanZdtOptions,
  type PlannerOptions,
  type TimeWindow,
  type WeeklyWindow,
  type Weekday,
} from './orchestration/index.js';

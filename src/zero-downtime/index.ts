export { MAX_TIMER_MS, resolveZdtOptions, type ResolvedZdtOptions, type ZdtOptions } from './options.js';
export { canaryIntervalMs } from './schedule.js';
export { judge, lookAlpha, tripAlpha, type JudgeFigures, type JudgeOptions, type JudgeRule, type JudgeVerdict, type StepVerdict } from './canary-judge.js';
export { CanaryEvidence, LatencyReservoir, PairReservoir, SideCounts, type StepCounts } from './canary-evidence.js';
export { CanaryRoute, LATENCY_SHARE, fnv1a32, latencyShare, type CanaryRouteOptions, type OutputValidator } from './canary-route.js';
export { isThenable } from './thenable.js';
export { RuntimeVersion, type RuntimeVersionInit, type VersionHooks } from './runtime-version.js';
export { Target, interfaceKeys, type CanaryControl, type TargetDeclaration } from './target.js';
export {
  HotPatchRuntime,
  type DrainReport,
  type RestoreReport,
  type RuntimeOptions,
  type TargetStatus,
  type VersionStatus,
} from './runtime.js';
export { runSelfTests } from './recorded-versions.js';
export { defaultRuntime, twoPhaseApply, type ApplyOptions, type ApplyOutcome, type ApplyResult, type StepReport } from './two-phase-apply.js';

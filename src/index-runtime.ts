/**
 * `xps-hotpatch/runtime`: the live side of one process — targets and their routing, the
 * canary and its judge's figures, `twoPhaseApply`, the `DynamicInstaller` (staging and
 * loading payloads), and the persisted state that restart and rollback rest on.
 * Public API: see test/api/exports.test.ts.
 */
export {
  HotPatchRuntime,
  defaultRuntime,
  twoPhaseApply,
  type ApplyOptions,
  type ApplyOutcome,
  type ApplyResult,
  type CanaryControl,
  type DrainReport,
  type IsolatedApi,
  type JudgeFigures,
  type JudgeRule,
  type JudgeVerdict,
  type OutputValidator,
  type RestoreReport,
  type RuntimeOptions,
  type RuntimeVersion,
  type StepReport,
  type StepVerdict,
  type Target,
  type TargetDeclaration,
  type TargetStatus,
  type VersionStatus,
  type ZdtOptions,
} from './zero-downtime/index.js';
export {
  DynamicInstaller,
  type DynamicInstallerOptions,
  type IsolateHandle,
  type IsolationLimits,
  type IsolationMode,
  type IsolationSettings,
  type LoadOptions,
  type LoadedModule,
  type StagedPayload,
  type WasmAdapter,
  type WasmExports,
  type WasmImports,
  type WasmInstance,
  type WasmModule,
} from './installer/index.js';
export { RollbackIndex, StateStore, type StateFile, type TargetState, type VersionRecord } from './rollback/index.js';

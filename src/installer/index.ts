/*
 * Public surface of the installer: content-addressed staging and the loaders per payload type.
 */
export { DEFAULT_MAX_LIVE_VERSIONS_PER_TARGET, DynamicInstaller, NATIVE_REFUSAL } from './dynamic-installer.js';
export { STAGED_EXTENSIONS, STAGED_MODE } from './staging.js';
export { DEFAULT_ISOLATION, resolveIsolation, type ResolvedIsolation } from './isolate/index.js';
export { RealmSnapshot, type RealmCheck } from './realm-guard.js';
export { MAX_TARGET_CONFIG_BYTES, MAX_TARGET_CONFIG_DEPTH, checkTargetConfig } from './loaders.js';
export type { ConfigValue, DeepReadonly, PatchInitContext, PatchModule, TargetConfig } from './patch-module.js';
export type {
  DynamicInstallerOptions,
  IsolateHandle,
  IsolationLimits,
  IsolationMode,
  IsolationSettings,
  LoadedModule,
  LoadOptions,
  StagedPayload,
  WasmAdapter,
  WasmExports,
  WasmImports,
  WasmInstance,
  WasmModule,
} from './types.js';

import type { PayloadType } from '../core/index.js';

/*
 * The installer's contract with the live runtime (src/zero-downtime/), which calls exactly
 * these shapes.
 *
 * WebAssembly types: the project compiles against `lib: ES2023` and @types/node 20, neither of
 * which declares the global `WebAssembly` namespace (it lives in lib.dom and in @types/node 22+).
 * Declaring that namespace globally from here would leak into every module and clash with any
 * other declaration of it, so the shapes the installer needs are declared structurally below.
 * They are assignment-compatible with the real `WebAssembly.Imports`, `WebAssembly.Exports`,
 * `WebAssembly.Instance` and `WebAssembly.Module` objects the runtime produces.
 */

/** Structural `WebAssembly.Imports`: module name → field name → function, memory, table, global or value. */
export type WasmImports = Record<string, Record<string, unknown>>;

/** Structural `WebAssembly.Exports`: export name → function, memory, table or global. */
export type WasmExports = Record<string, unknown>;

/** Structural `WebAssembly.Instance`. */
export interface WasmInstance {
  readonly exports: WasmExports;
}

/** Structural `WebAssembly.Module` (opaque: only ever passed back to `instantiate`). */
export interface WasmModule {
  readonly [Symbol.toStringTag]?: string;
}

/** A payload written to `staging/<sha256>.<ext>`, read-only and checked against its manifest. */
export interface StagedPayload {
  /** Absolute path of the staged file. */
  path: string;
  /** SHA-256 of the content, lowercase hex: the content address. */
  sha256: string;
  /** Size in bytes. */
  size: number;
  type: PayloadType;
}

/**
 * What a loaded payload provides (an esm module's exports, or a wasm instance through its
 * adapter). Patch authors type their module with `PatchModule` (patch-module.ts) instead.
 */
export interface LoadedModule {
  /** The functions of the target's interface. */
  api: Record<string, unknown>;
  /** Known-answer tests; may return a promise; throws on failure. */
  selfTest?: () => unknown;
  /** May return a promise. */
  dispose?: () => unknown;
  exportState?: () => unknown;
  importState?: (state: unknown) => unknown;
}

/** Supplied by the target's declaration: how a wasm instance becomes the target's api. */
export interface WasmAdapter {
  imports?: WasmImports;
  /** Turns the instance's exports into the target's api object. */
  toApi(exports: WasmExports, instance: WasmInstance): Record<string, unknown>;
}

export interface LoadOptions {
  target: string;
  version: string;
  patchId: string;
  /** Names of the functions the target's interface has; the loaded api must provide each as a function. */
  requiredFunctions: readonly string[];
  /** Required for wasm payloads. */
  adapter?: WasmAdapter;
  /**
   * Passed to the module's optional `init(ctx)` export as it is (an empty object when absent).
   * The live runtime passes a `PatchInitContext` (patch-module.ts): target, version, patchId,
   * the target's deep-frozen `config`, and `restored` when reloading after a restart.
   */
  initContext?: Record<string, unknown>;
}

export interface DynamicInstallerOptions {
  /**
   * Distinct payload versions that may be live for one target at a time (default 16). ES
   * modules can never be unloaded, so for esm this bounds the memory one target can pin
   * until the process restarts.
   */
  maxLiveVersionsPerTarget?: number;
}

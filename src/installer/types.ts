/*
 * The installer contract's shapes (staged payloads, loaded modules, load options, the
 * structural WebAssembly types) live in core, beside `PatchInstaller`, so that the runtime and
 * the Planner can name them without depending on this module's implementation.
 */
import type { DecryptionKey } from '../crypto-agile/index.js';
export type {
  IsolateHandle,
  IsolationLimits,
  IsolationMode,
  IsolationSettings,
  LoadOptions,
  LoadedModule,
  StagedPayload,
  WasmAdapter,
  WasmExports,
  WasmImports,
  WasmInstance,
  WasmModule,
} from '../core/index.js';

export interface DynamicInstallerOptions {
  /**
   * Distinct payload versions that may be live for one target at a time (default 16). ES
   * modules can never be unloaded, so for esm this bounds the memory one target can pin
   * until the process restarts.
   */
  maxLiveVersionsPerTarget?: number;
  /**
   * The recipient keys this host decrypts encrypted payloads with (README "Encrypted payloads"):
   * staging tries each until one unwraps the payload's data key. None: an encrypted payload is
   * DECRYPT_FAILED and nothing is staged.
   */
  decryptionKeys?: readonly DecryptionKey[];
}

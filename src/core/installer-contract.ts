import { describe } from './json-shape.js';
import { HotPatchError } from './errors.js';
import type { Manifest, ManifestFacts, PayloadType } from './manifest.js';

/*
 * The installer's contract: what the live runtime (two-phase apply, restore, disposal), the
 * Planner and the fleet hooks call on an installer, and nothing more. `DynamicInstaller`
 * (src/installer/) implements it; a service may register its own (e.g. one that stages into
 * a different store or wraps the dynamic installer with its own accounting), and every caller
 * accepts it, because none of them reaches past these methods.
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
 * adapter). Patch authors type their module with `PatchModule` instead.
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
  /** Present when the version runs in its own worker thread or child process (isolation). */
  isolate?: IsolateHandle;
}

/** Where a target's patch versions run: in the service's own thread, a worker thread each, or a child process each. */
export type IsolationMode = 'inline' | 'worker' | 'process';

/** How an isolated version is run and contained (all optional; see the README's isolation table). */
export interface IsolationLimits {
  /** A call not answered within this is an error (`TIMEOUT`), and an isolate that stops answering is killed (default 30,000 ms). */
  callTimeoutMs?: number;
  /** Import, init() and the known-answer tests must finish within this, or the isolate is killed (default 30,000 ms). */
  loadTimeoutMs?: number;
  /** Memory cap: the worker's JS heap; the child's JS heap and all its writable memory (RLIMIT_DATA). Default 512. */
  memoryMb?: number;
  /**
   * Stack size of the isolate's JS thread, MiB (default: Node's). In a child every thread's stack
   * then counts against `memoryMb`, so it may be at most `memoryMb / 16`.
   */
  stackMb?: number;
  /** An isolate that died is started again on the next call at most this many times a minute (default 3; 0: never). */
  maxRestartsPerMinute?: number;
  /** Calls that may wait on one version at a time (default 10,000): past it a call fails at once with TOO_LARGE rather than pile up in the host's memory. */
  maxPendingCalls?: number;
}

/** The isolation a load asks for (the target's mode and limits). */
export interface IsolationSettings extends IsolationLimits {
  mode: 'worker' | 'process';
}

/** The host's handle on a version's worker thread or child process. */
export interface IsolateHandle {
  readonly mode: 'worker' | 'process';
  /** The worker's thread id or the child's pid (of the current incarnation). */
  readonly id: number;
  /** How many times it was started again after dying. */
  readonly restarts: number;
  /** Why it died last (undefined while it never has). */
  readonly death: string | undefined;
  /** `ready` (answering), `loading` (starting, or starting again after a death), `dead` (until the next call restarts it) or `terminated` (retired for good). */
  readonly state: 'loading' | 'ready' | 'dead' | 'terminated';
  /** A call passed its deadline and the isolate has not answered the ping sent then: suspected stuck (it is killed if it stays silent). */
  readonly suspectedStuck: boolean;
  /**
   * What crossing the boundary adds to a call, in ms: the median, over its recent calls, of the
   * round trip seen by the caller minus the time the call ran inside (undefined before any call).
   */
  readonly overheadMs: number | undefined;
  /**
   * While true, each answered call's time inside the isolate is recorded against the caller's
   * promise (core/call-durations.ts). The canary turns it on for its two versions only: it
   * costs a WeakMap write per call, which a steady version has no use for.
   */
  timeInside: boolean;
  /** `listener` is told each time the isolate dies (crash, exit, killed as stuck or out of memory); returns how to stop telling it. */
  onDeath(listener: (reason: string) => void): () => void;
  /** Ends the isolate for good (its memory goes back); pending calls fail. Idempotent. */
  terminate(): Promise<void>;
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
   * The live runtime passes a `PatchInitContext`: target, version, patchId, the target's
   * deep-frozen `config`, and `restored` when reloading after a restart.
   */
  initContext?: Record<string, unknown>;
  /** Run the payload in its own worker thread or child process instead of this thread. */
  isolation?: IsolationSettings;
}

/**
 * Stages verified payloads and loads them into the running process. Every method is called
 * only with arguments the runtime has already checked; an installer still re-checks what it
 * relies on (the dynamic installer re-hashes a staged file before it imports it).
 */
export interface PatchInstaller {
  /** A short name for logs and errors (the dynamic installer's is `dynamic`). */
  readonly kind: string;
  /**
   * Stores `payload` content-addressed, checking its size and the manifest's digest on the
   * way; idempotent. Nothing is left behind on failure. Called by two-phase apply.
   */
  stage(manifest: Manifest, facts: ManifestFacts, payload: Uint8Array | AsyncIterable<Uint8Array>, signal?: AbortSignal): Promise<StagedPayload>;
  /**
   * A staged payload found again by its digest (after a restart), re-verified: NOT_FOUND when
   * missing, HASH_MISMATCH when its bytes changed. Called by `HotPatchRuntime.restore()`.
   */
  verifyStaged(sha256: string, type: PayloadType): Promise<StagedPayload>;
  /** Loads a staged payload into this process (LOAD_FAILED when it cannot). */
  load(staged: StagedPayload, options: LoadOptions): Promise<LoadedModule>;
  /** One loaded instance of `sha256` for `target` was disposed. Must not throw for an unknown one. */
  release(target: string, sha256: string): void;
  /**
   * Optional, for installers that decrypt: checks the staged plaintext of an encrypted patch
   * against its signed manifest (plaintext_size, plaintext_mac) when a restart brings it back.
   * An installer without it cannot restore an encrypted patch.
   */
  checkDecrypted?(manifest: Manifest, plaintext: AsyncIterable<Uint8Array>): Promise<void>;
  /**
   * Optional, for installers that decrypt: resolves when this installer holds a key that
   * unwraps the encrypted patch's data key (a dry run asks; nothing is decrypted or staged).
   */
  checkDecryptable?(manifest: Manifest): Promise<void>;
}

const INSTALLER_METHODS = ['stage', 'verifyStaged', 'load', 'release'] as const;

/**
 * `value` when it has the installer contract's shape, else INVALID naming what is missing —
 * checked where an installer is handed over (registration, the runtime, the fleet hooks) so
 * a wrong one fails there, not halfway through an apply.
 */
export function checkPatchInstaller(value: unknown, what = 'installer'): PatchInstaller {
  if (typeof value !== 'object' || value === null)
    throw new HotPatchError('INVALID', `${what} must be an object implementing PatchInstaller, got ${describe(value)}`);
  const candidate = value as Record<string, unknown>;
  const missing: string[] = typeof candidate.kind === 'string' && candidate.kind.length > 0 ? [] : ['kind'];
  for (const name of INSTALLER_METHODS) if (typeof candidate[name] !== 'function') missing.push(name);
  if (missing.length > 0) {
    throw new HotPatchError(
      'INVALID',
      `${what} does not implement PatchInstaller: missing ${missing.join(', ')} (an installer has kind, stage, verifyStaged, load and release)`,
    );
  }
  return value as PatchInstaller;
}

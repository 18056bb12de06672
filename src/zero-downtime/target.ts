import semver from 'semver';
import { HotPatchError, describe, parseTargetName, recordCallMs, type IsolateHandle } from '../core/index.js';
import { isThenable } from './thenable.js';
import {
  checkTargetConfig,
  resolveIsolation,
  type IsolationLimits,
  type IsolationMode,
  type LoadOptions,
  type ResolvedIsolation,
  type TargetConfig,
  type WasmAdapter,
} from '../installer/index.js';
import type { CanaryRoute } from './canary-route.js';
import { Router, asyncMethod, syncMethod } from './router.js';
import { RuntimeVersion, type VersionHooks } from './runtime-version.js';

type AnyFunction = (...args: unknown[]) => unknown;

/** What a host declares for one hot-swappable target. */
export interface TargetDeclaration<T extends object, A extends object = T> {
  /** Semver version of the implementation in the host's own code. */
  version: string;
  /** The implementation: its methods (own and inherited) are the target's interface. */
  impl: T;
  /**
   * Known-answer tests run against every candidate's api before it takes any live call (in an
   * isolated target that api is async, like `target.api`).
   */
  selfTest?: (api: A) => unknown;
  /** How a wasm payload's exports become this interface. */
  adapter?: WasmAdapter;
  /** Same input → same output: the canary compares candidate and baseline outputs. */
  deterministic?: boolean;
  /**
   * For targets whose outputs cannot be compared (not deterministic): checks a candidate's
   * output during the canary (a signature verifies, a token parses). Returning false or
   * throwing counts the call as failed; with `retryOnBaseline` the caller gets the baseline's
   * answer, otherwise a `CANARY_FAILED` error instead of the refused output.
   */
  validate?: (output: unknown, args: readonly unknown[], method: keyof T & string) => boolean | void;
  /** Safe to run twice: `retryOnBaseline` may re-run a failed candidate call on the baseline. */
  idempotent?: boolean;
  /** Methods that return promises without being `async` functions (so in-flight calls are counted). */
  asyncMethods?: readonly (keyof T & string)[];
  /** State handover for the built-in version (a patch exports its own). */
  exportState?: () => unknown;
  importState?: (state: unknown) => unknown;
  dispose?: () => unknown;
  /**
   * Host-provided settings every patch version's `init(ctx)` receives as `ctx.config`: plain
   * JSON (an object), at most 64 KiB, copied and deep-frozen when the target is declared
   * (`INVALID` / `TOO_LARGE` otherwise), so a patch reads its settings from the host rather
   * than from process.env, and cannot change what the next version gets.
   */
  config?: TargetConfig;
  /**
   * Where each patch version runs: `inline` (the default: in the service's own thread), or a
   * `worker` thread / child `process` of its own, which a loop, a crash, an exit or a leak of
   * the patch cannot take the service down with, and which is ended (memory and all) when the
   * version retires. In an isolated target every method of `api` returns a promise (see
   * `IsolatedApi`); arguments and results cross by structured clone. The built-in stays in
   * the service's thread. Native (.node) payloads need `process`.
   */
  isolation?: IsolationMode;
  /** Deadlines, memory cap and restart budget of isolated versions (INVALID on an inline target). */
  isolationLimits?: IsolationLimits;
}

/** The api of an isolated target: each method of `T`, returning a promise of what it returns. */
export type IsolatedApi<T> = {
  [K in keyof T]: T[K] extends (...args: infer A) => infer R ? (...args: A) => Promise<Awaited<R>> : T[K];
};

/** Manual decisions an operator can take while a canary runs. */
export interface CanaryControl {
  promoteRequested: boolean;
  abortReason: string | undefined;
  wake: () => void;
}

export function interfaceKeys(impl: object): string[] {
  const keys = new Set<string>();
  for (let o: object | null = impl; o !== null && o !== Object.prototype; o = Object.getPrototypeOf(o) as object | null) {
    for (const k of Object.getOwnPropertyNames(o)) {
      if (k === 'constructor' || keys.has(k)) continue;
      const d = Object.getOwnPropertyDescriptor(o, k);
      if (d !== undefined && typeof d.value === 'function') keys.add(k);
    }
  }
  return [...keys];
}

/**
 * A hot-swappable slot. `api` has the implementation's interface; each call picks a version
 * at entry (one field read when no canary runs) and runs wholly on it. Calls made as
 * `target.api.m()` run with the chosen version's own object as `this`, so nested
 * `this.other()` calls stay on that version; any other `this` is passed through untouched.
 */
export class Target<T extends object, A extends object = T> {
  readonly name: string;
  /** The routed interface: `T`, or `IsolatedApi<T>` for a target declared with isolation 'worker' or 'process'. */
  readonly api: A;
  /** The isolation of its patch versions, limits resolved; undefined inline. */
  readonly isolation: ResolvedIsolation | undefined;
  readonly keys: readonly string[];
  readonly declaration: TargetDeclaration<T, A>;
  /** The declaration's `config`, checked, copied and deep-frozen: what every version's init(ctx) gets. */
  readonly config: TargetConfig | undefined;
  readonly builtin: RuntimeVersion;
  previous: RuntimeVersion | undefined;
  /** Set while a patch is being applied to this target. */
  applying: { patchId: string; version: string; control: CanaryControl } | undefined;
  /** Set when an aborted canary was paused (rollbackOnCancel false) awaiting a decision. */
  paused: { patchId: string; version: string; promote: () => Promise<void>; rollback: (reason: string) => Promise<void> } | undefined;
  frozen: string | undefined;
  readonly #router: Router;
  /** Whether an isolated target's built-in records each call's running time (during a canary). */
  readonly #builtinTiming = { on: false };

  constructor(name: string, declaration: TargetDeclaration<T, A>) {
    this.name = parseTargetName(name, 'target name');
    if (typeof declaration !== 'object' || declaration === null) throw new HotPatchError('INVALID', `target ${name}: declaration must be an object`);
    if (typeof declaration.version !== 'string' || semver.valid(declaration.version) === null) {
      throw new HotPatchError('INVALID', `target ${name}: version must be a semver version, got ${String(declaration.version)}`);
    }
    if (typeof declaration.impl !== 'object' || declaration.impl === null) throw new HotPatchError('INVALID', `target ${name}: impl must be an object`);
    if (declaration.validate !== undefined && typeof declaration.validate !== 'function') {
      throw new HotPatchError('INVALID', `target ${name}: validate must be a function`);
    }
    this.config = declaration.config === undefined ? undefined : checkTargetConfig(declaration.config, `target ${name}: config`);
    this.isolation = isolationOf(name, declaration);
    this.declaration = declaration;
    this.keys = interfaceKeys(declaration.impl);
    if (this.keys.length === 0) throw new HotPatchError('INVALID', `target ${name}: impl has no methods to route`);
    const asyncKeys = new Set<string>(declaration.asyncMethods ?? []);
    for (const k of asyncKeys) {
      if (!this.keys.includes(k)) throw new HotPatchError('INVALID', `target ${name}: asyncMethods names ${k}, which impl does not have`);
    }
    const hooks: VersionHooks = {};
    if (declaration.exportState !== undefined) hooks.exportState = declaration.exportState;
    if (declaration.importState !== undefined) hooks.importState = declaration.importState;
    if (declaration.dispose !== undefined) hooks.dispose = declaration.dispose;
    // Isolated: every call is async (the versions answer across a boundary), the built-in's too.
    const builtinImpl = this.isolation === undefined ? declaration.impl : promising(declaration.impl, this.keys, this.#builtinTiming);
    this.builtin = this.versionFrom(builtinImpl, { version: declaration.version, patchId: null, hooks });
    this.#router = new Router(this.builtin);

    const api: Record<string, AnyFunction> = {};
    const router = this.#router;
    this.keys.forEach((key, index) => {
      const original = (declaration.impl as Record<string, AnyFunction>)[key]!;
      const isAsync = this.isolation !== undefined || asyncKeys.has(key) || original.constructor?.name === 'AsyncFunction';
      api[key] = isAsync ? asyncMethod(router, api, index) : syncMethod(router, api, index);
      Object.defineProperty(api[key], 'name', { value: key });
    });
    this.api = Object.freeze(api) as unknown as A;
  }

  /** What the installer is asked to load a version of this target with (apply and restore alike). */
  loadOptions(init: { version: string; patchId: string; restored?: true }, loadTimeoutMs?: number): LoadOptions {
    const isolation = this.isolation === undefined ? undefined : { ...this.isolation, ...(loadTimeoutMs === undefined ? {} : { loadTimeoutMs }) };
    return {
      target: this.name,
      version: init.version,
      patchId: init.patchId,
      requiredFunctions: this.keys,
      ...(this.declaration.adapter === undefined ? {} : { adapter: this.declaration.adapter }),
      initContext: { target: this.name, ...init, config: this.config },
      ...(isolation === undefined ? {} : { isolation: withoutUndefined(isolation) }),
    };
  }

  get active(): RuntimeVersion {
    return this.#router.steady;
  }

  get canary(): CanaryRoute | null {
    return this.#router.canary;
  }

  /** Wraps an implementation object (built-in or a loaded payload's api) as a version of this target. */
  versionFrom(
    impl: object,
    init: { version: string; patchId: string | null; sha256?: string; type?: RuntimeVersion['type']; hooks: VersionHooks; isolate?: IsolateHandle },
  ): RuntimeVersion {
    const functions = this.keys.map((k) => {
      const fn = (impl as Record<string, unknown>)[k];
      if (typeof fn !== 'function') throw new HotPatchError('LOAD_FAILED', `version ${init.version} of ${this.name} has no function ${k}`);
      return fn as AnyFunction;
    });
    return new RuntimeVersion({ ...init, impl, functions });
  }

  /** An api object bound to one version only (for its self-test). */
  apiOf(version: RuntimeVersion): A {
    const out: Record<string, AnyFunction> = {};
    this.keys.forEach((k, i) => {
      out[k] = (...args: unknown[]) => version.functions[i]!.apply(version.impl, args);
    });
    return out as unknown as A;
  }

  /** @internal routing changes, used by twoPhaseApply and the runtime. */
  setCanary(route: CanaryRoute | null): void {
    this.#router.setCanary(route);
  }

  /**
   * @internal during a canary of an isolated target, the calls of `versions` (and of the
   * built-in) record how long they ran where they ran, for the judge; off again after it.
   */
  timeInside(on: boolean, versions: readonly RuntimeVersion[]): void {
    this.#builtinTiming.on = on;
    for (const v of versions) if (v.isolate !== undefined) v.isolate.timeInside = on;
  }

  /** @internal times the next steady call for the duration histogram (see Router.armProbe). */
  armProbe(): void {
    this.#router.armProbe();
  }

  /** @internal makes `version` the steady route; the old steady version becomes `previous`. */
  promoteTo(version: RuntimeVersion): RuntimeVersion {
    const old = this.#router.steady;
    this.#router.steady = version;
    this.#router.setCanary(null);
    this.previous = old;
    return old;
  }

  /** @internal routes to `version` without keeping the current one as previous (rollback). */
  routeTo(version: RuntimeVersion, previous: RuntimeVersion | undefined): RuntimeVersion {
    const old = this.#router.steady;
    this.#router.steady = version;
    this.#router.setCanary(null);
    this.previous = previous;
    return old;
  }

  /** Operator: finish the running (or paused) canary now and promote the candidate. */
  async promote(): Promise<void> {
    if (this.paused !== undefined) return this.paused.promote();
    if (this.applying === undefined || this.#router.canary === null) {
      throw new HotPatchError('INVALID', `target ${this.name} has no canary running to promote`);
    }
    this.applying.control.promoteRequested = true;
    this.applying.control.wake();
  }

  /** Operator: stop the running apply; the canary is rolled back (or paused, per rollbackOnCancel). */
  abort(reason = 'aborted by operator'): void {
    if (this.applying === undefined) throw new HotPatchError('INVALID', `target ${this.name} has no apply running to abort`);
    this.applying.control.abortReason = reason;
    this.applying.control.wake();
  }
}

function isolationOf(name: string, declaration: Pick<TargetDeclaration<object>, 'isolation' | 'isolationLimits' | 'adapter'>): ResolvedIsolation | undefined {
  const mode = declaration.isolation ?? 'inline';
  if (mode !== 'inline' && mode !== 'worker' && mode !== 'process') {
    throw new HotPatchError('INVALID', `target ${name}: isolation must be 'inline', 'worker' or 'process', got ${describe(mode)}`);
  }
  const limits = declaration.isolationLimits ?? {};
  if (typeof limits !== 'object' || limits === null) throw new HotPatchError('INVALID', `target ${name}: isolationLimits must be an object`);
  if (mode === 'inline') {
    if (declaration.isolationLimits !== undefined) {
      throw new HotPatchError('INVALID', `target ${name}: isolationLimits apply to isolation 'worker' or 'process', not to an inline target`);
    }
    return undefined;
  }
  if (declaration.adapter !== undefined) {
    throw new HotPatchError('INVALID', `target ${name}: a wasm adapter is host code and cannot cross into a ${mode}; wasm targets run inline`);
  }
  return resolveIsolation({ ...limits, mode }, `target ${name}: isolationLimits`);
}

/**
 * `impl` with each interface method returning a promise (a throw, a rejected one), for an
 * isolated target's built-in; while `timing.on` (a canary), each call's running time is
 * recorded for the judge, as an isolate records its versions' (core/call-durations.ts).
 */
function promising(impl: object, keys: readonly string[], timing: { on: boolean }): object {
  const out: Record<string, AnyFunction> = Object.create(impl) as Record<string, AnyFunction>;
  for (const key of keys) {
    const fn = (impl as Record<string, AnyFunction>)[key]!;
    out[key] = function (this: unknown, ...args: unknown[]): Promise<unknown> {
      const self = this === out ? impl : this;
      if (!timing.on) {
        try {
          // Run on the host's own object, so its nested this.other() calls stay synchronous.
          return Promise.resolve(fn.apply(self, args));
        } catch (error) {
          return Promise.reject(error);
        }
      }
      const started = performance.now();
      let result: unknown;
      try {
        result = fn.apply(self, args);
      } catch (error) {
        const rejected = Promise.reject(error);
        recordCallMs(rejected, performance.now() - started);
        return rejected;
      }
      if (!isThenable(result)) {
        const resolved = Promise.resolve(result);
        recordCallMs(resolved, performance.now() - started);
        return resolved;
      }
      const settled: Promise<unknown> = Promise.resolve(result).then(
        (value) => {
          recordCallMs(settled, performance.now() - started);
          return value;
        },
        (error: unknown) => {
          recordCallMs(settled, performance.now() - started);
          throw error;
        },
      );
      return settled;
    };
  }
  return out;
}

function withoutUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}

import { types as nodeTypes } from 'node:util';
import { HotPatchError, asObject, describe, parsePatchId, parseTargetName } from '../core/index.js';
import type { ConfigValue, TargetConfig } from './patch-module.js';
import type { LoadedModule, LoadOptions, WasmAdapter, WasmImports, WasmInstance, WasmModule } from './types.js';

/*
 * Checks shared by the loaders: what an esm module must export, and what an api object must
 * provide. Pure functions (no I/O), so the rules are testable and read in one place.
 */

/** Optional esm exports: each must be a function when it is exported at all. */
export const OPTIONAL_HOOKS = ['selfTest', 'init', 'dispose', 'exportState', 'importState'] as const;

/** Who is being loaded, for messages and `detail`. */
export interface LoadSubject {
  target: string;
  version: string;
  patchId: string;
  sha256: string;
}

export function subjectText(s: LoadSubject): string {
  return `patch ${s.patchId} (${s.target}@${s.version}, sha256:${s.sha256.slice(0, 12)}…)`;
}

export function loadFailed(subject: LoadSubject, message: string, extra: { cause?: unknown; detail?: Record<string, unknown> } = {}): HotPatchError {
  return new HotPatchError('LOAD_FAILED', `cannot load ${subjectText(subject)}: ${message}`, {
    ...(extra.cause === undefined ? {} : { cause: extra.cause }),
    detail: { target: subject.target, version: subject.version, patchId: subject.patchId, sha256: subject.sha256, ...extra.detail },
  });
}

/**
 * The names in `required` that `api` does not provide as a function. A name is provided by an
 * own property or by the api's prototype chain (a class instance is a fine api), but never by
 * `Object.prototype`: `constructor` or `toString` inherited from there is not an implementation.
 */
export function missingFunctions(api: object, required: readonly string[]): string[] {
  const base = Object.prototype as unknown as Record<string, unknown>;
  return required.filter((name) => {
    const value: unknown = Reflect.get(api, name);
    if (typeof value !== 'function') return true;
    return !Object.hasOwn(api, name) && value === base[name];
  });
}

/** `api` must be a non-null object providing every required function; else LOAD_FAILED. */
export function checkApi(value: unknown, required: readonly string[], subject: LoadSubject, source: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw loadFailed(subject, `${source} must be an object holding the target's functions, got ${describe(value)}`);
  }
  const missing = missingFunctions(value, required);
  if (missing.length > 0) {
    throw loadFailed(subject, `${source} lacks ${missing.length} of the ${required.length} functions of ${subject.target}'s interface: ${missing.join(', ')}`, {
      detail: { missing },
    });
  }
  return value as Record<string, unknown>;
}

type Hook = (...args: never[]) => unknown;

/**
 * The LoadedModule of an esm module's namespace: `api` checked, optional hooks checked to be
 * functions. A fresh object each time (callers may keep several loads of one cached module).
 */
export function esmLoadedModule(
  namespace: Record<string, unknown>,
  required: readonly string[],
  subject: LoadSubject,
): { loaded: LoadedModule; init: ((ctx: Record<string, unknown>) => unknown) | undefined } {
  if (!('api' in namespace)) {
    throw loadFailed(subject, `the module does not export \`api\` (it exports: ${Object.keys(namespace).join(', ') || 'nothing'})`);
  }
  const api = checkApi(namespace.api, required, subject, 'the exported `api`');
  const notFunctions = OPTIONAL_HOOKS.filter((name) => namespace[name] !== undefined && typeof namespace[name] !== 'function');
  if (notFunctions.length > 0) {
    throw loadFailed(subject, `the module exports ${notFunctions.map((n) => `\`${n}\``).join(', ')} but not as a function`, {
      detail: { notFunctions },
    });
  }
  const hook = <T extends Hook>(name: (typeof OPTIONAL_HOOKS)[number]): T | undefined => namespace[name] as T | undefined;
  const loaded: LoadedModule = { api };
  const selfTest = hook<() => unknown>('selfTest');
  const dispose = hook<() => unknown>('dispose');
  const exportState = hook<() => unknown>('exportState');
  const importState = hook<(state: unknown) => unknown>('importState');
  if (selfTest !== undefined) loaded.selfTest = selfTest;
  if (dispose !== undefined) loaded.dispose = dispose;
  if (exportState !== undefined) loaded.exportState = exportState;
  if (importState !== undefined) loaded.importState = importState;
  return { loaded, init: hook<(ctx: Record<string, unknown>) => unknown>('init') };
}

// --- WebAssembly ---

/** The part of the global `WebAssembly` object the wasm loader uses (see types.ts for why it is declared here). */
interface WebAssemblyApi {
  compile(bytes: Uint8Array): Promise<WasmModule>;
  instantiate(module: WasmModule, imports: WasmImports): Promise<WasmInstance>;
}

export function webAssembly(): WebAssemblyApi {
  const wasm = (globalThis as unknown as { WebAssembly?: WebAssemblyApi }).WebAssembly;
  if (wasm === undefined) {
    // Only when Node runs with --jitless (or a sandbox removed it): say so rather than crash.
    throw new HotPatchError('LOAD_FAILED', 'this Node.js process has no WebAssembly support (is it running with --jitless?)');
  }
  return wasm;
}

export function checkAdapter(value: unknown): WasmAdapter {
  if (typeof value !== 'object' || value === null || typeof (value as { toApi?: unknown }).toApi !== 'function') {
    throw new HotPatchError('INVALID', `options.adapter must be an object with a toApi(exports, instance) function, got ${describe(value)}`);
  }
  const imports = (value as { imports?: unknown }).imports;
  if (imports !== undefined && (typeof imports !== 'object' || imports === null)) {
    throw new HotPatchError('INVALID', `options.adapter.imports must be an object of import modules, got ${describe(imports)}`);
  }
  return value as WasmAdapter;
}

/** Checks every LoadOptions field; the argument is named in the error (`INVALID`). */
export function checkLoadOptions(value: unknown): LoadOptions {
  if (typeof value !== 'object' || value === null) {
    throw new HotPatchError('INVALID', `options must be LoadOptions, got ${describe(value)}`);
  }
  const o = value as Partial<LoadOptions>;
  parseTargetName(o.target, 'options.target');
  parsePatchId(o.patchId, 'options.patchId');
  if (typeof o.version !== 'string' || o.version.length === 0 || o.version.length > 256) {
    throw new HotPatchError('INVALID', `options.version must be a non-empty string of at most 256 characters, got ${describe(o.version)}`);
  }
  if (!Array.isArray(o.requiredFunctions)) {
    throw new HotPatchError('INVALID', `options.requiredFunctions must be an array of function names, got ${describe(o.requiredFunctions)}`);
  }
  o.requiredFunctions.forEach((name: unknown, i) => {
    if (typeof name !== 'string' || name.length === 0) {
      throw new HotPatchError('INVALID', `options.requiredFunctions[${i}] must be a non-empty string, got ${describe(name)}`);
    }
  });
  if (o.initContext !== undefined && (typeof o.initContext !== 'object' || o.initContext === null)) {
    throw new HotPatchError('INVALID', `options.initContext must be an object, got ${describe(o.initContext)}`);
  }
  if (o.adapter !== undefined) checkAdapter(o.adapter);
  return o as LoadOptions;
}

// --- a target's config (handed to every version's init(ctx)) ---

/** Largest target config accepted, counted as the UTF-8 bytes of its JSON text. */
export const MAX_TARGET_CONFIG_BYTES = 64 * 1024;
/** Deepest nesting of a target config (the top object is level 1): bounds the walk's stack. */
export const MAX_TARGET_CONFIG_DEPTH = 32;

/** UTF-8 bytes of `value` as JSON; a string longer than the whole budget is not encoded at all. */
const jsonBytes = (value: string | number | boolean | null): number =>
  typeof value === 'string' && value.length > MAX_TARGET_CONFIG_BYTES ? MAX_TARGET_CONFIG_BYTES + 1 : Buffer.byteLength(JSON.stringify(value));

function pathOf(parent: string, key: string | number): string {
  if (typeof key === 'number') return `${parent}[${key}]`;
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `${parent}.${key}` : `${parent}[${JSON.stringify(key)}]`;
}

/**
 * A deep-frozen copy of `value` when it is plain JSON data: an object (at the top) of
 * strings, finite numbers, booleans, null, dense arrays and plain objects, with no accessor,
 * symbol key, cycle or proxy, at most MAX_TARGET_CONFIG_BYTES as JSON and MAX_TARGET_CONFIG_DEPTH
 * deep. Anything else is refused — INVALID naming the first bad path, TOO_LARGE past a bound —
 * rather than silently dropped or converted as JSON.stringify would (an undefined field, NaN
 * → null, a Date → string): the patch must see exactly what the host wrote. The copy is taken
 * once, so neither the host (mutating its object later) nor a patch (the copy is frozen) can
 * change what the next version's init(ctx) receives.
 */
export function checkTargetConfig(value: unknown, field = 'config'): TargetConfig {
  // Shape checked on the copy: copyConfig refuses a Proxy before anything reads its prototype.
  const copy = copyConfig(value, field, 1, new Set(), { bytes: 0 }, field);
  return asObject(copy, field) as TargetConfig;
}

function copyConfig(value: unknown, path: string, depth: number, ancestors: Set<object>, budget: { bytes: number }, field: string): ConfigValue {
  const spend = (bytes: number): void => {
    budget.bytes += bytes;
    if (budget.bytes > MAX_TARGET_CONFIG_BYTES) {
      throw new HotPatchError('TOO_LARGE', `${field} is larger than ${MAX_TARGET_CONFIG_BYTES} bytes as JSON (reached at ${path})`, {
        detail: { limit: MAX_TARGET_CONFIG_BYTES },
      });
    }
  };
  if (value === null || typeof value === 'string' || typeof value === 'boolean') {
    spend(jsonBytes(value));
    return value;
  }
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new HotPatchError('INVALID', `${path} must be a finite number, got ${String(value)}`);
    spend(jsonBytes(value));
    return value;
  }
  if (typeof value !== 'object') {
    throw new HotPatchError('INVALID', `${path} is ${value === undefined ? 'undefined' : `a ${typeof value}`}, which is not JSON data`);
  }
  if (depth > MAX_TARGET_CONFIG_DEPTH) {
    throw new HotPatchError('TOO_LARGE', `${field} nests deeper than ${MAX_TARGET_CONFIG_DEPTH} levels (at ${path})`, {
      detail: { limit: MAX_TARGET_CONFIG_DEPTH },
    });
  }
  // A proxy's traps are code that could answer differently on every read: not data.
  if (nodeTypes.isProxy(value)) throw new HotPatchError('INVALID', `${path} is a Proxy, which is not JSON data`);
  if (ancestors.has(value)) throw new HotPatchError('INVALID', `${path} refers back to an enclosing object (a cycle), which JSON cannot hold`);
  const isArray = Array.isArray(value);
  const proto: unknown = Object.getPrototypeOf(value);
  if (isArray ? proto !== Array.prototype : proto !== Object.prototype && proto !== null) {
    throw new HotPatchError('INVALID', `${path} is ${describeInstance(proto)}, not a plain object or array of JSON data`);
  }
  const length = isArray ? (value as unknown[]).length : 0;
  // Each element takes at least a byte: a longer array is refused before its keys are listed.
  if (length > MAX_TARGET_CONFIG_BYTES) spend(length);
  ancestors.add(value);
  const keys = Reflect.ownKeys(value).filter((k) => !(isArray && k === 'length'));
  if (isArray && keys.length !== length) {
    throw new HotPatchError('INVALID', `${path} must be a dense array of JSON data (no holes, no extra properties)`);
  }
  spend(2 + Math.max(keys.length - 1, 0)); // brackets and commas
  const copy: Record<string, ConfigValue> | ConfigValue[] = isArray ? [] : {};
  keys.forEach((key, index) => {
    if (typeof key === 'symbol') throw new HotPatchError('INVALID', `${path} has a symbol key, which JSON cannot hold`);
    const at = pathOf(path, isArray ? index : key);
    const d = Object.getOwnPropertyDescriptor(value, isArray ? String(index) : key);
    if (d === undefined) throw new HotPatchError('INVALID', `${path} must be a dense array of JSON data (no holes, no extra properties)`);
    if (!('value' in d)) throw new HotPatchError('INVALID', `${at} is an accessor (getter/setter), not a JSON value`);
    if (d.enumerable !== true) throw new HotPatchError('INVALID', `${at} is not enumerable, so JSON would drop it`);
    if (!isArray) spend(jsonBytes(key) + 1); // "key":
    const item = copyConfig(d.value, at, depth + 1, ancestors, budget, field);
    // defineProperty, not assignment: a key "__proto__" stays a data property, as JSON.parse makes it.
    Object.defineProperty(copy, isArray ? String(index) : key, { value: item, enumerable: true, writable: true, configurable: true });
  });
  ancestors.delete(value);
  return Object.freeze(copy);
}

function describeInstance(proto: unknown): string {
  const ctor = typeof proto === 'object' && proto !== null ? Object.getOwnPropertyDescriptor(proto, 'constructor')?.value : undefined;
  const name = typeof ctor === 'function' && typeof ctor.name === 'string' && ctor.name !== '' ? ctor.name : undefined;
  return name === undefined ? 'an object with a custom prototype' : `a ${name}`;
}

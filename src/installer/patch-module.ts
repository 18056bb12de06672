/*
 * The shape of a patch, for patch authors: what an `esm` payload module exports and what its
 * `init(ctx)` receives. Types only; the installer's checks of the same rules live in
 * loaders.ts (`esmLoadedModule`) and the config's in loaders.ts (`checkTargetConfig`).
 */

/** A JSON value as a target's `config` may hold it: no undefined, functions, NaN, dates or class instances. */
export type ConfigValue = string | number | boolean | null | readonly ConfigValue[] | { readonly [key: string]: ConfigValue };

/**
 * A target's host-provided configuration: a JSON object. It is declared with the target
 * (`runtime.target(name, { …, config })`), checked and deep-frozen once, and handed to
 * every version's `init(ctx)` as `ctx.config` — the same frozen object each time.
 */
export type TargetConfig = { readonly [key: string]: ConfigValue };

/** `T` with every property, element and nested property read-only (how `ctx.config` is typed). */
export type DeepReadonly<T> = T extends readonly (infer E)[]
  ? readonly DeepReadonly<E>[]
  : T extends object
    ? { readonly [K in keyof T]: DeepReadonly<T[K]> }
    : T;

/**
 * What a payload's `init(ctx)` receives, once per load (on apply, and again after a restart).
 * `C` is the config type the patch expects its host to declare; the default says only that
 * it is JSON or absent.
 */
export interface PatchInitContext<C = TargetConfig | undefined> {
  /** The target this version is loaded for, e.g. `xps.pricing.quote`. */
  readonly target: string;
  /** The version being loaded (the manifest's). */
  readonly version: string;
  /** The patch id (the manifest's). */
  readonly patchId: string;
  /** Present (true) when `runtime.restore()` reloads the version after a restart; absent on apply. */
  readonly restored?: true;
  /**
   * The target's `config` as the host declared it, deep-frozen (`undefined` when it declares
   * none). Read settings from here rather than from `process.env`: the host decides them,
   * and every version of the target sees the same values.
   */
  readonly config: DeepReadonly<C>;
}

/**
 * The exports of an `esm` payload, as the installer accepts them: `api` (an object with every
 * function of the target's interface `T`; extra members are ignored) and optional hooks,
 * each a function when exported at all. Hooks are called without a `this`, and each may
 * return a promise, which is awaited.
 *
 * Check a payload file against it with `satisfies` (erased at build):
 *
 * ```ts
 * import type { PatchInitContext, PatchModule } from 'xps-hotpatch';
 * export const api: PricingApi = { quote: (sku, qty) => … };
 * export function init(ctx: PatchInitContext<PricingConfig>): void { … }
 * export function selfTest(): void { … }
 * ({ api, init, selfTest }) satisfies PatchModule<PricingApi, PricingConfig>;
 * ```
 *
 * `C` is the config type `init` expects; `S` the state handed over on promotion: what the
 * running version's `exportState()` returns reaches the new version's `importState()` (the
 * default, `unknown`, makes a patch check what it is given: the running version may be the
 * built-in or any other patch, so `S` is the author's claim, never checked).
 */
export interface PatchModule<T extends object, C = TargetConfig | undefined, S = unknown> {
  /** The target's interface: every method of the built-in implementation, as functions. */
  readonly api: T;
  /** Runs once per load, before any self-test or live call; a throw refuses the patch (`LOAD_FAILED`). */
  readonly init?: (ctx: PatchInitContext<C>) => void | Promise<void>;
  /** Known-answer tests run before any live call; a throw refuses the patch (`SELF_TEST_FAILED`). */
  readonly selfTest?: () => void | Promise<void>;
  /** Runs once the version is out of service and drained (stop timers, close handles). */
  readonly dispose?: () => void | Promise<void>;
  /** On promotion: this version's state, handed to the next version's `importState`. */
  readonly exportState?: () => S | Promise<S>;
  /**
   * On promotion: the running version's exported state, before this version becomes the steady
   * one (it has served canary calls already). A throw keeps the running version (`ABORTED`).
   */
  readonly importState?: (state: S) => void | Promise<void>;
}

import { HotPatchError, Registries, defaultRegistries, describe, positiveInteger } from '../core/index.js';
import { HotPatchRuntime } from '../zero-downtime/index.js';

export interface PlannerOptions {
  /** The runtime whose targets the plans patch (and whose bus carries the events). */
  runtime: HotPatchRuntime;
  /** Where plans find their components by name (default: `defaultRegistries`). */
  registries?: Registries;
  /**
   * Directory of the journal (`<stateDir>/journal.json`); default `runtime.stateDir`.
   * `null`: no journal (plans live in memory only).
   */
  stateDir?: string | null;
  /** Clock of the time windows (epoch ms; default `Date.now`). Signatures and expiry always use the real clock. */
  now?: () => number;
  /**
   * Deaths of the process during one plan's apply phase (its patch loading, self-testing or
   * in canary) before the patch is blamed (default 2: one death may be unrelated — a deploy,
   * the OOM killer elsewhere — a second in a row is the patch). At the limit the plan fails
   * with CRASHED, the patch is recorded as failed in state.json, and nothing runs it again.
   */
  maxApplyCrashes?: number;
  /**
   * Finished plans (activated, failed, rolled-back) kept, newest first (default 500); older
   * ones no kept plan depends on are dropped from memory and the journal as plans finish
   * (their history stays in the audit log). Bounds the journal and `plans()`.
   */
  keepFinishedPlans?: number;
  /** Plans not yet finished at once (default 1000); one more is refused with TOO_LARGE. */
  maxOpenPlans?: number;
}

/** PlannerOptions checked, with their defaults filled in. */
export interface PlannerSettings {
  readonly runtime: HotPatchRuntime;
  readonly registries: Registries;
  readonly now: () => number;
  readonly maxApplyCrashes: number;
  readonly keepFinished: number;
  readonly maxOpen: number;
  /** Directory of the journal, or undefined when the planner keeps none. */
  readonly journalDir: string | undefined;
}

/** Checks the options a Planner is built with (INVALID on a bad one) and fills in the defaults. */
export function plannerSettings(options: PlannerOptions): PlannerSettings {
  if (typeof options !== 'object' || options === null) throw new HotPatchError('INVALID', `planner options must be an object, got ${describe(options)}`);
  if (!(options.runtime instanceof HotPatchRuntime))
    throw new HotPatchError('INVALID', `options.runtime must be a HotPatchRuntime, got ${describe(options.runtime)}`);
  if (options.registries !== undefined && !(options.registries instanceof Registries)) {
    throw new HotPatchError('INVALID', `options.registries must be a Registries instance, got ${describe(options.registries)}`);
  }
  if (options.stateDir !== undefined && options.stateDir !== null && (typeof options.stateDir !== 'string' || options.stateDir.length === 0)) {
    throw new HotPatchError('INVALID', `options.stateDir must be a non-empty path or null, got ${describe(options.stateDir)}`);
  }
  if (options.now !== undefined && typeof options.now !== 'function')
    throw new HotPatchError('INVALID', `options.now must be a function, got ${describe(options.now)}`);
  return {
    runtime: options.runtime,
    registries: options.registries ?? defaultRegistries,
    now: options.now ?? Date.now,
    maxApplyCrashes: positiveInteger(options.maxApplyCrashes ?? 2, 'options.maxApplyCrashes'),
    keepFinished: positiveInteger(options.keepFinishedPlans ?? 500, 'options.keepFinishedPlans'),
    maxOpen: positiveInteger(options.maxOpenPlans ?? 1000, 'options.maxOpenPlans'),
    journalDir: options.stateDir === null ? undefined : (options.stateDir ?? options.runtime.stateDir),
  };
}

import { HotPatchError, asObject, describe, parsePatchId, parseTargetName, rejectUnknownFields, type ErrorCode } from '../core/index.js';
import type { ApplyResult } from '../zero-downtime/index.js';
import { checkPersistableZdt, type PersistableZdtOptions } from './persistable-zdt.js';
import { checkPlanPin, type PlanPin } from './plan-pin.js';
import { checkTimeWindow, type TimeWindow } from './window.js';

/**
 * Canary options a plan may carry. Only the plain-data ones: a plan is persisted in the
 * journal and must come back identical after a restart, so functions (`routingKey`,
 * `random`) and the per-run `signal` / `runtime` are not part of it
 * (see `checkPersistableZdt`, shared with fleet rollout documents).
 */
export type PlanZdtOptions = PersistableZdtOptions;

export interface PatchPlan {
  /** Plan id (PatchId grammar). */
  id: string;
  /** The target the plan patches (must be declared in the runtime when it runs). */
  target: string;
  /** Patch id to apply; absent = the highest acceptable version for `target` in the repository. */
  patch?: string;
  /** Names of registered components (`Registries`). */
  repo: string;
  verifier: string;
  security: string;
  installer: string;
  approver?: string;
  window?: TimeWindow;
  /** Plans that must be `activated` before this one runs; one that fails fails this one. */
  dependsOn?: string[];
  zdt?: PlanZdtOptions;
  /** The exact version and payload hash the patch must have (a fleet rollout's); another build is refused. */
  pin?: PlanPin;
}

export const PLAN_STATUSES = ['pending', 'waiting', 'running', 'activated', 'failed', 'rolled-back'] as const;
export type PlanStatus = (typeof PLAN_STATUSES)[number];

/** Phases of a run, recorded in the journal before each begins. */
export const PLAN_PHASES = ['fetch', 'verify', 'gate', 'approve', 'apply'] as const;
export type PlanPhase = (typeof PLAN_PHASES)[number];

/** Statuses a plan never leaves: running it again returns them unchanged. */
export const FINAL_STATUSES: readonly PlanStatus[] = ['activated', 'failed', 'rolled-back'];

export interface PlanState {
  plan: PatchPlan;
  status: PlanStatus;
  /** The phase the last run reached (while `running`: the phase in progress). */
  phase?: PlanPhase;
  /** The patch the last run chose (`plan.patch`, or the one polling found). */
  patchId?: string;
  /** Its version, once verified. */
  version?: string;
  reason?: string;
  /** Error code of the last failure or wait, when one applies. */
  code?: ErrorCode;
  /** Runs that got past the dependency and window checks. */
  attempts: number;
  /**
   * Times the process died while this plan was in its apply phase (the patch's code loading,
   * self-testing or in canary), counted at restart; at the planner's `maxApplyCrashes` the
   * patch is blamed and the plan fails with CRASHED.
   */
  crashes?: number;
  /** RFC 3339. */
  updatedAt: string;
}

export interface PlanRunResult {
  planId: string;
  status: PlanStatus;
  reason: string;
  patchId?: string;
  version?: string;
  apply?: ApplyResult;
  code?: ErrorCode;
  /** When waiting for its time window: the next opening (epoch ms). */
  nextOpenMs?: number;
  /** Set when this outcome could not be written to journal.json yet (why); the planner retries the write. */
  journalError?: string;
}

const PLAN_FIELDS = ['id', 'target', 'patch', 'repo', 'verifier', 'security', 'installer', 'approver', 'window', 'dependsOn', 'zdt', 'pin'] as const;
const PLAN_FIELD_SET = new Set<string>(PLAN_FIELDS);
/** The registries' own name grammar (core/registry.ts). */
const COMPONENT_NAME = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;
const MAX_DEPENDENCIES = 64;

function componentName(value: unknown, field: string): string {
  if (typeof value !== 'string' || !COMPONENT_NAME.test(value)) {
    throw new HotPatchError('INVALID', `${field} must be a registered component name matching ${COMPONENT_NAME.source}, got ${describe(value)}`);
  }
  return value;
}

/**
 * Strict check of a plan (unknown fields, ids, names, window, canary options → INVALID);
 * returns a normalised copy with the fields in a fixed order, so two plans are the same plan
 * exactly when their canonical JSON is equal. Whether `dependsOn` names known plans, and
 * whether the components are registered, is the planner's to check.
 */
export function checkPlan(value: unknown, field = 'plan'): PatchPlan {
  const obj = asObject(value, field);
  rejectUnknownFields(obj, PLAN_FIELD_SET, field);
  const id = parsePatchId(obj.id, `${field}.id`);
  const where = `plan ${id}`;
  const target = parseTargetName(obj.target, `${where}: target`);
  const patch = obj.patch === undefined ? undefined : parsePatchId(obj.patch, `${where}: patch`);
  const plan: PatchPlan = { id, target, ...(patch === undefined ? {} : { patch }), repo: '', verifier: '', security: '', installer: '' };
  plan.repo = componentName(obj.repo, `${where}: repo`);
  plan.verifier = componentName(obj.verifier, `${where}: verifier`);
  plan.security = componentName(obj.security, `${where}: security`);
  plan.installer = componentName(obj.installer, `${where}: installer`);
  if (obj.approver !== undefined) plan.approver = componentName(obj.approver, `${where}: approver`);
  if (obj.window !== undefined) plan.window = checkTimeWindow(obj.window, `${where}: window`);
  if (obj.dependsOn !== undefined) {
    if (!Array.isArray(obj.dependsOn) || obj.dependsOn.length > MAX_DEPENDENCIES) {
      throw new HotPatchError('INVALID', `${where}: dependsOn must be an array of at most ${MAX_DEPENDENCIES} plan ids, got ${describe(obj.dependsOn)}`);
    }
    const deps: string[] = [];
    for (const [i, d] of obj.dependsOn.entries()) {
      const dep = parsePatchId(d, `${where}: dependsOn[${i}]`);
      if (dep === id) throw new HotPatchError('INVALID', `${where} depends on itself (a dependency cycle)`);
      if (deps.includes(dep)) throw new HotPatchError('INVALID', `${where}: dependsOn lists ${dep} twice`);
      deps.push(dep);
    }
    if (deps.length > 0) plan.dependsOn = deps;
  }
  if (obj.zdt !== undefined) plan.zdt = checkPersistableZdt(obj.zdt, `${where}: zdt`);
  if (obj.pin !== undefined) {
    if (patch === undefined) throw new HotPatchError('INVALID', `${where}: a pin needs the plan to name its patch`);
    plan.pin = checkPlanPin(obj.pin, where);
  }
  return plan;
}

/** Canonical text of a normalised plan (field order fixed by `checkPlan`). */
export function planKey(plan: PatchPlan): string {
  return JSON.stringify(plan);
}

import type { VersionRecord } from '../rollback/index.js';
import type { RuntimeVersion } from './runtime-version.js';
import type { Target } from './target.js';

export interface VersionStatus {
  version: string;
  patchId: string | null;
  inflight: number;
  /** Its worker thread (thread id) or child process (pid), when the target is isolated and this is a patch version. */
  isolate?: { mode: 'worker' | 'process'; id: number; state: 'loading' | 'ready' | 'dead' | 'terminated'; restarts: number; death?: string };
}

export interface TargetStatus {
  target: string;
  /** Where its patch versions run. */
  isolation: 'inline' | 'worker' | 'process';
  active: VersionStatus;
  previous: VersionStatus | undefined;
  frozen: string | undefined;
  /**
   * The active version's standing: `good` (probation passed, confirmed, or the built-in: a
   * restart keeps it), or in probation with `leftMs` to go (a crash before then reverts it;
   * a graceful stop suspends it).
   */
  probation: { good: true } | { good: false; leftMs: number };
  canary:
    | { patchId: string; version: string; ratio: number; candidateCalls: number; candidateErrors: number; baselineCalls: number; candidate: VersionStatus }
    | undefined;
}

/** One target's entry of `HotPatchRuntime.status()`; `probation` is the active version's standing (see `probationStanding`). */
export function targetStatus(t: Target<object>, probation: TargetStatus['probation']): TargetStatus {
  const canary = t.canary;
  return {
    target: t.name,
    isolation: t.isolation?.mode ?? 'inline',
    active: versionStatus(t.active),
    previous: t.previous === undefined ? undefined : versionStatus(t.previous),
    frozen: t.frozen,
    probation,
    canary:
      canary === null || t.applying === undefined
        ? undefined
        : {
            patchId: t.applying.patchId,
            version: t.applying.version,
            ratio: canary.ratio,
            candidateCalls: canary.candidateStats.calls,
            candidateErrors: canary.candidateStats.errors,
            baselineCalls: canary.baselineStats.calls,
            candidate: versionStatus(canary.candidate),
          },
  };
}

/**
 * The standing of a target's active `version`, from its recorded figures (`meta`) and when the
 * target's running probation timer ends (`endsAt`, undefined when none runs).
 */
export function probationStanding(version: RuntimeVersion, meta: Partial<VersionRecord> | undefined, endsAt: number | undefined): TargetStatus['probation'] {
  if (version.patchId === null || meta === undefined || meta.good === true) return { good: true };
  return { good: false, leftMs: Math.max(0, Math.round(probationLeftMs(meta, endsAt))) };
}

/** Probation left: from the running timer's deadline (a resumed probation too), else from the promotion. */
export function probationLeftMs(meta: Partial<VersionRecord>, endsAt: number | undefined): number {
  if (endsAt !== undefined) return endsAt - Date.now();
  const promotedMs = meta.promoted_at === undefined ? Date.now() : Date.parse(meta.promoted_at);
  return promotedMs + (meta.probation_ms ?? 0) - Date.now();
}

function versionStatus(v: RuntimeVersion): VersionStatus {
  const status: VersionStatus = { version: v.version, patchId: v.patchId, inflight: v.inflight };
  const i = v.isolate;
  if (i !== undefined) status.isolate = { mode: i.mode, id: i.id, state: i.state, restarts: i.restarts, ...(i.death === undefined ? {} : { death: i.death }) };
  return status;
}

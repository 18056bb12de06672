import { HotPatchError, type ErrorCode } from '../core/index.js';
import type { ApplyResult } from '../zero-downtime/index.js';
import type { PlanPhase, PlanRunResult, PlanState, PlanStatus } from './plan.js';

/*
 * How a plan's run ends: the outcome a run settles on, how an error maps to one, and the
 * result a caller is given.
 */

/** How a run ended before reaching the installer (or what it found). */
export interface Outcome {
  status: PlanStatus;
  reason: string;
  code?: ErrorCode;
  apply?: ApplyResult;
  nextOpenMs?: number;
  /** Publish a `Failed` event for it (failures the runtime has not reported itself). */
  announce?: boolean;
}

/** Maps an error of a run to the plan's outcome. */
export function failureOutcome(state: PlanState, error: unknown, signal: AbortSignal | undefined, shutdown: boolean): Outcome {
  const code = codeOf(error);
  // Before the run is recorded as running, it was still choosing its patch (fetch).
  const phase: PlanPhase = state.status === 'running' ? (state.phase ?? 'fetch') : 'fetch';
  const message = error instanceof Error ? error.message : String(error);
  // The runtime reports apply-phase failures itself (Failed / RolledBack / Aborted events).
  const announce = phase !== 'apply';
  if (code === 'ABORTED') {
    if (shutdown && signal?.aborted === true) return { status: 'pending', reason: `interrupted during ${phase} by shutdown; will run again` };
    const busyWith = error instanceof HotPatchError ? error.detail?.busyWith : undefined;
    if (typeof busyWith === 'string') return { status: 'waiting', reason: `target ${state.plan.target} is busy with patch ${busyWith}` };
    return { status: 'failed', reason: `aborted during ${phase}: ${message}`, code, announce };
  }
  if ((phase === 'fetch' || phase === 'verify') && (code === 'NOT_FOUND' || code === 'IO')) {
    // Not published yet (or the repository is unreachable): try again on the next round.
    const what = code === 'NOT_FOUND' ? `not published in repository ${state.plan.repo} yet` : `not readable from repository ${state.plan.repo} now`;
    return { status: 'waiting', reason: `patch ${state.patchId ?? state.plan.patch ?? '?'} ${what}: ${message}`, code };
  }
  if (code === 'IO' && phase === 'apply') {
    // A full disk, an unreadable staged file: not the patch's fault, and it passes; the
    // running version is untouched (the runtime rolled back), so the plan tries again later.
    return { status: 'waiting', reason: `apply failed on I/O (the running version is untouched; will try again): ${message}`, code };
  }
  if (code === 'CANARY_FAILED') return { status: 'rolled-back', reason: message, code };
  const out: Outcome = { status: 'failed', reason: `${phase} failed: ${message}`, announce };
  if (code !== undefined) out.code = code;
  return out;
}

/** What a caller is told of a plan's state. */
export function resultOf(state: PlanState): PlanRunResult {
  const r: PlanRunResult = { planId: state.plan.id, status: state.status, reason: state.reason ?? '' };
  if (state.patchId !== undefined) r.patchId = state.patchId;
  if (state.version !== undefined) r.version = state.version;
  if (state.code !== undefined) r.code = state.code;
  return r;
}

export function codeOf(error: unknown): ErrorCode | undefined {
  return error instanceof HotPatchError ? error.code : undefined;
}

import type { ErrorCode } from '../core/index.js';
import type { JudgeFigures } from './canary-judge.js';
import type { CanaryRoute } from './canary-route.js';
import type { ResolvedZdtOptions } from './options.js';
import type { HotPatchRuntime } from './runtime.js';
import type { RuntimeVersion } from './runtime-version.js';
import type { DrainReport } from './version-disposal.js';
import { watchProbation } from './probation-watch.js';
import type { Target } from './target.js';

/**
 * Promotes the candidate (the canary passed, or an operator said so): the old version's state
 * handed over, an abort or trip that arrived meanwhile honoured, the promotion persisted, then
 * the flip. A failure is returned, not thrown, with whether the patch is at fault, for the
 * caller's own failure path.
 */
export async function promoteCandidate(
  runtime: HotPatchRuntime,
  target: Target<object>,
  candidate: RuntimeVersion,
  opts: ResolvedZdtOptions,
  emit: (type: 'Promoted' | 'Activated', reason: string, detail?: Record<string, unknown>) => void,
  why: string,
  pendingAbort: () => string | undefined = () => undefined,
  figures?: JudgeFigures,
  reference?: CanaryRoute,
): Promise<
  { ok: true; reason: string; drain: Promise<DrainReport> | undefined } | { ok: false; code: ErrorCode; reason: string; cause: unknown; patchAtFault: boolean }
> {
  const old = target.active;
  // Statistics judge answers; an isolate that is not answering at all is not promoted on them
  // (a canary that passed, or an operator promoting a paused one).
  const isolate = candidate.isolate;
  if (isolate !== undefined && (isolate.state !== 'ready' || isolate.suspectedStuck)) {
    const state =
      isolate.state !== 'ready'
        ? `is ${isolate.state}${isolate.death === undefined ? '' : ` (${isolate.death})`}`
        : 'is not answering (a call passed its deadline, a ping is unanswered)';
    return {
      ok: false,
      code: 'CANARY_FAILED',
      reason: `canary of ${candidate.patchId ?? candidate.version} passed, but the candidate's ${isolate.mode} ${state}: not promoted`,
      cause: undefined,
      patchAtFault: true,
    };
  }
  if (old.hooks.exportState !== undefined && candidate.hooks.importState !== undefined) {
    try {
      const state = await old.hooks.exportState();
      await candidate.hooks.importState(state);
    } catch (cause) {
      return {
        ok: false,
        code: 'ABORTED',
        reason: `state handover from ${old.version} to ${candidate.version} failed: ${(cause as Error).message}; ${old.version} kept`,
        cause,
        patchAtFault: true,
      };
    }
  }
  // An abort or rollback that arrived during the handover is honoured, not acknowledged and lost;
  // so is a trip (a run of candidate errors) after the last look.
  const aborted = pendingAbort();
  if (aborted !== undefined) return { ok: false, code: 'ABORTED', reason: aborted, cause: undefined, patchAtFault: false };
  if (reference?.tripped !== undefined) {
    return {
      ok: false,
      code: 'CANARY_FAILED',
      reason: `canary of ${candidate.version} failed before promotion: ${reference.tripped}`,
      cause: undefined,
      patchAtFault: true,
    };
  }
  // Persist first, then flip: a failed write leaves the old version serving and the state
  // file telling the truth, never a new version the next restart would silently undo.
  try {
    await runtime.recordPromotion(target, candidate, old, opts.probationMs);
  } catch (cause) {
    return {
      ok: false,
      code: 'IO',
      reason: `recording the promotion of ${candidate.version} failed: ${(cause as Error).message}; ${old.version} kept`,
      cause,
      patchAtFault: false,
    };
  }
  const retired = target.previous;
  target.promoteTo(candidate);
  emit('Promoted', why, { from: old.version, ...(figures === undefined ? {} : { figures }) });
  emit('Activated', `${candidate.version} active, ${old.version} kept warm for rollback`, { previous: old.version, probationMs: opts.probationMs });
  // Keep judging after promotion: the promoted version against what the previous one showed.
  if (opts.probationWatch && opts.probationMs > 0 && reference !== undefined) watchProbation(runtime, target, candidate, old, reference.evidence, opts);
  const drain = retired === undefined ? undefined : runtime.disposeWhenDrained(target, retired, opts.drainTimeoutMs);
  return { ok: true, reason: why, drain };
}

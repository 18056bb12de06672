import { emitRedactedWarning } from '../core/index.js';
import type { CanaryEvidence } from './canary-evidence.js';
import { boundedExcessTest, count, lookAlpha, p3, pct, tripAlpha } from './canary-judge.js';
import type { ResolvedZdtOptions } from './options.js';
import type { HotPatchRuntime } from './runtime.js';
import type { RuntimeVersion } from './runtime-version.js';
import type { Target } from './target.js';

/**
 * After promotion there is no baseline at the same moment, only what the previous version
 * showed during the canary. Latency is therefore not judged here at all: a busier machine
 * reads as a slower version (seen: ×7.7 after promotion, with the patch unchanged, when two of
 * three etcd members died under a fleet of six service processes), and slow patches are caught
 * during the canary, where both versions run at the same moment. Errors depend far less on
 * the machine's load, and are judged with a margin: the promoted version fails only if its error rate is significantly
 * above twice what the previous version showed (its upper confidence bound) plus 0.1 % of
 * calls, so a downstream hiccup after promotion is not blamed on the patch.
 */
const ERROR_FACTOR = 2;
const ERROR_SLACK = 0.001;

/**
 * Keeps judging a promoted version through its probation: its errors against what the
 * previous version showed during the canary. A clear regression routes every call
 * back to the warm previous version at once (a field write), then records the rollback and
 * marks the patch failed. Errors are checked on the error path itself (a version failing
 * every call is caught within a few calls) and again at each look. With
 * `retryOnBaseline`, a failed call is re-run on the previous version, so callers see none.
 */
export function watchProbation(
  runtime: HotPatchRuntime,
  target: Target<object>,
  promoted: RuntimeVersion,
  previous: RuntimeVersion,
  reference: CanaryEvidence,
  opts: ResolvedZdtOptions,
): void {
  const refCalls = reference.baseline.calls + reference.baselineBefore.calls;
  const refErrors = reference.baseline.errors + reference.baselineBefore.errors;
  const calls0 = promoted.calls;
  const errors0 = promoted.errors;
  let nextErrorCheck = 3;
  let look = 0;
  let stopped = false;
  const endsAt = performance.now() + opts.probationMs;

  /** `regressed`: the fallback stays, so calls still in flight on the bad version are answered too. */
  const stop = (regressed = false): void => {
    if (stopped) return;
    stopped = true;
    clearInterval(timer);
    if (promoted.onError === onError) promoted.onError = null;
    if (!regressed && promoted.fallback === previous) promoted.fallback = null;
  };
  const stillWatched = (): boolean => {
    if (stopped) return false;
    // Over when the probation ends, another version serves, or an operator confirmed it good.
    if (target.active !== promoted || target.previous !== previous || performance.now() > endsAt || runtime.isGood(promoted)) {
      stop();
      return false;
    }
    return true;
  };

  const errorFigures = (): { calls: number; errors: number } => ({ calls: promoted.calls - calls0, errors: promoted.errors - errors0 });
  /** The promoted version's errors against what it may show before it is blamed, at level α. */
  const errorTest = (f: { calls: number; errors: number }, alpha: number): { p: number; bound: number } =>
    boundedExcessTest(f.errors, Math.max(f.calls, f.errors), refErrors, refCalls, alpha, ERROR_FACTOR, ERROR_SLACK + opts.maxErrorExcess);
  const errorReason = (f: { calls: number; errors: number }, t: { p: number; bound: number }, alpha: number): string =>
    `after promotion ${promoted.version} failed ${count(f.errors)} of ${count(f.calls)} calls (${pct(f.calls === 0 ? 0 : f.errors / f.calls)}) ` +
    `against ${previous.version}'s ${count(refErrors)} of ${count(refCalls)} (tolerated up to ${pct(t.bound)}): exact binomial p=${p3(t.p)} < α=${p3(alpha)}`;

  const onError = (): void => {
    if (!stillWatched()) return;
    const f = errorFigures();
    if (f.errors < nextErrorCheck) return;
    nextErrorCheck = Math.ceil(nextErrorCheck * 1.4) + 1;
    const alpha = tripAlpha(opts.confidence);
    const t = errorTest(f, alpha);
    if (t.p < alpha) regress(errorReason(f, t, alpha), { rule: 'overwhelming-errors', ...f, errorP: t.p, alpha });
  };

  const lookNow = (): void => {
    if (!stillWatched()) return;
    look += 1;
    const alpha = lookAlpha(opts.confidence, look);
    const f = errorFigures();
    if (f.errors > 0) {
      const t = errorTest(f, alpha);
      if (t.p < alpha) return regress(errorReason(f, t, alpha), { rule: 'error-excess', ...f, errorP: t.p, alpha, look });
    }
  };

  const regress = (reason: string, figures: Record<string, unknown>): void => {
    stop(true);
    void rollBackRegression(runtime, target, promoted, previous, reason, figures, opts.drainTimeoutMs);
  };

  promoted.onError = onError;
  // An idempotent target keeps its callers answered: a failed call is re-run on the previous version.
  if (opts.retryOnBaseline) promoted.fallback = previous;
  const timer = setInterval(lookNow, Math.max(250, Math.min(5000, opts.probationMs / 20)));
  timer.unref();
}

/**
 * The regression's rollback: flip first (every next call on the previous version: a field
 * write), then record it. A crash between the two is safe: the promoted version is still in
 * probation in state.json, so a restart reverts it anyway.
 */
async function rollBackRegression(
  runtime: HotPatchRuntime,
  target: Target<object>,
  bad: RuntimeVersion,
  previous: RuntimeVersion,
  reason: string,
  figures: Record<string, unknown>,
  drainTimeoutMs: number,
): Promise<void> {
  if (target.applying !== undefined) {
    // Another patch is being applied over the regressed version: stop it (its canary is
    // judged against a broken baseline), then roll back once it has let go of the target.
    target.abort(`${bad.label} regressed during its probation: ${reason}`);
    await waitUntil(() => target.applying === undefined, drainTimeoutMs);
  }
  if (target.active !== bad || target.previous !== previous || target.applying !== undefined) {
    // Something else moved the target meanwhile (an operator rollback, a promotion): nothing to undo.
    if (bad.fallback === previous) bad.fallback = null;
    return;
  }
  target.routeTo(previous, undefined);
  runtime.emit('RolledBack', target.name, previous.version, bad.patchId ?? 'builtin', reason, {
    code: 'CANARY_FAILED',
    from: bad.version,
    to: previous.version,
    phase: 'probation',
    ...figures,
  });
  try {
    await runtime.recordRollback(target, previous, bad);
  } catch (error) {
    emitRedactedWarning(`${target.name}: recording the rollback of ${bad.label} failed: ${error instanceof Error ? error.message : String(error)}`, {
      code: 'HOTPATCH_STATE_WRITE_FAILED',
    });
  }
  void runtime.disposeWhenDrained(target, bad, drainTimeoutMs);
}

/** Polls `done` every 20 ms until it holds or `timeoutMs` passes. */
async function waitUntil(done: () => boolean, timeoutMs: number): Promise<void> {
  const until = performance.now() + timeoutMs;
  while (!done() && performance.now() < until) await new Promise((r) => setTimeout(r, 20));
}

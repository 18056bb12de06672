import { join } from 'node:path';
import { mkdir } from 'node:fs/promises';
import {
  HotPatchError,
  encodeEnvelope,
  type ErrorCode,
  type LoadedModule,
  type PatchInstaller,
  type VerifiedManifest,
  emitRedactedWarning,
} from '../core/index.js';
import { RealmSnapshot } from '../installer/index.js';
import { writeFileAtomic } from '../repo/index.js';
import { judge, summarySentence, type JudgeFigures, type StepVerdict } from './canary-judge.js';
import { CanaryRoute, latencyShare, type OutputValidator } from './canary-route.js';
import { resolveZdtOptions, type ResolvedZdtOptions, type ZdtOptions } from './options.js';
import { runSelfTests } from './recorded-versions.js';
import { withoutPlaintextHash } from './plaintext-hash.js';
import { HotPatchRuntime } from './runtime.js';
import type { RuntimeVersion } from './runtime-version.js';
import { promoteCandidate } from './promote-candidate.js';
import { waitInterval } from './canary-wait.js';
import type { DrainReport } from './version-disposal.js';
import { canaryIntervalMs } from './schedule.js';
import { deadline, type Deadline } from './deadline.js';
import { quantile } from '../stats/index.js';
import type { CanaryControl, Target } from './target.js';

export type ApplyOutcome = 'promoted' | 'rolled-back' | 'paused' | 'already-active';

export interface StepReport {
  step: number;
  ratio: number;
  verdict: StepVerdict;
  reason: string;
  figures: JudgeFigures;
  /** Intervals waited in this step (more than one when Inconclusive extended it). */
  intervals: number;
}

export interface ApplyResult {
  outcome: ApplyOutcome;
  target: string;
  patchId: string;
  version: string;
  reason: string;
  steps: StepReport[];
  /** Disposal of the version the promotion retired (the one before the new previous). */
  drain?: Promise<DrainReport>;
}

export interface ApplyOptions extends ZdtOptions {
  /** The runtime holding the target (default: `defaultRuntime`). */
  runtime?: HotPatchRuntime;
}

/** Why the payload is refused when it changed the shared built-ins (each change undone where possible), else undefined. */
function tampering(realm: RealmSnapshot, patchId: string, when: string): string | undefined {
  const { changes, permanent } = realm.check();
  if (changes.length === 0) return undefined;
  const listed = `${changes.slice(0, 8).join(', ')}${changes.length > 8 ? ` and ${changes.length - 8} more` : ''}`;
  const undone = permanent.length === 0 ? 'every change undone' : `undone except: ${permanent.slice(0, 4).join(', ')}`;
  return `${patchId} changed the process's shared built-ins ${when} (${listed}); ${undone}, and the patch refused`;
}

/** The runtime used when `twoPhaseApply` is not given one (no state directory: nothing persisted). */
export const defaultRuntime = new HotPatchRuntime();

/**
 * Applies a verified patch to its target with no dropped call (seed: twoPhaseApply).
 * Phases: stage → load/init → selfTest → canary steps → promote (state handover) → activate.
 * Any failure before promotion leaves the running version serving, untouched; a failed
 * canary step routes every call back to the baseline at once (a field write, no reload).
 */
export async function twoPhaseApply(
  installer: PatchInstaller,
  pkg: VerifiedManifest,
  payload: Uint8Array | AsyncIterable<Uint8Array>,
  options: ApplyOptions = {},
): Promise<ApplyResult> {
  const opts = resolveZdtOptions(options);
  const runtime = options.runtime ?? defaultRuntime;
  const { manifest, facts } = pkg;
  const target = runtime.get(manifest.target);
  const base = { target: target.name, patchId: manifest.id, version: manifest.version };

  if (target.frozen !== undefined) {
    throw new HotPatchError('POLICY_DENIED', `target ${target.name} is frozen (${target.frozen}); unfreeze it before applying ${manifest.id}`);
  }
  if (target.applying !== undefined || target.paused !== undefined) {
    const busy = target.applying ?? target.paused!;
    throw new HotPatchError('ABORTED', `target ${target.name} is busy with patch ${busy.patchId} (${busy.version}); ${manifest.id} was not applied`, {
      detail: { busyWith: busy.patchId },
    });
  }
  if (opts.retryOnBaseline && target.declaration.idempotent !== true) {
    throw new HotPatchError('INVALID', `retryOnBaseline re-runs calls: target ${target.name} must be declared idempotent`);
  }
  if (target.active.patchId === manifest.id && target.active.version === manifest.version) {
    return { ...base, outcome: 'already-active', reason: `${manifest.id} is already active`, steps: [] };
  }

  const control: CanaryControl = { promoteRequested: false, abortReason: undefined, wake: () => {} };
  target.applying = { patchId: manifest.id, version: manifest.version, control };
  const emit = (type: Parameters<HotPatchRuntime['emit']>[0], reason: string, detail?: Record<string, unknown>): void =>
    runtime.emit(type, target.name, manifest.version, manifest.id, reason, detail);
  const steps: StepReport[] = [];
  /** Errors already turned into events and state by `fail`, rethrown as they are. */
  const handled = new WeakSet<object>();
  let candidate: RuntimeVersion | undefined;
  let route: CanaryRoute | undefined;
  let loadDeadline: Deadline | undefined;
  /** Ends the candidate's death watch (isolated targets), when the canary is over. */
  let stopWatchingDeath: (() => void) | undefined;
  /** The two versions whose calls record their time inside while the canary runs (isolated targets). */
  let timed: RuntimeVersion[] = [];
  /** This apply left its canary paused (an abort with rollbackOnCancel false). */
  let pausedHere = false;
  /** The canary is over (or paused and then ended): the watch and the timing stop. */
  const canaryOver = (): void => {
    stopWatchingDeath?.();
    stopWatchingDeath = undefined;
    target.timeInside(false, timed);
    timed = [];
  };
  /** The shared built-ins as they were before the payload's code first ran (see realm-guard). */
  let realm: RealmSnapshot | undefined;
  /** Routes every call back to the baseline (a field write), once; `flippedBack` remembers it. */
  let flippedBack = false;
  const flipBack = (): void => {
    if (route === undefined || target.canary !== route) return;
    target.setCanary(null);
    flippedBack = true;
  };

  const abortReason = (): string | undefined => control.abortReason ?? (opts.signal?.aborted === true ? reasonOf(opts.signal.reason) : undefined);

  /** The staged plaintext's hash of an encrypted patch, kept out of every reason recorded. */
  let plaintextSha: string | undefined;
  /**
   * Every failure path: back to the baseline, candidate disposed once drained, recorded.
   * `patchAtFault`: the patch itself failed (recorded in state.json's `failed`, never retried
   * by a plan). An abort by signal or operator is not the patch's fault, nor is an I/O
   * failure (a full disk): it may run again.
   */
  const fail = async (code: ErrorCode, why: string, cause?: unknown, patchAtFault = code !== 'ABORTED' && code !== 'IO'): Promise<ApplyResult> => {
    // Every call back on the baseline first (a field write): nothing waits for the checks below.
    flipBack();
    const rolledBack = flippedBack;
    // Then undo what the payload did to the built-ins, before anything is recorded: a refused
    // patch must not leave (say) an Object.prototype.toJSON rewriting the records of its refusal.
    const tampered = realm === undefined ? undefined : tampering(realm, manifest.id, 'before it was refused');
    const reason = withoutPlaintextHash(tampered === undefined ? why : `${why}; also: ${tampered}`, plaintextSha);
    if (code === 'ABORTED') emit('Aborted', reason, { code });
    if (rolledBack) emit('RolledBack', reason, { code, to: target.active.version });
    else if (code !== 'ABORTED') emit('Failed', reason, { code });
    if (candidate !== undefined) void runtime.disposeWhenDrained(target as Target<object>, candidate, opts.drainTimeoutMs);
    if (patchAtFault) {
      try {
        await runtime.recordFailure(target.name, manifest.id);
      } catch (writeError) {
        // The apply's own failure is what the caller must see; the lost mark is reported.
        emitRedactedWarning(`recording ${manifest.id} as failed did not reach state.json: ${(writeError as Error).message}`, {
          code: 'HOTPATCH_STATE_WRITE_FAILED',
        });
      }
    }
    if (code === 'CANARY_FAILED' && !opts.returnErrorOnCanaryFail) return { ...base, outcome: 'rolled-back', reason, steps };
    const error = new HotPatchError(code, reason, { cause, detail: { target: target.name, patchId: manifest.id, steps } });
    handled.add(error);
    throw error;
  };

  try {
    // phase 1: stage (content-addressed, hash checked while copying, fsynced, read-only).
    const stagingAbort = abortReason();
    if (stagingAbort !== undefined) return await fail('ABORTED', stagingAbort);
    const staged = await installer.stage(manifest, facts, payload, opts.signal);
    if (runtime.stateDir !== undefined) {
      // The signed manifest is kept beside the state, so a restart or an audit can re-check it.
      const dir = join(runtime.stateDir, 'manifests');
      await mkdir(dir, { recursive: true, mode: 0o700 });
      await writeFileAtomic(join(dir, `${manifest.id}.json`), encodeEnvelope(pkg.envelope), { mode: 0o600 });
    }
    if (manifest.encryption === undefined) emit('Staged', `staged as ${staged.path}`, { sha256: staged.sha256, size: staged.size, type: staged.type });
    // A decrypted payload's file is named by the plaintext's hash, which would let whoever reads
    // events (a read token, the audit log) confirm a guess of the fix: neither is published.
    else {
      plaintextSha = staged.sha256;
      emit('Staged', `staged decrypted (${staged.size} bytes) in the 0700 staging directory`, { size: staged.size, type: staged.type, encrypted: true });
    }

    // phase 2: load and init; a throw here leaves the running version untouched. Loading and
    // the known-answer tests share one deadline: a module that never settles must not hold the
    // target busy for ever (its code keeps whatever it started; it is simply never routed to).
    realm = RealmSnapshot.capture();
    loadDeadline = deadline(
      opts.loadTimeoutMs,
      () => `${manifest.id} did not finish loading within ${opts.loadTimeoutMs} ms (loadTimeoutMs): its import, init() or selfTest() never settled`,
    );
    const loading = installer.load(staged, target.loadOptions({ version: manifest.version, patchId: manifest.id }, opts.loadTimeoutMs));
    let mod: LoadedModule;
    try {
      mod = await loadDeadline.race(loading);
    } catch (error) {
      // The deadline won, but the load may still complete: an isolated module is ended then
      // (its worker or child would live on, unreachable); an inline one cannot be unloaded.
      loading
        .then(
          (late) => (late.isolate === undefined ? undefined : late.dispose?.()),
          () => undefined, // the load failed after all: nothing is left running
        )
        .catch((disposeError: unknown) => {
          emitRedactedWarning(`dispose() of ${manifest.id}, loaded after its deadline, threw: ${(disposeError as Error).message}`, {
            code: 'HOTPATCH_DISPOSE_FAILED',
          });
        });
      throw error;
    }
    candidate = runtime.versionOfModule(target as Target<object>, mod, {
      version: manifest.version,
      patchId: manifest.id,
      sha256: staged.sha256,
      type: staged.type,
    });
    // An isolated candidate that dies (a crash, an exit, killed as stuck or out of memory) has
    // failed its canary: every call back on the baseline at once.
    const isolatedCandidate = candidate;
    stopWatchingDeath = candidate.isolate?.onDeath((why) => {
      if (route !== undefined && route.candidate === isolatedCandidate) route.trip(`the candidate's ${isolatedCandidate.isolate!.mode} died: ${why}`);
    });

    // phase 3: known-answer tests before any live call reaches the candidate.
    await loadDeadline.race(runSelfTests(target as Target<object>, candidate));
    loadDeadline.clear();
    const tamperedAtLoad = tampering(realm, manifest.id, 'while loading');
    if (tamperedAtLoad !== undefined) return await fail('LOAD_FAILED', tamperedAtLoad);
    const loadAbort = abortReason();
    if (loadAbort !== undefined) return await fail('ABORTED', loadAbort);

    // phase 4: canary steps.
    const baseline = target.active;
    const canaryRoute = new CanaryRoute(
      baseline,
      candidate,
      {
        patchId: manifest.id,
        deterministic: target.declaration.deterministic === true,
        differentialSampleRate: opts.differentialSampleRate,
        retryOnBaseline: opts.retryOnBaseline,
        routingKey: opts.routingKey,
        random: opts.random,
        warmupCalls: opts.warmupCalls,
        latencyShare: latencyShare(opts.steps),
        confidence: opts.confidence,
        deadlineMs: opts.canaryCallTimeoutMs ?? derivedDeadlineMs(baseline.recentLatencyMs()),
        validate: target.declaration.validate as OutputValidator | undefined,
        methodNames: target.keys,
      },
      opts.steps[0]!,
    );
    route = canaryRoute;
    canaryRoute.onTrip = () => control.wake();
    if (target.isolation !== undefined) {
      timed = [baseline, candidate];
      target.timeInside(true, timed);
    }
    target.setCanary(canaryRoute);
    emit('CanaryStarted', `canary of ${manifest.version} against ${baseline.version} at ${pct(opts.steps[0]!)}`, {
      steps: opts.steps,
      baseline: baseline.version,
      confidence: opts.confidence,
      maxErrorExcess: opts.maxErrorExcess,
      maxLatencyShift: opts.maxLatencyShift,
    });

    let interval = 0;
    let look = 0;
    let manual = false;
    let last: JudgeFigures | undefined;
    steps: for (let i = 0; i < opts.steps.length; i++) {
      const ratio = opts.steps[i]!;
      // Do not widen exposure once an abort is pending: pause or roll back where we stand.
      const pending = abortReason();
      if (pending !== undefined) return await onAbort(pending);
      if (i > 0) canaryRoute.nextStep(ratio);
      for (let extensions = 0; ; extensions++) {
        const woke = await waitInterval(canaryIntervalMs(interval++, opts, opts.random), opts, control, () => canaryRoute.tripped !== undefined);
        if (woke === 'abort') return await onAbort(abortReason() ?? 'aborted');
        if (woke === 'promote') {
          manual = true;
          break steps;
        }
        look += 1;
        const analysis = judge(canaryRoute.evidence, look, i === opts.steps.length - 1, judgedOptions(opts, baseline, candidate));
        let { verdict, reason } = analysis;
        let figures = analysis.figures;
        // A trip decided already (mid-interval, every call back on the baseline): it is the verdict.
        if (canaryRoute.tripped !== undefined) {
          verdict = 'Failed';
          reason = canaryRoute.tripped;
          figures = { ...figures, rule: 'overwhelming-errors' };
        }
        if (verdict === 'Inconclusive' && extensions >= opts.maxInconclusiveExtensions) {
          verdict = 'Failed';
          reason = `no verdict after ${extensions + 1} intervals: ${reason} (never promoted without data)`;
        }
        // A Failed verdict routes every call back at once, before anything else is done or recorded.
        if (verdict === 'Failed') flipBack();
        // Each look, the built-ins are checked again: the candidate's calls run its code too.
        const tamperedNow = tampering(realm, manifest.id, 'during its canary');
        if (tamperedNow !== undefined) return await fail('CANARY_FAILED', tamperedNow);
        last = figures;
        if (opts.canaryCallTimeoutMs === undefined)
          canaryRoute.deadlines.deadlineMs = derivedDeadlineMs(
            canaryRoute.evidence.baselineLatency.view(),
            canaryRoute.evidence.baselineDuringWarmup.view(),
            baseline.recentLatencyMs(),
          );
        const report: StepReport = { step: i + 1, ratio, verdict, reason, figures, intervals: extensions + 1 };
        // One report per step: its latest look (an Inconclusive look is replaced by the next).
        if (extensions === 0) steps.push(report);
        else steps[steps.length - 1] = report;
        emit('CanaryStep', `step ${i + 1}/${opts.steps.length} at ${pct(ratio)}: ${verdict}: ${reason}`, {
          step: i + 1,
          of: opts.steps.length,
          verdict,
          intervals: extensions + 1,
          ...figures,
        });
        if (verdict === 'Failed') return await fail('CANARY_FAILED', `canary of ${manifest.id} failed at step ${i + 1} (${pct(ratio)}): ${reason}`);
        if (verdict === 'Successful') break;
      }
    }

    // phase 5: promote, handing the old version's state to the new one (Erlang's code_change).
    // Not before checking the built-ins again: a candidate's calls run its code too.
    const tamperedInCanary = tampering(realm, manifest.id, 'during its canary');
    if (tamperedInCanary !== undefined) return await fail('CANARY_FAILED', tamperedInCanary);
    const why = manual
      ? 'promoted by operator'
      : `every canary step passed (${opts.steps.length} steps, ${look} looks at confidence ${opts.confidence}): ${last === undefined ? 'no figures' : summarySentence(last)}`;
    const promoted = await promoteCandidate(runtime, target as Target<object>, candidate, opts, emit, why, abortReason, last, canaryRoute);
    if (!promoted.ok) return await fail(promoted.code, promoted.reason, promoted.cause, promoted.patchAtFault);
    return { ...base, outcome: 'promoted', reason: promoted.reason, steps, drain: promoted.drain };
  } catch (error) {
    if (typeof error === 'object' && error !== null && handled.has(error)) throw error;
    // A non-HotPatchError before the candidate exists came out of loading it; later, it is I/O.
    const code: ErrorCode = error instanceof HotPatchError ? error.code : candidate === undefined ? 'LOAD_FAILED' : 'IO';
    return await fail(code, `${manifest.id} not applied: ${(error as Error).message}`, error);
  } finally {
    loadDeadline?.clear();
    target.applying = undefined;
    // A paused canary still routes: its watch and timing end when it is promoted or rolled back.
    if (!pausedHere) canaryOver();
  }

  /** Abort: back to the baseline (rollbackOnCancel), or pause the canary where it stands. */
  async function onAbort(reason: string): Promise<ApplyResult> {
    if (opts.rollbackOnCancel || route === undefined || candidate === undefined) return fail('ABORTED', reason);
    const pausedRoute = route;
    const pausedCandidate = candidate;
    pausedHere = true;
    target.paused = {
      patchId: manifest.id,
      version: manifest.version,
      promote: async () => {
        target.paused = undefined;
        canaryOver();
        const r = await promoteCandidate(
          runtime,
          target as Target<object>,
          pausedCandidate,
          opts,
          emit,
          'paused canary promoted by operator',
          undefined,
          undefined,
          pausedRoute,
        );
        if (!r.ok) {
          target.setCanary(null);
          emit('RolledBack', r.reason, { code: r.code });
          if (r.patchAtFault) await runtime.recordFailure(target.name, manifest.id);
          void runtime.disposeWhenDrained(target as Target<object>, pausedCandidate, opts.drainTimeoutMs);
          throw new HotPatchError(r.code, r.reason, { cause: r.cause });
        }
      },
      rollback: async (why: string) => {
        target.paused = undefined;
        canaryOver();
        if (target.canary === pausedRoute) target.setCanary(null);
        emit('RolledBack', why, { code: 'ABORTED', to: target.active.version });
        await runtime.recordFailure(target.name, manifest.id);
        void runtime.disposeWhenDrained(target as Target<object>, pausedCandidate, opts.drainTimeoutMs);
      },
    };
    emit('Aborted', `${reason}; canary paused at ${pct(pausedRoute.ratio)} (promote or roll back to finish)`, {
      code: 'ABORTED',
      paused: true,
      ratio: pausedRoute.ratio,
    });
    const error = new HotPatchError('ABORTED', `${reason}; canary of ${manifest.id} paused at ${pct(pausedRoute.ratio)}`, {
      detail: { target: target.name, patchId: manifest.id, paused: true, steps },
    });
    handled.add(error);
    throw error;
  }
}

/**
 * The judge's options for this look. An isolated version is timed inside its isolate, while
 * its caller also waits for the boundary's round trip (the mode the host chose, the same for
 * every version). What the caller sees regresses beyond the tolerance only when
 * inside_c + o > (1 + shift)(inside_b + o), i.e. inside_c > (1 + shift) inside_b + shift · o:
 * so `shift · o` is the noise floor, with o the boundary's measured overhead.
 */
function judgedOptions(opts: ResolvedZdtOptions, baseline: RuntimeVersion, candidate: RuntimeVersion): ResolvedZdtOptions {
  const overhead = Math.max(baseline.isolate?.overheadMs ?? 0, candidate.isolate?.overheadMs ?? 0);
  const floor = opts.maxLatencyShift * overhead;
  return floor > opts.latencyNoiseFloorMs ? { ...opts, latencyNoiseFloorMs: floor } : opts;
}

/** Until the baseline's latency is measured, an async candidate call gets this long (ms). */
const DEFAULT_DEADLINE_MS = 5000;

/**
 * The deadline of async candidate calls, derived from the baseline's latency (its calls
 * during the canary, and its sampled calls before it): 20 × the p99, never under 250 ms, so a
 * healthy call is never near it while one that never settles is counted within a second or so.
 */
function derivedDeadlineMs(...samples: Float64Array[]): number {
  const enough = samples.filter((s) => s.length >= 20);
  if (enough.length === 0) return DEFAULT_DEADLINE_MS;
  const p99 = Math.max(...enough.map((s) => quantile(s, 0.99)));
  return Math.min(DEFAULT_DEADLINE_MS, Math.max(250, 20 * p99));
}

function reasonOf(reason: unknown): string {
  if (reason instanceof Error) return reason.message;
  if (typeof reason === 'string') return reason;
  return 'aborted by signal';
}

function pct(ratio: number): string {
  return `${Math.round(ratio * 1000) / 10}%`;
}

import { isDeepStrictEqual } from 'node:util';
import type { CallDeadlines } from './call-deadlines.js';
import type { RuntimeVersion } from './runtime-version.js';
import { elapsedMs, isThenable } from './thenable.js';

/** One shadowed call: the same arguments on both versions, at the same moment. */
export interface DifferentialCall {
  baseline: RuntimeVersion;
  candidate: RuntimeVersion;
  index: number;
  api: object;
  thisArg: unknown;
  args: unknown[];
  /** A synchronous method compares raw values: a promise from the candidate is a mismatch and an error. */
  sync: boolean;
  /** Which side runs first (alternated by the caller, so neither always finds the caches warm). */
  candidateFirst: boolean;
  /** Async candidate calls get the canary's deadline; missing it is an error, never a hang. */
  deadlines: CallDeadlines;
  /** Time both sides (a sampled pair); untimed calls skip the clock reads. */
  timed: boolean;
}

export interface CandidateOutcome {
  /** Threw, rejected, returned a promise from a sync method, or missed its deadline. */
  failed: boolean;
  timedOut: boolean;
  /** Outcome differs from the baseline's (a different value, or one side threw). */
  mismatch: boolean;
  candidateMs: number | undefined;
  baselineMs: number | undefined;
}

export interface DifferentialRecorder {
  baseline(threw: boolean): void;
  candidate(outcome: CandidateOutcome): void;
}

interface Settled {
  threw: boolean;
  value: unknown;
  error: unknown;
  ms: number;
}

function differs(b: Settled, c: Settled): boolean {
  return b.threw !== c.threw || (!b.threw && !isDeepStrictEqual(b.value, c.value));
}

function invoke(version: RuntimeVersion, call: DifferentialCall): { threw: boolean; value: unknown; error: unknown; started: number; ms: number } {
  const started = call.timed ? performance.now() : 0;
  try {
    const value = version.functions[call.index]!.apply(call.thisArg === call.api ? version.impl : call.thisArg, call.args);
    return { threw: false, value, error: undefined, started, ms: call.timed ? performance.now() - started : 0 };
  } catch (error) {
    return { threw: true, value: undefined, error, started, ms: call.timed ? performance.now() - started : 0 };
  }
}

/**
 * Runs a shadowed call on both versions and returns (or throws) the baseline's outcome; the
 * candidate's outcome, its comparison and both timings go to `record`. The candidate's
 * exception never reaches the caller.
 */
export function runDifferential(call: DifferentialCall, record: DifferentialRecorder): unknown {
  const b = call.baseline;
  const c = call.candidate;
  b.calls += 1;
  c.calls += 1;
  let base: ReturnType<typeof invoke>;
  let cand: ReturnType<typeof invoke>;
  if (call.candidateFirst) {
    cand = invoke(c, call);
    base = invoke(b, call);
  } else {
    base = invoke(b, call);
    cand = invoke(c, call);
  }

  if (call.sync) {
    const broke = !cand.threw && isThenable(cand.value);
    if (base.threw) b.errors += 1;
    record.baseline(base.threw);
    const failed = cand.threw || broke;
    record.candidate({
      failed,
      timedOut: false,
      mismatch: broke || differs(base, cand),
      candidateMs: call.timed ? cand.ms : undefined,
      baselineMs: call.timed ? base.ms : undefined,
    });
    if (base.threw) throw base.error;
    return base.value;
  }

  // Asynchronous: the caller gets the baseline's answer as soon as it is ready; the candidate
  // is judged when it settles, or counted as failed at its deadline.
  b.inflight += 1;
  c.inflight += 1;
  const baseDone = settle(base, call.timed).then((s) => {
    b.leave();
    if (s.threw) b.errors += 1;
    record.baseline(s.threw);
    return s;
  });
  const handle = call.deadlines.watch(() => {
    record.candidate({ failed: true, timedOut: true, mismatch: false, candidateMs: undefined, baselineMs: undefined });
  });
  // The deadline is the candidate's own: it is met when the candidate settles, however long
  // the baseline takes; the comparison then waits for the baseline's answer.
  const candDone = settle(cand, call.timed).then((cs) => {
    c.leave();
    return { cs, inTime: call.deadlines.settle(handle) };
  });
  void Promise.all([baseDone, candDone]).then(([bs, { cs, inTime }]) => {
    if (!inTime) return;
    record.candidate({
      failed: cs.threw,
      timedOut: false,
      mismatch: differs(bs, cs),
      candidateMs: call.timed ? cs.ms : undefined,
      baselineMs: call.timed ? bs.ms : undefined,
    });
  });
  return baseDone.then((s) => {
    if (s.threw) throw s.error;
    return s.value;
  });
}

function settle(r: ReturnType<typeof invoke>, timed: boolean): Promise<Settled> {
  if (r.threw) return Promise.resolve({ threw: true, value: undefined, error: r.error, ms: r.ms });
  if (!isThenable(r.value)) return Promise.resolve({ threw: false, value: r.value, error: undefined, ms: r.ms });
  return Promise.resolve(r.value).then(
    (value) => ({ threw: false, value, error: undefined, ms: timed ? elapsedMs(r.started, r.value) : 0 }),
    (error: unknown) => ({ threw: true, value: undefined, error, ms: timed ? elapsedMs(r.started, r.value) : 0 }),
  );
}

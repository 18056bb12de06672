import { boundMessage, emitRedactedWarning, type EventType } from '../core/index.js';
import { MAX_REASON } from './journal.js';
import { FINAL_STATUSES, type PlanPhase, type PlanRunResult, type PlanState } from './plan.js';
import { resultOf, type Outcome } from './run-outcome.js';

/** What recording a run's phases and outcome needs of its planner. */
export interface SettleContext {
  /** Drops the oldest finished plans past the limit, never `keep`. */
  prune(keep: PlanState): void;
  /** Writes the journal. */
  save(): Promise<void>;
  emit(type: EventType, state: PlanState, reason: string, detail?: Record<string, unknown>): void;
  /** plan → patch whose Fetched/Verified events were published by a run that then waited for approval. */
  readonly announced: Map<string, string>;
}

/** Records the start of a phase (status running) before the phase begins. */
export async function recordPhase(ctx: SettleContext, state: PlanState, phase: PlanPhase, reason: string): Promise<void> {
  state.status = 'running';
  state.phase = phase;
  state.reason = reason;
  delete state.code;
  state.updatedAt = new Date().toISOString();
  await ctx.save();
}

/** Records where a run ended; unchanged waits are not rewritten (a polling loop stays quiet). */
export async function settlePlan(ctx: SettleContext, state: PlanState, outcome: Outcome): Promise<PlanRunResult> {
  // Reasons quote errors, some from payloads: bounded and free of registered secrets here,
  // so what plans() shows is what the journal holds.
  const reason = boundMessage(outcome.reason, MAX_REASON);
  const changed = state.status !== outcome.status || state.reason !== reason || state.code !== outcome.code;
  state.status = outcome.status;
  state.reason = reason;
  if (outcome.code === undefined) delete state.code;
  else state.code = outcome.code;
  let journalError: string | undefined;
  if (changed) {
    state.updatedAt = new Date().toISOString();
    if (FINAL_STATUSES.includes(outcome.status)) ctx.prune(state);
    try {
      await ctx.save();
    } catch (error) {
      // The outcome happened whether or not it reaches the journal: it is what the caller is
      // told and what the plan shows; the write is retried (flush, the next run, every second).
      journalError = `the outcome is not in journal.json yet: ${(error as Error).message}`;
      emitRedactedWarning(`plan ${state.plan.id} is ${outcome.status}, but ${journalError}`, { code: 'HOTPATCH_JOURNAL_WRITE_FAILED' });
    }
    if (outcome.announce === true && outcome.status === 'failed') {
      ctx.emit('Failed', state, outcome.reason, outcome.code === undefined ? {} : { code: outcome.code });
    }
  }
  if (outcome.status !== 'waiting') ctx.announced.delete(state.plan.id);
  const result = resultOf(state);
  if (journalError !== undefined) result.journalError = journalError;
  if (outcome.apply !== undefined) result.apply = outcome.apply;
  if (outcome.nextOpenMs !== undefined) result.nextOpenMs = outcome.nextOpenMs;
  return result;
}

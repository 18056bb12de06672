import { HotPatchError, Registries, describe, emitRedactedWarning, type EventType, type HotPatchEvent } from '../core/index.js';
import type { HotPatchRuntime } from '../zero-downtime/index.js';
import { dryRunPlan, type DryRunReport, type PlanComponents } from './dry-run.js';
import { Journal, MAX_JOURNAL_BYTES } from './journal.js';
import { JournalWriter } from './journal-writer.js';
import { runPipeline, type PipelineContext } from './plan-pipeline.js';
import { markRolledBackAfterActivation, recoverPlans, recoveryOutcome } from './recovery.js';
import { codeOf, resultOf, type Outcome } from './run-outcome.js';
import { FINAL_STATUSES, checkPlan, type PatchPlan, type PlanPhase, type PlanRunResult, type PlanState } from './plan.js';
import { admitPlan } from './plan-admission.js';
import { plannerSettings, type PlannerOptions } from './planner-options.js';
import { readiness, windowOutcome } from './plan-readiness.js';
import { runRound, sleep } from './plan-rounds.js';
import { finishedPlansToDrop } from './plan-retention.js';
import { recordPhase, settlePlan, type SettleContext } from './plan-settle.js';
import { cancelPlan } from './plan-cancel.js';

export type { PlannerOptions } from './planner-options.js';

type Components = PlanComponents;

/**
 * Runs patch plans: Fetch → Verify → Gate → Approve → Stage → Canary → Activate (or roll
 * back), one plan per target at a time, honouring time windows and dependencies, with every
 * phase recorded in a crash-safe journal so a run a crash interrupted is resumed or found
 * finished on restart (see `recover`). A plan runs to one end: `activated`, `failed` and
 * `rolled-back` are final, and running such a plan again returns it unchanged.
 */
export class Planner {
  readonly runtime: HotPatchRuntime;
  readonly registries: Registries;
  /** The journal file, or undefined when the planner keeps no journal. */
  readonly journalPath: string | undefined;
  readonly #writer: JournalWriter | undefined;
  readonly #now: () => number;
  readonly #maxApplyCrashes: number;
  readonly #keepFinished: number;
  readonly #maxOpen: number;
  /** Plans in the order they were added (a dependency order). */
  readonly #states = new Map<string, PlanState>();
  /** Plans being run by this process. */
  readonly #running = new Set<string>();
  /** target → the plan running on it. */
  readonly #busyTargets = new Map<string, string>();
  /** plan → patch whose Fetched/Verified events were published by a run that then waited for approval. */
  readonly #announced = new Map<string, string>();
  #loaded: boolean;
  #looping = false;
  readonly #offRolledBack: () => void;
  readonly #pipelineContext: PipelineContext;
  readonly #settleContext: SettleContext;

  /**
   * A planner without a journal is ready at once. With one (the default when the runtime has
   * a state directory), use `await Planner.open(options)`, which loads it first; until then
   * every method refuses with INVALID, so an unread journal is never overwritten.
   */
  constructor(options: PlannerOptions) {
    const settings = plannerSettings(options);
    this.runtime = settings.runtime;
    this.registries = settings.registries;
    this.#now = settings.now;
    this.#maxApplyCrashes = settings.maxApplyCrashes;
    this.#keepFinished = settings.keepFinished;
    this.#maxOpen = settings.maxOpen;
    const dir = settings.journalDir;
    this.#writer = dir === undefined ? undefined : new JournalWriter(new Journal(dir), () => [...this.#states.values()].map((s) => structuredClone(s)));
    this.#offRolledBack = this.runtime.bus.subscribe((e) => this.#onRolledBack(e), { types: ['RolledBack'] });
    this.journalPath = this.#writer?.journal.path;
    this.#loaded = this.#writer === undefined;
    this.#pipelineContext = {
      runtime: this.runtime,
      phase: (state, phase, reason) => this.#phase(state, phase, reason),
      settle: (state, outcome) => this.#settle(state, outcome),
      emit: (type, state, reason, detail) => this.#emit(type, state, reason, detail),
      windowCheck: (state) => windowOutcome(state.plan, this.#now()),
      announced: this.#announced,
      isJournalError: (error) => this.#writer?.isWriteError(error) === true,
    };
    this.#settleContext = {
      prune: (keep) => this.#prune(keep),
      save: () => this.#save(),
      emit: (type, state, reason, detail) => this.#emit(type, state, reason, detail),
      announced: this.#announced,
    };
  }

  /**
   * A planner with its journal loaded: the plans it records are back, in their states (those
   * left `running` by a crash stay so until `recover()`). A journal that does not parse
   * rejects (PARSE / INVALID); it is never silently reset.
   */
  static async open(options: PlannerOptions): Promise<Planner> {
    const planner = new Planner(options);
    if (planner.#writer !== undefined) {
      const file = await planner.#writer.journal.load();
      for (const state of file.plans) planner.#states.set(state.plan.id, state);
      planner.#loaded = true;
      // A journal written before pruning (or under a larger keepFinishedPlans) is compacted now.
      if (planner.#prune() > 0) await planner.#save();
    }
    return planner;
  }

  // --- plans ---

  /**
   * Adds a plan (pending). Strict: unknown fields, bad ids, dependencies on unknown plans →
   * INVALID; components not registered → NOT_FOUND. The same plan again returns its state unchanged; another plan
   * under an existing id is INVALID. Publishes `Planned`; the journal is written in the
   * background (`flush()` waits for it).
   */
  addPlan(plan: PatchPlan): PlanState {
    this.#ready();
    const normalized = checkPlan(plan);
    const existing = admitPlan(normalized, this.#states, () => this.#components(normalized), this.#maxOpen);
    if (existing !== undefined) return structuredClone(existing);
    const state: PlanState = { plan: normalized, status: 'pending', reason: 'planned', attempts: 0, updatedAt: new Date().toISOString() };
    this.#states.set(normalized.id, state);
    if (this.#writer !== undefined) {
      // Never write a journal the reader would refuse (exact near the limit: see bytesIfOver).
      const bytes = this.#writer.bytesIfOver([...this.#states.values()], state);
      if (bytes !== undefined) {
        this.#states.delete(normalized.id);
        throw new HotPatchError(
          'TOO_LARGE',
          `adding plan ${normalized.id} would make journal.json ${bytes} bytes, over its limit of ${MAX_JOURNAL_BYTES}; remove finished plans first`,
        );
      }
    }
    this.#saveInBackground();
    this.#emit('Planned', state, `plan ${normalized.id} added for ${normalized.target}`, {
      repo: normalized.repo,
      ...(normalized.patch === undefined ? { polling: true } : {}),
      ...(normalized.dependsOn === undefined ? {} : { dependsOn: normalized.dependsOn }),
      ...(normalized.window === undefined ? {} : { window: normalized.window }),
    });
    return structuredClone(state);
  }

  /** Removes a plan that is not running and that no other plan depends on. */
  async removePlan(id: string): Promise<void> {
    this.#ready();
    const state = this.#get(id);
    if (this.#running.has(id)) throw new HotPatchError('ABORTED', `plan ${id} is running; it cannot be removed now`);
    const dependents = [...this.#states.values()].filter((s) => s.plan.dependsOn?.includes(id)).map((s) => s.plan.id);
    if (dependents.length > 0) throw new HotPatchError('INVALID', `plan ${id} cannot be removed: ${dependents.join(', ')} depend on it`);
    this.#states.delete(state.plan.id);
    this.#announced.delete(id);
    await this.#save();
  }

  plans(): PlanState[] {
    this.#ready();
    return [...this.#states.values()].map((s) => structuredClone(s));
  }

  plan(id: string): PlanState {
    this.#ready();
    return structuredClone(this.#get(id));
  }

  /**
   * Runs, one after another, the plans of `target` left waiting (e.g. by a freeze, a busy
   * target or a window) — what the agent does on unfreeze, so they do not wait for a loop
   * that may not be running. A plan running already is skipped.
   */
  async runWaiting(target: string): Promise<PlanRunResult[]> {
    this.#ready();
    const results: PlanRunResult[] = [];
    for (const s of [...this.#states.values()]) {
      if (s.status !== 'waiting' || s.plan.target !== target || this.#running.has(s.plan.id) || !this.#states.has(s.plan.id)) continue;
      results.push(await this.#exclusive(s, () => this.#execute(s, undefined, false)));
    }
    return results;
  }

  /**
   * Would this plan (a new one, or a known plan's id) apply now? Runs the checks a run makes
   * before staging — target, components, window, fetch and verify, decryption, security gate,
   * target state, approval (read only) — and records, publishes, proposes and stages nothing.
   */
  async dryRun(plan: PatchPlan | string, signal?: AbortSignal): Promise<DryRunReport> {
    this.#ready();
    const normalized = typeof plan === 'string' ? this.#get(plan).plan : checkPlan(plan);
    return dryRunPlan(normalized, this.runtime, () => this.#components(normalized), this.#now(), signal);
  }

  /**
   * Ends a plan that has not ended, for good: a pending or waiting plan becomes `failed`
   * ("cancelled: …", ABORTED) and never runs — e.g. an apply a freeze left waiting that should
   * not go live at the unfreeze. A plan whose apply is running has that apply aborted (back to
   * the running version). An ended plan → INVALID; one running another phase → ABORTED.
   */
  async cancel(id: string, reason = 'cancelled by operator'): Promise<PlanRunResult> {
    this.#ready();
    const state = this.#get(id);
    return cancelPlan(state, reason, this.#running.has(id), this.runtime, (s, outcome) => this.#settle(s, outcome));
  }

  /** Stops following the runtime's events (the journal stays as written). */
  close(): void {
    this.#offRolledBack();
    this.#writer?.close();
  }

  /**
   * A version a plan activated was rolled back later (operator, probation watch): the plan
   * says so, so status, plans, state.json and the report agree.
   */
  #onRolledBack(event: HotPatchEvent): void {
    markRolledBackAfterActivation(
      event,
      this.#states.values(),
      (id) => this.#running.has(id),
      () => this.#saveInBackground(),
    );
  }

  /** Waits for background journal writes; a write that failed is retried once, then thrown. */
  async flush(): Promise<void> {
    this.#ready();
    await this.#writer?.flush();
  }

  // --- running ---

  /**
   * Runs one plan as far as it can go now. Dependencies not yet activated, a closed window,
   * an approval not yet given, a patch not yet published, a busy or frozen target → `waiting`;
   * a failed dependency, a window closed for good, a refused patch → `failed`; a failed canary
   * → `rolled-back`. A final plan is returned unchanged; a plan already running → ABORTED.
   */
  async runOnce(id: string, signal?: AbortSignal): Promise<PlanRunResult> {
    this.#ready();
    if (signal !== undefined && !(signal instanceof AbortSignal)) throw new HotPatchError('INVALID', `signal must be an AbortSignal, got ${describe(signal)}`);
    const state = this.#get(id);
    return this.#exclusive(state, async () => {
      await this.flush();
      if (state.status === 'running') await this.#recoverOne(state);
      return this.#execute(state, signal, false);
    });
  }

  /**
   * Every `intervalMs`, runs the plans that are pending or waiting, in dependency order, one
   * plan per target at a time (plans of different targets run side by side). Resolves once
   * `signal` aborts and the runs in progress have ended: an apply in progress is aborted
   * through the signal and its plan left `pending`, to run again later. Recovers plans a
   * crash left running before the first round.
   */
  async runLoop(signal: AbortSignal, intervalMs: number): Promise<void> {
    this.#ready();
    if (!(signal instanceof AbortSignal)) throw new HotPatchError('INVALID', `signal must be an AbortSignal, got ${describe(signal)}`);
    if (typeof intervalMs !== 'number' || !Number.isFinite(intervalMs) || intervalMs < 1 || intervalMs > 2 ** 31 - 1) {
      throw new HotPatchError('INVALID', `intervalMs must be a number of milliseconds in [1, 2^31-1], got ${describe(intervalMs)}`);
    }
    if (this.#looping) throw new HotPatchError('INVALID', 'runLoop is already running on this planner');
    this.#looping = true;
    try {
      if (signal.aborted) return;
      await this.recover();
      while (!signal.aborted) {
        await runRound(
          () => [...this.#states.values()],
          (s) => !this.#running.has(s.plan.id) && this.#states.has(s.plan.id),
          (s) => this.#exclusive(s, () => this.#execute(s, signal, true)),
          signal,
        );
        if (signal.aborted) break;
        await sleep(intervalMs, signal);
      }
    } finally {
      this.#looping = false;
    }
  }

  /**
   * After a restart (call it after `runtime.restore()`): each plan the journal left
   * `running` becomes `activated` if its patch is active in the runtime, `rolled-back` if
   * state.json lists the patch as failed (it died in probation, or was rolled back; it is
   * never run again), otherwise `pending` ("interrupted during <phase>; will run again":
   * staging is content-addressed and applying is idempotent, so running again is harmless).
   */
  async recover(): Promise<PlanRunResult[]> {
    this.#ready();
    await this.flush();
    return recoverPlans({
      runtime: this.runtime,
      states: this.#states,
      isRunning: (id) => this.#running.has(id),
      recoverOne: (state) => this.#recoverOne(state),
      settle: (state, outcome) => this.#settle(state, outcome),
    });
  }

  // --- internals ---

  #ready(): void {
    if (!this.#loaded) {
      throw new HotPatchError(
        'INVALID',
        `this planner keeps a journal at ${this.journalPath}: create it with \`await Planner.open(options)\`, which loads the journal first`,
      );
    }
  }

  #get(id: string): PlanState {
    const state = typeof id === 'string' ? this.#states.get(id) : undefined;
    if (state === undefined) {
      const known = [...this.#states.keys()];
      throw new HotPatchError('NOT_FOUND', `no plan named ${describe(id)}${known.length > 0 ? ` (known: ${known.join(', ')})` : ''}`);
    }
    return state;
  }

  async #exclusive(state: PlanState, run: () => Promise<PlanRunResult>): Promise<PlanRunResult> {
    const id = state.plan.id;
    if (this.#running.has(id)) throw new HotPatchError('ABORTED', `plan ${id} is already running`, { detail: { plan: id } });
    this.#running.add(id);
    try {
      return await run();
    } finally {
      this.#running.delete(id);
    }
  }

  #components(plan: PatchPlan): Components {
    return {
      repo: this.registries.repositories.get(plan.repo),
      verifier: this.registries.verifiers.get(plan.verifier),
      security: this.registries.security.get(plan.security),
      installer: this.registries.installers.get(plan.installer),
      approver: plan.approver === undefined ? undefined : this.registries.approvers.get(plan.approver),
    };
  }

  #emit(type: EventType, state: PlanState, reason: string, detail: Record<string, unknown> = {}): void {
    const plan = state.plan;
    this.runtime.emit(type, plan.target, state.version ?? '', state.patchId ?? plan.patch ?? plan.id, reason, { plan: plan.id, ...detail });
  }

  #save(): Promise<void> {
    return this.#writer === undefined ? Promise.resolve() : this.#writer.save();
  }

  #saveInBackground(): void {
    this.#writer?.saveInBackground();
  }

  /** Drops the oldest finished plans past `keepFinishedPlans`; returns how many went. The caller writes the journal. */
  #prune(keep?: PlanState): number {
    const dropped = finishedPlansToDrop([...this.#states.values()], this.#keepFinished, (s) => s === keep || this.#running.has(s.plan.id));
    for (const id of dropped) {
      this.#states.delete(id);
      this.#announced.delete(id);
    }
    return dropped.length;
  }

  /** Records the start of a phase (status running) before the phase begins. */
  #phase(state: PlanState, phase: PlanPhase, reason: string): Promise<void> {
    return recordPhase(this.#settleContext, state, phase, reason);
  }

  /** Records where a run ended; unchanged waits are not rewritten (a polling loop stays quiet). */
  #settle(state: PlanState, outcome: Outcome): Promise<PlanRunResult> {
    return settlePlan(this.#settleContext, state, outcome);
  }

  /** Dependencies, window, target and components, then the pipeline. */
  async #execute(state: PlanState, signal: AbortSignal | undefined, shutdown: boolean): Promise<PlanRunResult> {
    const plan = state.plan;
    if (FINAL_STATUSES.includes(state.status)) return resultOf(state);
    const holder = this.#busyTargets.get(plan.target);
    if (holder !== undefined) return this.#settle(state, { status: 'waiting', reason: `target ${plan.target} is busy with plan ${holder}` });

    const notReady = readiness(state, this.#states, this.#now());
    if (notReady !== undefined) return this.#settle(state, notReady);

    const target = this.runtime.list().find((t) => t.name === plan.target);
    if (target === undefined) {
      return this.#settle(state, { status: 'failed', reason: `target ${plan.target} is not declared in this process`, code: 'NOT_FOUND', announce: true });
    }
    let components: Components;
    try {
      components = this.#components(plan);
    } catch (error) {
      return this.#settle(state, { status: 'failed', reason: (error as Error).message, code: codeOf(error) ?? 'INVALID', announce: true });
    }

    // A plan pending with a patch id was interrupted (shutdown or crash): polling may pick
    // that patch again even though the interruption marked it failed in state.json.
    const resumePatch = state.status === 'pending' ? state.patchId : undefined;
    this.#busyTargets.set(plan.target, plan.id);
    try {
      return await runPipeline(this.#pipelineContext, state, components, target, signal, shutdown, resumePatch);
    } finally {
      this.#busyTargets.delete(plan.target);
    }
  }

  async #recoverOne(state: PlanState): Promise<void> {
    const { outcome, warning } = await recoveryOutcome(state, this.runtime, this.#maxApplyCrashes);
    await this.#settle(state, outcome);
    if (warning !== undefined) emitRedactedWarning(warning, { code: 'HOTPATCH_CRASH_LOOP' });
  }
}

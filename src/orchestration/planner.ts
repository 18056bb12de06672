import {
  HotPatchError,
  Registries,
  boundMessage,
  defaultRegistries,
  describe,
  emitRedactedWarning,
  type Approver,
  type EventType,
  type HotPatchEvent,
  type PatchRepository,
  type VerifiedManifest,
  positiveInteger,
} from '../core/index.js';
import { verifyPatch } from '../verification/index.js';
import { HotPatchRuntime, twoPhaseApply, type Target } from '../zero-downtime/index.js';
import { dryRunPlan, type DryRunReport, type PlanComponents } from './dry-run.js';
import { Journal, MAX_JOURNAL_BYTES, MAX_REASON, journalText } from './journal.js';
import { selectPatch } from './patch-selection.js';
import { recoveryOutcome } from './recovery.js';
import { codeOf, failureOutcome, resultOf, type Outcome } from './run-outcome.js';
import {
  FINAL_STATUSES,
  checkPlan,
  planKey,
  type PatchPlan,
  type PlanPhase,
  type PlanRunResult,
  type PlanState,
  type PlanStatus,
} from './plan.js';
import { windowStatus } from './window.js';

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

type Components = PlanComponents;

const RUNNABLE: readonly PlanStatus[] = ['pending', 'waiting'];

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
  readonly #journal: Journal | undefined;
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
  /** Errors of journal writes (never mapped to a plan outcome: they abort the run). */
  readonly #journalErrors = new WeakSet<object>();
  #loaded: boolean;
  #looping = false;
  #lastWrite: Promise<void> = Promise.resolve();
  #unsaved: unknown;
  #retryTimer: NodeJS.Timeout | undefined;
  readonly #offRolledBack: () => void;

  /**
   * A planner without a journal is ready at once. With one (the default when the runtime has
   * a state directory), use `await Planner.open(options)`, which loads it first; until then
   * every method refuses with INVALID, so an unread journal is never overwritten.
   */
  constructor(options: PlannerOptions) {
    if (typeof options !== 'object' || options === null) throw new HotPatchError('INVALID', `planner options must be an object, got ${describe(options)}`);
    if (!(options.runtime instanceof HotPatchRuntime)) throw new HotPatchError('INVALID', `options.runtime must be a HotPatchRuntime, got ${describe(options.runtime)}`);
    if (options.registries !== undefined && !(options.registries instanceof Registries)) {
      throw new HotPatchError('INVALID', `options.registries must be a Registries instance, got ${describe(options.registries)}`);
    }
    if (options.stateDir !== undefined && options.stateDir !== null && (typeof options.stateDir !== 'string' || options.stateDir.length === 0)) {
      throw new HotPatchError('INVALID', `options.stateDir must be a non-empty path or null, got ${describe(options.stateDir)}`);
    }
    if (options.now !== undefined && typeof options.now !== 'function') throw new HotPatchError('INVALID', `options.now must be a function, got ${describe(options.now)}`);
    this.runtime = options.runtime;
    this.registries = options.registries ?? defaultRegistries;
    this.#now = options.now ?? Date.now;
    this.#maxApplyCrashes = positiveInteger(options.maxApplyCrashes ?? 2, 'options.maxApplyCrashes');
    this.#keepFinished = positiveInteger(options.keepFinishedPlans ?? 500, 'options.keepFinishedPlans');
    this.#maxOpen = positiveInteger(options.maxOpenPlans ?? 1000, 'options.maxOpenPlans');
    const dir = options.stateDir === null ? undefined : (options.stateDir ?? options.runtime.stateDir);
    this.#journal = dir === undefined ? undefined : new Journal(dir);
    this.#offRolledBack = this.runtime.bus.subscribe((e) => this.#onRolledBack(e), { types: ['RolledBack'] });
    this.journalPath = this.#journal?.path;
    this.#loaded = this.#journal === undefined;
  }

  /**
   * A planner with its journal loaded: the plans it records are back, in their states (those
   * left `running` by a crash stay so until `recover()`). A journal that does not parse
   * rejects (PARSE / INVALID); it is never silently reset.
   */
  static async open(options: PlannerOptions): Promise<Planner> {
    const planner = new Planner(options);
    if (planner.#journal !== undefined) {
      const file = await planner.#journal.load();
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
    const existing = this.#states.get(normalized.id);
    if (existing !== undefined) {
      if (planKey(existing.plan) === planKey(normalized)) return structuredClone(existing);
      throw new HotPatchError('INVALID', `a different plan with id ${normalized.id} already exists (remove it first)`, { detail: { plan: normalized.id } });
    }
    for (const dep of normalized.dependsOn ?? []) {
      if (!this.#states.has(dep)) {
        throw new HotPatchError('INVALID', `plan ${normalized.id} depends on ${dep}, which is not a known plan (add it first; plans are added in dependency order, so there is no cycle)`);
      }
    }
    this.#components(normalized);
    const open = [...this.#states.values()].filter((s) => !FINAL_STATUSES.includes(s.status)).length;
    if (open >= this.#maxOpen) {
      throw new HotPatchError('TOO_LARGE', `${open} plans are not finished yet (maxOpenPlans ${this.#maxOpen}); finish or remove some before adding ${normalized.id}`);
    }
    const state: PlanState = { plan: normalized, status: 'pending', reason: 'planned', attempts: 0, updatedAt: new Date().toISOString() };
    this.#states.set(normalized.id, state);
    if (this.#journal !== undefined) {
      // Never write a journal the reader would refuse: the check is on the very text written.
      const bytes = Buffer.byteLength(journalText([...this.#states.values()]));
      if (bytes > MAX_JOURNAL_BYTES) {
        this.#states.delete(normalized.id);
        throw new HotPatchError('TOO_LARGE', `adding plan ${normalized.id} would make journal.json ${bytes} bytes, over its limit of ${MAX_JOURNAL_BYTES}; remove finished plans first`);
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
   * before staging — target, components, window, fetch and verify, security gate, target state,
   * approval (read only) — and records, publishes, proposes and stages nothing.
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
    if (FINAL_STATUSES.includes(state.status)) throw new HotPatchError('INVALID', `plan ${id} has already ended (${state.status}): nothing to cancel`);
    if (this.#running.has(id)) {
      const target = this.runtime.list().find((t) => t.name === state.plan.target);
      if (state.phase === 'apply' && target?.applying !== undefined && target.applying.patchId === state.patchId) {
        target.abort(`cancelled: ${reason}`);
        return resultOf(state);
      }
      throw new HotPatchError('ABORTED', `plan ${id} is running (${state.phase ?? 'starting'}); it can be cancelled once that phase ends, or its apply aborted`);
    }
    return this.#settle(state, { status: 'failed', reason: `cancelled: ${reason}`, code: 'ABORTED', announce: true });
  }

  /** Stops following the runtime's events (the journal stays as written). */
  close(): void {
    this.#offRolledBack();
    clearTimeout(this.#retryTimer);
  }

  /**
   * A version a plan activated was rolled back later (operator, probation watch): the plan
   * says so, so status, plans, state.json and the report agree.
   */
  #onRolledBack(event: HotPatchEvent): void {
    for (const s of this.#states.values()) {
      if (s.status !== 'activated' || s.patchId !== event.id || s.plan.target !== event.target || this.#running.has(s.plan.id)) continue;
      s.status = 'rolled-back';
      s.reason = boundMessage(`rolled back after its activation: ${event.reason}`, MAX_REASON);
      delete s.code;
      s.updatedAt = new Date().toISOString();
      this.#saveInBackground();
    }
  }

  /** Waits for background journal writes; a write that failed is retried once, then thrown. */
  async flush(): Promise<void> {
    this.#ready();
    await this.#lastWrite;
    if (this.#unsaved !== undefined) await this.#save();
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
        await this.#round(signal);
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
    const results: PlanRunResult[] = [];
    const saved = this.runtime.store === undefined ? undefined : await this.runtime.store.read();
    for (const state of this.#states.values()) {
      if (this.#running.has(state.plan.id)) continue;
      if (state.status === 'running') {
        await this.#recoverOne(state);
        results.push(resultOf(state));
        continue;
      }
      // An activated plan whose patch the restart reverted (it died inside its probation)
      // must not keep claiming it runs.
      const patchId = state.patchId;
      if (state.status === 'activated' && patchId !== undefined && saved?.targets[state.plan.target]?.failed.includes(patchId) === true) {
        const active = this.runtime.list().find((t) => t.name === state.plan.target)?.active;
        if (active?.patchId !== patchId) {
          await this.#settle(state, {
            status: 'rolled-back',
            reason: `${patchId} was reverted after a restart (the runtime recorded it as failed); now on ${active?.version ?? 'another version'}`,
          });
          results.push(resultOf(state));
        }
      }
    }
    return results;
  }

  // --- internals ---

  #ready(): void {
    if (!this.#loaded) {
      throw new HotPatchError('INVALID', `this planner keeps a journal at ${this.journalPath}: create it with \`await Planner.open(options)\`, which loads the journal first`);
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
    if (this.#journal === undefined) return Promise.resolve();
    const write = this.#journal
      .write(() => [...this.#states.values()].map((s) => structuredClone(s)))
      .then(
        () => {
          this.#unsaved = undefined;
        },
        (error: unknown) => {
          this.#unsaved = error;
          if (typeof error === 'object' && error !== null) this.#journalErrors.add(error);
          this.#retrySaveLater();
          throw error;
        },
      );
    this.#lastWrite = write.catch(() => undefined);
    return write;
  }

  /** While the journal cannot be written (a full disk), try again every second, so what is in memory reaches it once it can. */
  #retrySaveLater(): void {
    if (this.#retryTimer !== undefined) return;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      if (this.#unsaved !== undefined) this.#saveInBackground();
    }, 1000);
    this.#retryTimer.unref();
  }

  #saveInBackground(): void {
    // The failure is kept in #unsaved: flush() and the next run retry the write and throw it.
    void this.#save().catch(() => undefined);
  }

  /**
   * Drops the oldest finished plans past `keepFinishedPlans` (never `keep`, one running, or
   * one a kept plan depends on); returns how many went. The caller writes the journal.
   */
  #prune(keep?: PlanState): number {
    const finished = [...this.#states.values()].filter((s) => FINAL_STATUSES.includes(s.status));
    let excess = finished.length - this.#keepFinished;
    if (excess <= 0) return 0;
    const needed = new Set([...this.#states.values()].flatMap((s) => s.plan.dependsOn ?? []));
    // Oldest first by when they finished (journal order breaks ties), so recent outcomes stay visible.
    finished.sort((a, b) => a.updatedAt.localeCompare(b.updatedAt));
    let dropped = 0;
    for (const s of finished) {
      if (excess <= 0) break;
      const id = s.plan.id;
      if (s === keep || this.#running.has(id) || needed.has(id)) continue;
      this.#states.delete(id);
      this.#announced.delete(id);
      excess -= 1;
      dropped += 1;
    }
    return dropped;
  }

  /** Records the start of a phase (status running) before the phase begins. */
  async #phase(state: PlanState, phase: PlanPhase, reason: string): Promise<void> {
    state.status = 'running';
    state.phase = phase;
    state.reason = reason;
    delete state.code;
    state.updatedAt = new Date().toISOString();
    await this.#save();
  }

  /** Records where a run ended; unchanged waits are not rewritten (a polling loop stays quiet). */
  async #settle(state: PlanState, outcome: Outcome): Promise<PlanRunResult> {
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
      if (FINAL_STATUSES.includes(outcome.status)) this.#prune(state);
      try {
        await this.#save();
      } catch (error) {
        // The outcome happened whether or not it reaches the journal: it is what the caller is
        // told and what the plan shows; the write is retried (flush, the next run, every second).
        journalError = `the outcome is not in journal.json yet: ${(error as Error).message}`;
        emitRedactedWarning(`plan ${state.plan.id} is ${outcome.status}, but ${journalError}`, { code: 'HOTPATCH_JOURNAL_WRITE_FAILED' });
      }
      if (outcome.announce === true && outcome.status === 'failed') {
        this.#emit('Failed', state, outcome.reason, outcome.code === undefined ? {} : { code: outcome.code });
      }
    }
    if (outcome.status !== 'waiting') this.#announced.delete(state.plan.id);
    const result = resultOf(state);
    if (journalError !== undefined) result.journalError = journalError;
    if (outcome.apply !== undefined) result.apply = outcome.apply;
    if (outcome.nextOpenMs !== undefined) result.nextOpenMs = outcome.nextOpenMs;
    return result;
  }

  /** Dependencies, window, target and components, then the pipeline. */
  async #execute(state: PlanState, signal: AbortSignal | undefined, shutdown: boolean): Promise<PlanRunResult> {
    const plan = state.plan;
    if (FINAL_STATUSES.includes(state.status)) return resultOf(state);
    const holder = this.#busyTargets.get(plan.target);
    if (holder !== undefined) return this.#settle(state, { status: 'waiting', reason: `target ${plan.target} is busy with plan ${holder}` });

    // Dependencies: a failed one fails this plan; any not yet activated makes it wait.
    const notReady: string[] = [];
    for (const dep of plan.dependsOn ?? []) {
      const d = this.#states.get(dep);
      if (d === undefined) return this.#settle(state, { status: 'failed', reason: `dependency ${dep} is no longer planned`, code: 'NOT_FOUND', announce: true });
      if (d.status === 'failed' || d.status === 'rolled-back') {
        const what = d.status === 'failed' ? 'failed' : 'was rolled back';
        return this.#settle(state, { status: 'failed', reason: `dependency ${dep} ${what}${d.reason === undefined ? '' : `: ${d.reason}`}`, announce: true });
      }
      if (d.status !== 'activated') notReady.push(`${dep} (${d.status})`);
    }

    const window = this.#windowCheck(state);
    if (window !== undefined && window.status === 'failed') return this.#settle(state, window);
    if (notReady.length > 0) return this.#settle(state, { status: 'waiting', reason: `waiting for ${notReady.length === 1 ? 'dependency' : 'dependencies'} ${notReady.join(', ')} to activate` });
    if (window !== undefined) return this.#settle(state, window);

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
      return await this.#pipeline(state, components, target, signal, shutdown, resumePatch);
    } finally {
      this.#busyTargets.delete(plan.target);
    }
  }

  /** undefined when the window is open; otherwise the outcome (waiting, or failed for good). */
  #windowCheck(state: PlanState): Outcome | undefined {
    const w = windowStatus(state.plan.window, this.#now());
    if (w.open) return undefined;
    if (w.closedForever === true) return { status: 'failed', reason: `time window: ${w.reason}`, announce: true };
    const out: Outcome = { status: 'waiting', reason: `outside its time window: ${w.reason}` };
    if (w.nextOpenMs !== undefined) out.nextOpenMs = w.nextOpenMs;
    return out;
  }

  async #pipeline(
    state: PlanState,
    c: Components,
    target: Target<object>,
    signal: AbortSignal | undefined,
    shutdown: boolean,
    resumePatch: string | undefined,
  ): Promise<PlanRunResult> {
    const plan = state.plan;
    try {
      const highestVersion = await this.runtime.highestVersion(plan.target);
      // step 1: fetch — the named patch, or the highest acceptable version for the target
      // (polling reads only; nothing is recorded until a patch is found, so an idle plan stays quiet).
      let patchId = plan.patch;
      if (patchId === undefined) {
        const chosen = await selectPatch(this.runtime, plan, c, highestVersion, resumePatch, signal);
        if (typeof chosen !== 'string') return await this.#settle(state, chosen);
        patchId = chosen;
      }
      if (target.active.patchId === patchId) {
        // Already serving: nothing to fetch or verify (the anti-downgrade check would otherwise
        // call re-applying the serving version a downgrade once a later one was ever recorded).
        state.patchId = patchId;
        state.version = target.active.version;
        return await this.#settle(state, { status: 'activated', reason: `${patchId} ${target.active.version} is already active` });
      }
      state.attempts += 1;
      state.patchId = patchId;
      delete state.version;
      await this.#phase(state, 'fetch', `fetching ${patchId} from ${plan.repo}`);
      const quiet = this.#announced.get(plan.id) === patchId;
      const announcing: PatchRepository = {
        fetchEnvelope: async (id, s) => {
          const bytes = await c.repo.fetchEnvelope(id, s);
          if (!quiet) this.#emit('Fetched', state, `fetched the signed manifest of ${id} from ${plan.repo} (not yet verified)`, { repo: plan.repo, bytes: bytes.length });
          await this.#phase(state, 'verify', `verifying ${id}`);
          return bytes;
        },
        openPayload: (id, maxBytes, s) => c.repo.openPayload(id, maxBytes, s),
        list: (s) => c.repo.list(s),
      };
      // step 2: verify — signatures, threshold, expiry, anti-downgrade, then size and hash of the payload.
      const verified = await verifyPatch(announcing, c.verifier, patchId, { highestVersion }, signal);
      const m = verified.manifest;
      if (m.target !== plan.target) {
        return await this.#settle(state, { status: 'failed', reason: `patch ${m.id} targets ${m.target}, but plan ${plan.id} targets ${plan.target}`, code: 'INVALID', announce: true });
      }
      state.version = m.version;
      if (!quiet) this.#emit('Verified', state, `${m.id} ${m.version} verified: signed by ${verified.signers.length} key${verified.signers.length === 1 ? '' : 's'} (${verified.signers.join(', ')}; threshold ${verified.threshold})`, { signers: verified.signers, threshold: verified.threshold });

      // step 3: security gate (allow/deny, requirements, platform).
      await this.#phase(state, 'gate', `checking ${m.id} against security policy ${plan.security}`);
      c.security.check(verified);
      if (target.active.patchId === m.id && target.active.version === m.version) {
        return await this.#settle(state, { status: 'activated', reason: `${m.id} ${m.version} is already active` });
      }

      // step 4: approval, when the plan names an approver.
      if (c.approver !== undefined) {
        await this.#phase(state, 'approve', `waiting for approver ${plan.approver} to approve ${m.id}`);
        const approved = await this.#approve(state, c.approver, verified, signal);
        if (approved !== undefined) return await this.#settle(state, approved);
      }

      // The approval may have taken long: the manifest may have expired meanwhile (a freeze
      // attack must not succeed by waiting), and the window, a freeze or another apply may
      // stand in the way now.
      if (verified.facts.expiresMs !== undefined && verified.facts.expiresMs <= Date.now()) {
        throw new HotPatchError('EXPIRED', `manifest of ${m.id} expired (${m.expires}) while the plan waited for its approval`);
      }
      const window = this.#windowCheck(state);
      if (window !== undefined) return await this.#settle(state, window);
      if (target.frozen !== undefined) {
        return await this.#settle(state, { status: 'waiting', reason: `target ${plan.target} is frozen: ${target.frozen}`, code: 'POLICY_DENIED' });
      }
      const busy = target.applying ?? target.paused;
      if (busy !== undefined) return await this.#settle(state, { status: 'waiting', reason: `target ${plan.target} is busy with patch ${busy.patchId} (${busy.version})` });

      // step 5: stage, canary, promote (the installer re-checks the hash while staging, so a
      // payload swapped since verification is refused).
      await this.#phase(state, 'apply', `applying ${m.id} ${m.version} to ${plan.target}`);
      const payload = c.repo.openPayload(m.id, m.payload_size + 1, signal);
      const apply = await twoPhaseApply(c.installer, verified, payload, { ...plan.zdt, runtime: this.runtime, ...(signal === undefined ? {} : { signal }) });
      switch (apply.outcome) {
        case 'promoted':
          return await this.#settle(state, { status: 'activated', reason: `${m.id} ${m.version} activated: ${apply.reason}`, apply });
        case 'already-active':
          return await this.#settle(state, { status: 'activated', reason: apply.reason, apply });
        case 'rolled-back':
          return await this.#settle(state, { status: 'rolled-back', reason: apply.reason, code: 'CANARY_FAILED', apply });
        case 'paused':
          return await this.#settle(state, { status: 'waiting', reason: `canary of ${m.id} paused: ${apply.reason}`, apply });
      }
    } catch (error) {
      if (typeof error === 'object' && error !== null && this.#journalErrors.has(error)) {
        // A phase is never started unrecorded (a crash could not be recovered correctly).
        const phase = state.phase ?? 'fetch';
        return await this.#settle(state, {
          status: 'waiting',
          reason: `${phase} not started: journal.json cannot be written (${(error as Error).message}); the plan waits until it can`,
          code: 'IO',
        });
      }
      return await this.#settle(state, failureOutcome(state, error, signal, shutdown));
    }
  }

  /** undefined when approved (after publishing `Approved`), otherwise the outcome. */
  async #approve(state: PlanState, approver: Approver, verified: VerifiedManifest, signal: AbortSignal | undefined): Promise<Outcome | undefined> {
    const m = verified.manifest;
    const name = state.plan.approver!;
    let returned: unknown;
    try {
      returned = await approver.approve({ patchId: m.id, target: m.target, version: m.version, payloadHash: m.payload_hash }, signal);
    } catch (error) {
      if (error instanceof HotPatchError && error.code === 'APPROVAL_MISSING') {
        this.#announced.set(state.plan.id, m.id);
        return { status: 'waiting', reason: `waiting for approval of ${m.id} ${m.version} by ${name}: ${error.message}`, code: 'APPROVAL_MISSING' };
      }
      throw error;
    }
    const detail = typeof returned === 'object' && returned !== null && !Array.isArray(returned) ? { ...(returned as Record<string, unknown>), approver: name } : { approver: name };
    this.#emit('Approved', state, `${m.id} ${m.version} approved by ${name}`, detail);
    return undefined;
  }

  async #recoverOne(state: PlanState): Promise<void> {
    const { outcome, warning } = await recoveryOutcome(state, this.runtime, this.#maxApplyCrashes);
    await this.#settle(state, outcome);
    if (warning !== undefined) emitRedactedWarning(warning, { code: 'HOTPATCH_CRASH_LOOP' });
  }

  /** One round of the loop: due plans by target lanes; then those whose dependencies just settled. */
  async #round(signal: AbortSignal): Promise<void> {
    let due = [...this.#states.values()].filter((s) => RUNNABLE.includes(s.status));
    for (let pass = 0; due.length > 0 && pass <= this.#states.size && !signal.aborted; pass++) {
      const lanes = new Map<string, PlanState[]>();
      for (const s of due) {
        const lane = lanes.get(s.plan.target) ?? [];
        lane.push(s);
        lanes.set(s.plan.target, lane);
      }
      await Promise.all(
        [...lanes.values()].map(async (lane) => {
          for (const s of lane) {
            if (signal.aborted) return;
            if (!RUNNABLE.includes(s.status) || this.#running.has(s.plan.id) || !this.#states.has(s.plan.id)) continue;
            try {
              await this.#exclusive(s, () => this.#execute(s, signal, true));
            } catch (error) {
              emitRedactedWarning(error instanceof Error ? error : new Error(String(error)), {
                code: 'HOTPATCH_PLAN_ERROR',
                detail: `plan ${s.plan.id} could not run`,
              });
            }
          }
        }),
      );
      // Plans whose dependencies settled during this pass run again at once.
      const settled = new Set(due.filter((s) => FINAL_STATUSES.includes(s.status)).map((s) => s.plan.id));
      due = [...this.#states.values()].filter((s) => RUNNABLE.includes(s.status) && (s.plan.dependsOn ?? []).some((d) => settled.has(d)));
    }
  }
}


function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

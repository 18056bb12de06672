import {
  HotPatchError,
  checkPatchInstaller,
  defaultEventBus,
  type EventBus,
  type EventType,
  type LoadedModule,
  type PatchInstaller,
  type PatchVerifier,
  emitRedactedWarning,
} from '../core/index.js';
import { RollbackIndex, StateStore, emptyTargetState, type VersionRecord } from '../rollback/index.js';
import semver from 'semver';
import { RuntimeVersion, type VersionHooks } from './runtime-version.js';
import { Target, type IsolatedApi, type TargetDeclaration } from './target.js';
import { MAX_TIMER_MS } from './options.js';
import { ProbationClock } from './probation-clock.js';
import { RecordedVersions, restoredMeta } from './recorded-versions.js';
import { retainedList, retainedVersion } from './retained-versions.js';
import { probationLeftMs, probationStanding, targetStatus, type TargetStatus } from './runtime-status.js';
import { VersionDisposal, type DrainReport } from './version-disposal.js';

export interface RuntimeOptions {
  /** Where state.json, staging/ and manifests/ live; without it nothing is persisted. */
  stateDir?: string;
  bus?: EventBus;
  /** Used by `restore()` to reload staged payloads after a restart. */
  installer?: PatchInstaller;
  /**
   * Used by `restore()` to re-verify a version's kept signed manifest before reloading it.
   * Without one, restore re-checks only the staged file's SHA-256 (the state directory must
   * then be trusted as much as the code).
   */
  verifier?: PatchVerifier;
  /** How often one steady call per target is timed for the duration histogram (default 100 ms; 0: never). */
  durationProbeMs?: number;
}

export interface RestoreReport {
  target: string;
  /** The version now active. */
  version: string;
  patchId: string | null;
  /** The persisted active version that was not restored, and why. */
  dropped?: { patchId: string | null; version: string; reason: string };
}

/** How often a steady call is timed for the duration histogram, per target. */
const DURATION_PROBE_MS = 100;

/**
 * The targets of one process and what is persisted about them. `twoPhaseApply` drives the
 * swaps; the runtime keeps the state file, the events and the disposal of drained versions.
 */
export class HotPatchRuntime {
  readonly bus: EventBus;
  readonly stateDir: string | undefined;
  readonly store: StateStore | undefined;
  readonly rollbackIndex: RollbackIndex | undefined;
  readonly installer: PatchInstaller | undefined;
  readonly verifier: PatchVerifier | undefined;
  readonly #targets = new Map<string, Target<object>>();
  readonly #probation = new ProbationClock();
  /** Extra figures of versions that state.json records (promotion time, probation, good). */
  readonly #meta = new WeakMap<RuntimeVersion, Partial<VersionRecord>>();
  readonly #probes: NodeJS.Timeout[] = [];
  readonly #probeMs: number;
  /** Disposes retired versions once drained; knows which versions share a loaded module. */
  readonly #disposal: VersionDisposal;

  constructor(options: RuntimeOptions = {}) {
    this.bus = options.bus ?? defaultEventBus;
    this.stateDir = options.stateDir;
    this.store = options.stateDir === undefined ? undefined : new StateStore(options.stateDir);
    this.rollbackIndex = this.store === undefined ? undefined : new RollbackIndex(this.store);
    this.installer = options.installer === undefined ? undefined : checkPatchInstaller(options.installer, 'options.installer');
    this.verifier = options.verifier;
    this.#disposal = new VersionDisposal(this.installer);
    const probeMs = options.durationProbeMs ?? DURATION_PROBE_MS;
    if (!Number.isFinite(probeMs) || probeMs < 0 || probeMs > MAX_TIMER_MS) {
      throw new HotPatchError('INVALID', `durationProbeMs must be between 0 and ${MAX_TIMER_MS} ms, got ${probeMs}`);
    }
    this.#probeMs = probeMs;
  }

  /** Declares a target; its built-in implementation is active until a patch is applied or restored. */
  target<T extends object>(name: string, declaration: TargetDeclaration<T, IsolatedApi<T>> & { isolation: 'worker' | 'process' }): Target<T, IsolatedApi<T>>;
  target<T extends object>(name: string, declaration: TargetDeclaration<T>): Target<T>;
  target<T extends object>(name: string, declaration: TargetDeclaration<T>): Target<T> {
    if (this.#targets.has(name)) throw new HotPatchError('INVALID', `target ${name} is already declared`);
    const target = new Target(name, declaration);
    this.#targets.set(target.name, target as unknown as Target<object>);
    // A few timed steady calls a second feed the duration histogram; unsampled calls pay nothing.
    if (this.#probeMs > 0) {
      const probe = setInterval(() => target.armProbe(), this.#probeMs);
      probe.unref();
      this.#probes.push(probe);
    }
    return target;
  }

  get(name: string): Target<object> {
    const t = this.#targets.get(name);
    if (t === undefined) {
      throw new HotPatchError('NOT_FOUND', `no target named ${name} is declared (declared: ${[...this.#targets.keys()].join(', ') || 'none'})`);
    }
    return t;
  }

  list(): Target<object>[] {
    return [...this.#targets.values()];
  }

  status(): TargetStatus[] {
    return this.list().map((t) => targetStatus(t, probationStanding(t.active, this.#meta.get(t.active), this.#probation.endsAt(t.name))));
  }

  /** Publishes one event on the runtime's bus. */
  emit(type: EventType, target: string, version: string, id: string, reason: string, detail?: Record<string, unknown>): void {
    this.bus.publish({ type, id, target, version, reason, ...(detail === undefined ? {} : { detail }) });
  }

  /** Highest version ever recorded for a target (anti-downgrade input of the verifier). */
  async highestVersion(target: string): Promise<string | undefined> {
    if (this.store === undefined) return undefined;
    return (await this.store.read()).targets[target]?.highest_version;
  }

  /** @internal persisted after a promotion: active, previous, last good, highest version. */
  async recordPromotion(target: Target<object>, candidate: RuntimeVersion, old: RuntimeVersion, probationMs: number): Promise<void> {
    const promotedAt = new Date().toISOString();
    // With no probation the version is good at once; otherwise only surviving the probation
    // in a running process makes it good (see restore()).
    const goodNow = probationMs === 0;
    this.#meta.set(candidate, { promoted_at: promotedAt, probation_ms: probationMs, good: goodNow });
    const oldGood = old.patchId === null || this.#meta.get(old)?.good === true;
    if (this.store !== undefined) {
      await this.store.update((s) => {
        const t = (s.targets[target.name] ??= emptyTargetState());
        t.active = this.recordOf(candidate);
        t.previous = this.recordOf(old);
        // A patch applied again after a rollback is active, so it is no longer failed: one record, not two contradicting.
        if (candidate.patchId !== null) t.failed = t.failed.filter((id) => id !== candidate.patchId);
        if (goodNow) t.last_good = this.recordOf(candidate);
        else if (oldGood || t.last_good === null) t.last_good = this.recordOf(old);
        if (t.highest_version === undefined || semver.gt(candidate.version, t.highest_version)) t.highest_version = candidate.version;
      });
    }
    if (!goodNow) this.#startProbation(target, candidate, probationMs);
  }

  /**
   * @internal persisted before a rollback's flip: `restored` becomes active (with no previous),
   * `bad` is marked failed. A restored version still inside its probation resumes it.
   */
  async recordRollback(target: Target<object>, restored: RuntimeVersion, bad: RuntimeVersion | undefined): Promise<void> {
    this.#clearProbation(target.name);
    if (this.store !== undefined) {
      await this.store.update((s) => {
        const t = (s.targets[target.name] ??= emptyTargetState());
        t.active = this.recordOf(restored);
        t.previous = null;
        // The version rolled back to serves again, so it is not failed: one record, not two contradicting.
        if (restored.patchId !== null) t.failed = t.failed.filter((id) => id !== restored.patchId);
        if (bad?.patchId != null && !t.failed.includes(bad.patchId)) t.failed.push(bad.patchId);
      });
    }
    const meta = this.#meta.get(restored);
    if (restored.patchId === null || meta === undefined || meta.good === true) return;
    const promotedMs = meta.promoted_at === undefined ? Date.now() : Date.parse(meta.promoted_at);
    this.#startProbation(target, restored, Math.max(0, promotedMs + (meta.probation_ms ?? 0) - Date.now()));
  }

  /** @internal a patch that never became active (self-test, canary, load) is recorded as failed. */
  async recordFailure(target: string, patchId: string): Promise<void> {
    if (this.store === undefined) return;
    await this.store.update((s) => {
      const t = (s.targets[target] ??= emptyTargetState());
      if (!t.failed.includes(patchId)) t.failed.push(patchId);
    });
  }

  /** @internal the record state.json keeps of a version. */
  recordOf(version: RuntimeVersion): VersionRecord {
    return version.record(this.#meta.get(version) ?? {});
  }

  /**
   * Operator rollback: a routing flip to the warm previous version (no reload). During a
   * canary it aborts the canary instead (the baseline never stopped serving).
   */
  async rollback(name: string, reason = 'rollback requested', options: { drainTimeoutMs?: number; to?: string } = {}): Promise<RuntimeVersion> {
    const target = this.get(name);
    if (target.applying !== undefined) {
      target.abort(reason);
      return target.active;
    }
    if (target.paused !== undefined) {
      await target.paused.rollback(reason);
      return target.active;
    }
    const drainTimeoutMs = options.drainTimeoutMs ?? 30_000;
    if (!(drainTimeoutMs >= 0 && drainTimeoutMs <= MAX_TIMER_MS)) {
      throw new HotPatchError('INVALID', `drainTimeoutMs must be between 0 and ${MAX_TIMER_MS} ms, got ${String(drainTimeoutMs)}`);
    }
    const previous =
      options.to === undefined
        ? target.previous
        : await retainedVersion(target, options.to, this.store, async (record) => {
            const version = await this.#recordedVersions().load(target, record, this.verifier);
            this.#meta.set(version, restoredMeta(record));
            return version;
          });
    if (previous === undefined) {
      throw new HotPatchError(
        'NOT_FOUND',
        `target ${name} has no previous version to roll back to; retained: ${(await retainedList(target, this.store)).join(', ')} (roll back to one with { to: VERSION })`,
      );
    }
    const bad = target.active;
    // Persist, then flip: if the write fails, nothing changed and the caller is told so.
    await this.recordRollback(target, previous, bad);
    target.routeTo(previous, undefined);
    this.emit('RolledBack', name, previous.version, bad.patchId ?? 'builtin', reason, { from: bad.version, to: previous.version });
    void this.disposeWhenDrained(target, bad, drainTimeoutMs);
    return previous;
  }

  /**
   * Ends the active version's probation now: it is recorded good (state.json `good`,
   * `last_good`), the probation watch stops, and a restart keeps it. For an operator who has
   * seen enough (`hotpatch confirm`). INVALID when a canary runs; a version already good is
   * left as it is (idempotent).
   */
  async confirm(name: string, reason = 'confirmed good by operator'): Promise<RuntimeVersion> {
    const target = this.get(name);
    if (target.applying !== undefined || target.paused !== undefined) {
      throw new HotPatchError('INVALID', `target ${name} has a canary running: promote or abort it first`);
    }
    const version = target.active;
    const meta = this.#meta.get(version);
    // Already good (probation over, confirmed before, or the built-in): confirming again is a
    // no-op, so a retried confirm is not a failure.
    if (version.patchId === null || meta === undefined || meta.good === true) return version;
    const good = { ...meta, good: true };
    // Persist first: a confirmation the state file does not hold would be undone by a restart.
    if (this.store !== undefined) {
      await this.store.update((s) => {
        const t = (s.targets[name] ??= emptyTargetState());
        t.active = version.record(good);
        t.last_good = version.record(good);
      });
    }
    this.#meta.set(version, good);
    this.#clearProbation(name);
    this.emit('Activated', name, version.version, version.patchId, `${reason}: probation ended early, recorded good`, { confirmed: true });
    return version;
  }

  /** True once `version` is recorded good: its probation passed, an operator confirmed it, or it is the built-in. */
  isGood(version: RuntimeVersion): boolean {
    return version.patchId === null || this.#meta.get(version)?.good === true;
  }

  /**
   * A graceful stop (SIGTERM handled, `agent.close()`): stops the timers and records, for each
   * version still in probation, how much probation is left, so the next start resumes it
   * instead of reverting — a deploy is not a crash. A process that dies without calling this
   * is a crash, and its unconfirmed version is reverted at restart.
   */
  async shutdown(): Promise<void> {
    const left: [string, string, number][] = [];
    for (const name of this.#probation.running()) {
      const version = this.get(name).active;
      const meta = this.#meta.get(version);
      if (version.patchId === null || meta === undefined || meta.good === true) continue;
      left.push([name, version.patchId, Math.min(MAX_TIMER_MS, Math.max(0, Math.round(probationLeftMs(meta, this.#probation.endsAt(name)))))]);
    }
    this.close();
    if (this.store === undefined || left.length === 0) return;
    await this.store.update((s) => {
      for (const [name, patchId, ms] of left) {
        const active = s.targets[name]?.active;
        if (active?.id === patchId) active.probation_left_ms = ms;
      }
    });
  }

  /** Loads the versions state.json records (restore, a rollback `to` a version no longer warm). */
  #recordedVersions(): RecordedVersions {
    if (this.installer === undefined || this.stateDir === undefined) {
      throw new HotPatchError('INVALID', 'reloading a recorded version needs a runtime created with stateDir and installer');
    }
    return new RecordedVersions(
      this.installer,
      this.stateDir,
      (target, mod, init) => this.versionOfModule(target, mod, init),
      (target, version) => this.disposeWhenDrained(target, version, 0),
    );
  }

  /**
   * Disposes a version once its in-flight calls are done. A drain timeout is reported (a
   * process warning and the returned report), never forced: disposal then waits on.
   */
  disposeWhenDrained(target: Target<object>, version: RuntimeVersion, timeoutMs: number): Promise<DrainReport> {
    return this.#disposal.whenDrained(target, version, timeoutMs);
  }

  #startProbation(target: Target<object>, version: RuntimeVersion, probationMs: number): void {
    this.#probation.start(target.name, probationMs, () => {
      if (target.active !== version) return;
      this.#meta.set(version, { ...this.#meta.get(version), good: true });
      void this.store
        ?.update((s) => {
          const t = (s.targets[target.name] ??= emptyTargetState());
          t.active = this.recordOf(version);
          t.last_good = this.recordOf(version);
        })
        .catch((error: unknown) => {
          emitRedactedWarning(`${target.name}: recording ${version.label} as good failed: ${error instanceof Error ? error.message : String(error)}`, {
            code: 'HOTPATCH_STATE_WRITE_FAILED',
          });
        });
    });
  }

  #clearProbation(name: string): void {
    this.#probation.clear(name);
  }

  /**
   * Ends the worker thread or child process of every version of every isolated target (active,
   * previous, a canary's candidate) and waits until they are gone; their calls fail with
   * CRASHED from then on. For the very end of a process (or of a test): isolates otherwise end
   * with the process anyway — a worker with it, a child when its channel closes.
   */
  async endIsolates(): Promise<void> {
    const versions = new Set<RuntimeVersion>();
    for (const t of this.list()) {
      for (const v of [t.active, t.previous, t.canary?.candidate, t.canary?.baseline]) if (v?.isolate !== undefined) versions.add(v);
    }
    await Promise.all([...versions].map((v) => v.isolate!.terminate()));
  }

  /** Stops probation and sampling timers (the process keeps its routing). */
  close(): void {
    this.#probation.clearAll();
    for (const probe of this.#probes.splice(0)) clearInterval(probe);
  }

  /** @internal a loaded payload as a version of `target`. */
  versionOfModule(
    target: Target<object>,
    mod: LoadedModule,
    init: { version: string; patchId: string; sha256: string; type: RuntimeVersion['type'] },
  ): RuntimeVersion {
    if (target.isolation !== undefined && mod.isolate === undefined) {
      // An installer that ignored LoadOptions.isolation loaded the payload into this thread:
      // its functions would answer synchronously behind an interface typed async, uncontained.
      throw new HotPatchError(
        'LOAD_FAILED',
        `target ${target.name} is isolated (${target.isolation.mode}) but the installer loaded ${init.patchId} into this thread; use an installer that honours LoadOptions.isolation (DynamicInstaller does)`,
      );
    }
    const hooks: VersionHooks = {};
    if (mod.selfTest !== undefined) hooks.selfTest = mod.selfTest;
    if (mod.dispose !== undefined) hooks.dispose = mod.dispose;
    if (mod.exportState !== undefined) hooks.exportState = mod.exportState;
    if (mod.importState !== undefined) hooks.importState = mod.importState;
    const version = target.versionFrom(mod.api, { ...init, hooks, ...(mod.isolate === undefined ? {} : { isolate: mod.isolate }) });
    this.#disposal.track(version);
    mod.isolate?.onDeath((why) => {
      const role = version === target.active ? 'the active version' : target.canary?.candidate === version ? 'the canary candidate' : 'a retained version';
      emitRedactedWarning(`${target.name} ${version.label} (${role}): its ${mod.isolate!.mode} ${why}; the service keeps serving`, {
        code: 'HOTPATCH_ISOLATE_DIED',
      });
    });
    return version;
  }

  /**
   * After a restart: re-activates what state.json says was active, re-checking the staged
   * file's hash and the self-tests. A version still in probation when the process died is not
   * restored: the last good one is, and the patch is marked failed.
   */
  async restore(options: { verifier?: PatchVerifier } = {}): Promise<RestoreReport[]> {
    const verifier = options.verifier ?? this.verifier;
    if (this.store === undefined || this.installer === undefined) {
      throw new HotPatchError('INVALID', 'restore() needs a runtime created with stateDir and installer');
    }
    const versions = this.#recordedVersions();
    const state = await this.store.load();
    const reports: RestoreReport[] = [];
    for (const target of this.list()) {
      const saved = state.targets[target.name];
      if (saved === undefined || saved.active === null || saved.active.id === null) continue;
      const active = saved.active;
      const activeId = saved.active.id;
      const { version, loaded, resumeMs, dropReason, refused, unreachable } = await versions.loadNewestGood(target, { ...saved, active }, verifier);
      if (loaded !== undefined) this.#meta.set(version, restoredMeta(loaded));
      // The recorded previous version comes back warm too, so a rollback after a restart is
      // the same routing flip as before it.
      const previous = dropReason === undefined ? await versions.warm(target, saved.previous, verifier) : undefined;
      if (previous !== undefined && saved.previous !== null && previous !== target.builtin) this.#meta.set(previous, restoredMeta(saved.previous));
      target.routeTo(version, previous);
      if (resumeMs !== undefined && loaded === active && version.patchId !== null) {
        // Resumed once: a crash during the rest of it reverts, like any probation.
        await this.store.update((s) => {
          const t = s.targets[target.name];
          if (t?.active?.id === activeId) delete t.active.probation_left_ms;
        });
        this.#startProbation(target, version, resumeMs);
      }
      const report: RestoreReport = { target: target.name, version: version.version, patchId: version.patchId };
      if (dropReason !== undefined) {
        report.dropped = { patchId: activeId, version: active.version, reason: dropReason };
        if (unreachable.has(activeId)) {
          // Not a verdict on the version (its KMS or token did not answer, a disk error): it stays
          // recorded as it was, so the next start brings it back.
          emitRedactedWarning(
            `${target.name}: ${active.version} (${activeId}) is not served for now: ${dropReason}; it stays recorded, and the next start brings it back once it can be checked`,
            { code: 'HOTPATCH_RESTORE_DEFERRED' },
          );
        } else {
          // One write: the new active version and the failure mark land together or not at all.
          await this.store.update((s) => {
            const t = (s.targets[target.name] ??= emptyTargetState());
            t.active = this.recordOf(version);
            t.previous = null;
            if (!t.failed.includes(activeId)) t.failed.push(activeId);
            // A last good version that cannot come back is not what a rollback or the status
            // may offer as good now: what serves instead takes its place.
            if (t.last_good?.id != null && refused.has(t.last_good.id)) t.last_good = loaded ?? this.recordOf(version);
          });
          this.emit('Failed', target.name, active.version, activeId, dropReason, { restored: version.version });
        }
      }
      const resumed = resumeMs !== undefined && loaded === active ? `; probation resumed with ${resumeMs} ms left (stopped gracefully)` : '';
      this.emit('Activated', target.name, version.version, version.patchId ?? 'builtin', `restored after restart${resumed}`);
      reports.push(report);
    }
    return reports;
  }
}

import {
  HotPatchError,
  type Approver,
  type EventType,
  type MirrorFailure,
  type MirroredSource,
  type PatchRepository,
  type VerifiedManifest,
} from '../core/index.js';
import { verifyPatch } from '../verification/index.js';
import { twoPhaseApply, type HotPatchRuntime, type Target } from '../zero-downtime/index.js';
import type { PlanComponents as Components } from './dry-run.js';
import { selectPatch } from './patch-selection.js';
import { manifestMismatch } from './plan-pin.js';
import { failureOutcome, type Outcome } from './run-outcome.js';
import type { PlanPhase, PlanRunResult, PlanState } from './plan.js';

/**
 * What the pipeline needs of its planner: the journal-backed phase and outcome records, the
 * events, the time window, and which patches a waiting run already announced.
 */
export interface PipelineContext {
  readonly runtime: HotPatchRuntime;
  /** Records the start of a phase (journal written) before the phase begins. */
  phase(state: PlanState, phase: PlanPhase, reason: string): Promise<void>;
  /** Records where the run ended and returns what the caller is told. */
  settle(state: PlanState, outcome: Outcome): Promise<PlanRunResult>;
  emit(type: EventType, state: PlanState, reason: string, detail?: Record<string, unknown>): void;
  /** undefined when the plan's window is open; otherwise the outcome. */
  windowCheck(state: PlanState): Outcome | undefined;
  /** plan → patch whose Fetched/Verified events were published by a run that then waited for approval. */
  readonly announced: Map<string, string>;
  /** Whether `error` came from writing the journal. */
  isJournalError(error: unknown): boolean;
}

/**
 * One run of a plan once its dependencies, window, target and components are settled:
 * Fetch → Verify → Gate → Approve → Stage → Canary → Activate (or roll back), each phase
 * recorded in the journal before it starts.
 */
export async function runPipeline(
  ctx: PipelineContext,
  state: PlanState,
  c: Components,
  target: Target<object>,
  signal: AbortSignal | undefined,
  shutdown: boolean,
  resumePatch: string | undefined,
): Promise<PlanRunResult> {
  const plan = state.plan;
  try {
    const highestVersion = await ctx.runtime.highestVersion(plan.target);
    // step 1: fetch — the named patch, or the highest acceptable version for the target
    // (polling reads only; nothing is recorded until a patch is found, so an idle plan stays quiet).
    let patchId = plan.patch;
    if (patchId === undefined) {
      const chosen = await selectPatch(ctx.runtime, plan, c, highestVersion, resumePatch, signal);
      if (typeof chosen !== 'string') return await ctx.settle(state, chosen);
      patchId = chosen;
    }
    if (target.active.patchId === patchId) {
      // Already serving: nothing to fetch or verify (the anti-downgrade check would otherwise
      // call re-applying the serving version a downgrade once a later one was ever recorded).
      state.patchId = patchId;
      state.version = target.active.version;
      return await ctx.settle(state, { status: 'activated', reason: `${patchId} ${target.active.version} is already active` });
    }
    state.attempts += 1;
    state.patchId = patchId;
    delete state.version;
    await ctx.phase(state, 'fetch', `fetching ${patchId} from ${plan.repo}`);
    const quiet = ctx.announced.get(plan.id) === patchId;
    const failovers: MirrorFailure[] = [];
    const announcing: PatchRepository = {
      fetchEnvelope: async (id, s, accept) => {
        const bytes = await c.repo.fetchEnvelope(id, s, accept);
        if (!quiet)
          ctx.emit('Fetched', state, `fetched the signed manifest of ${id} from ${plan.repo} (not yet verified)`, { repo: plan.repo, bytes: bytes.length });
        await ctx.phase(state, 'verify', `verifying ${id}`);
        return bytes;
      },
      openPayload: (id, maxBytes, s) => c.repo.openPayload(id, maxBytes, s),
      list: (s) => c.repo.list(s),
      // A list of mirrors keeps its failover through this wrapper (verifyPatch drives it); the
      // mirrors passed over are told in the Verified event (and so in the audit log).
      ...(c.repo.mirrored === undefined ? {} : { mirrored: recording(c.repo.mirrored, failovers) }),
    };
    // step 2: verify — signatures, threshold, expiry, anti-downgrade, then size and hash of the payload.
    const verified = await verifyPatch(announcing, c.verifier, patchId, { highestVersion }, signal);
    const m = verified.manifest;
    const mismatch = manifestMismatch(plan, m);
    if (mismatch !== undefined) return await ctx.settle(state, { status: 'failed', reason: mismatch.message, code: mismatch.code, announce: true });
    state.version = m.version;
    if (!quiet)
      ctx.emit(
        'Verified',
        state,
        `${m.id} ${m.version} verified: signed by ${verified.signers.length} key${verified.signers.length === 1 ? '' : 's'} (${verified.signers.join(', ')}; threshold ${verified.threshold})` +
          (failovers.length === 0 ? '' : `; mirrors passed over: ${failovers.map((f) => `${f.mirror} (${f.code}: ${f.reason})`).join('; ')}`),
        { signers: verified.signers, threshold: verified.threshold, ...(failovers.length === 0 ? {} : { mirror_failures: failovers }) },
      );

    // step 3: security gate (allow/deny, requirements, platform).
    await ctx.phase(state, 'gate', `checking ${m.id} against security policy ${plan.security}`);
    c.security.check(verified);
    if (target.active.patchId === m.id && target.active.version === m.version) {
      return await ctx.settle(state, { status: 'activated', reason: `${m.id} ${m.version} is already active` });
    }

    // step 4: approval, when the plan names an approver.
    if (c.approver !== undefined) {
      await ctx.phase(state, 'approve', `waiting for approver ${plan.approver} to approve ${m.id}`);
      const approved = await approve(ctx, state, c.approver, verified, signal);
      if (approved !== undefined) return await ctx.settle(state, approved);
    }

    // The approval may have taken long: the manifest may have expired meanwhile (a freeze
    // attack must not succeed by waiting), and the window, a freeze or another apply may
    // stand in the way now.
    if (verified.facts.expiresMs !== undefined && verified.facts.expiresMs <= Date.now()) {
      throw new HotPatchError('EXPIRED', `manifest of ${m.id} expired (${m.expires}) while the plan waited for its approval`);
    }
    const window = ctx.windowCheck(state);
    if (window !== undefined) return await ctx.settle(state, window);
    if (target.frozen !== undefined) {
      return await ctx.settle(state, { status: 'waiting', reason: `target ${plan.target} is frozen: ${target.frozen}`, code: 'POLICY_DENIED' });
    }
    const busy = target.applying ?? target.paused;
    if (busy !== undefined)
      return await ctx.settle(state, { status: 'waiting', reason: `target ${plan.target} is busy with patch ${busy.patchId} (${busy.version})` });

    // step 5: stage, canary, promote (the installer re-checks the hash while staging, so a
    // payload swapped since verification is refused).
    await ctx.phase(state, 'apply', `applying ${m.id} ${m.version} to ${plan.target}`);
    const payload = c.repo.openPayload(m.id, m.payload_size + 1, signal);
    const apply = await twoPhaseApply(c.installer, verified, payload, { ...plan.zdt, runtime: ctx.runtime, ...(signal === undefined ? {} : { signal }) });
    switch (apply.outcome) {
      case 'promoted':
        return await ctx.settle(state, { status: 'activated', reason: `${m.id} ${m.version} activated: ${apply.reason}`, apply });
      case 'already-active':
        return await ctx.settle(state, { status: 'activated', reason: apply.reason, apply });
      case 'rolled-back':
        return await ctx.settle(state, { status: 'rolled-back', reason: apply.reason, code: 'CANARY_FAILED', apply });
      case 'paused':
        return await ctx.settle(state, { status: 'waiting', reason: `canary of ${m.id} paused: ${apply.reason}`, apply });
    }
  } catch (error) {
    if (ctx.isJournalError(error)) {
      // A phase is never started unrecorded (a crash could not be recovered correctly).
      const phase = state.phase ?? 'fetch';
      return await ctx.settle(state, {
        status: 'waiting',
        reason: `${phase} not started: journal.json cannot be written (${(error as Error).message}); the plan waits until it can`,
        code: 'IO',
      });
    }
    return await ctx.settle(state, failureOutcome(state, error, signal, shutdown));
  }
}

/** undefined when approved (after publishing `Approved`), otherwise the outcome. */
async function approve(
  ctx: PipelineContext,
  state: PlanState,
  approver: Approver,
  verified: VerifiedManifest,
  signal: AbortSignal | undefined,
): Promise<Outcome | undefined> {
  const m = verified.manifest;
  const name = state.plan.approver!;
  let returned: unknown;
  try {
    returned = await approver.approve({ patchId: m.id, target: m.target, version: m.version, payloadHash: m.payload_hash }, signal);
  } catch (error) {
    if (error instanceof HotPatchError && error.code === 'APPROVAL_MISSING') {
      ctx.announced.set(state.plan.id, m.id);
      return { status: 'waiting', reason: `waiting for approval of ${m.id} ${m.version} by ${name}: ${error.message}`, code: 'APPROVAL_MISSING' };
    }
    throw error;
  }
  const detail =
    typeof returned === 'object' && returned !== null && !Array.isArray(returned)
      ? { ...(returned as Record<string, unknown>), approver: name }
      : { approver: name };
  ctx.emit('Approved', state, `${m.id} ${m.version} approved by ${name}`, detail);
  return undefined;
}

/** `source`, its failures also collected in `into` (the ones of this verification). */
function recording(source: MirroredSource, into: MirrorFailure[]): MirroredSource {
  return {
    candidates: (id) => source.candidates(id),
    pin: (id, mirror) => source.pin(id, mirror),
    record: (mirror, error) => {
      const failure = source.record(mirror, error);
      into.push(failure);
      return failure;
    },
    markBad: (id, mirror) => source.markBad(id, mirror),
    markGood: (id, mirror) => source.markGood(id, mirror),
  };
}

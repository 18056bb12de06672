import { HotPatchError, checkPatchInstaller, describe, type Approver, type PatchInstaller, type VerifiedManifest } from '../core/index.js';
import { overlayZdtOptions } from '../orchestration/index.js';
import { HotPatchRuntime, twoPhaseApply, type Target, type ZdtOptions } from '../zero-downtime/index.js';
import type { FleetHealth, RolloutOrder } from './fleet-rollout.js';
import type { MemberReport, TargetReport } from './fleet-member.js';

/** A verified patch and its payload, as `twoPhaseApply` takes them. */
export interface ResolvedPatch {
  verified: VerifiedManifest;
  payload: Uint8Array | AsyncIterable<Uint8Array>;
}

/**
 * Finds and verifies the patch an order names (in a host: `verifyPatch(repository, verifier,
 * order.patchId, { highestVersion })` and the security gate). The order itself is not trusted:
 * the signed manifest must match it (see `runtimeFleetHooks`).
 */
export type PatchResolver = (order: RolloutOrder, signal: AbortSignal) => Promise<ResolvedPatch> | ResolvedPatch;

export interface RuntimeFleetHooksOptions {
  /**
   * Options of each `twoPhaseApply` (canary steps, thresholds…); a rollout's own `zdt`
   * options override them field by field. The runtime and signal are set here.
   */
  applyOptions?: Omit<ZdtOptions, 'signal'>;
  /** Only these targets are reported (default: every target of the runtime). */
  targets?: readonly string[];
  /**
   * Error rate above which a target's active version is unhealthy (default 0.01), judged over
   * windows of at least `minCalls` calls (default 20). Only this option sets it: the canary's
   * `maxErrorRate` (in `applyOptions`) is an absolute ceiling that is off by default (1), so
   * it no longer stands in for the fleet's health rule.
   */
  maxErrorRate?: number;
  minCalls?: number;
  /** Replaces the default health rule. */
  health?: (target: Target<object>) => FleetHealth | { health: FleetHealth; reason?: string };
  /**
   * Asked before every apply (e.g. a `DistributedApproval`): rollout documents are not
   * signed, so an approval quorum is what keeps a store writer from rolling out a signed
   * but unapproved patch.
   */
  approver?: Approver;
}

export interface RuntimeFleetHooks {
  apply(order: RolloutOrder, signal: AbortSignal): Promise<MemberReport>;
  rollback(order: RolloutOrder): Promise<MemberReport>;
  report(): TargetReport[];
}

interface HealthWindow {
  version: object;
  calls: number;
  errors: number;
  verdict: FleetHealth;
  reason?: string;
}

/**
 * The `apply` / `rollback` / `report` callbacks of a `FleetMember` over a live runtime:
 * apply = resolve the signed patch, check it is the one ordered, `twoPhaseApply` (stage,
 * self-test, canary, promote); rollback = `runtime.rollback` (a routing flip back to the warm
 * previous version, or the end of a canary under way); report = each target's active version
 * and its health.
 *
 * Health: a version is `unhealthy` when the calls it served since the last judged window (at
 * least `minCalls` of them) failed above `maxErrorRate`; otherwise `healthy` — a version that
 * passed its self-test and canary and serves no traffic shows no harm. A window with fewer
 * calls keeps the previous verdict.
 */
export function runtimeFleetHooks(
  runtime: HotPatchRuntime,
  installer: PatchInstaller,
  resolvePatch: PatchResolver,
  options: RuntimeFleetHooksOptions = {},
): RuntimeFleetHooks {
  if (!(runtime instanceof HotPatchRuntime)) throw new HotPatchError('INVALID', `runtime must be a HotPatchRuntime, got ${describe(runtime)}`);
  checkPatchInstaller(installer, 'installer');
  if (typeof resolvePatch !== 'function') throw new HotPatchError('INVALID', `resolvePatch must be a function, got ${describe(resolvePatch)}`);
  // The health rule's own default: not `applyOptions.maxErrorRate`, whose default of 1 means "off".
  const maxErrorRate = options.maxErrorRate ?? 0.01;
  const minCalls = options.minCalls ?? 20;
  if (!(maxErrorRate >= 0 && maxErrorRate <= 1)) throw new HotPatchError('INVALID', `maxErrorRate must be in [0, 1], got ${describe(maxErrorRate)}`);
  if (!Number.isSafeInteger(minCalls) || minCalls < 1) throw new HotPatchError('INVALID', `minCalls must be a positive integer, got ${describe(minCalls)}`);
  const windows = new Map<string, HealthWindow>();

  const state = (name: string): { version: string; patchId: string | null } => {
    const active = runtime.get(name).active;
    return { version: active.version, patchId: active.patchId };
  };

  const defaultHealth = (target: Target<object>): { health: FleetHealth; reason?: string } => {
    const v = target.active;
    let w = windows.get(target.name);
    if (w === undefined || w.version !== v) {
      w = { version: v, calls: 0, errors: 0, verdict: 'healthy' };
      windows.set(target.name, w);
    }
    const calls = v.calls - w.calls;
    if (calls >= minCalls) {
      const errors = v.errors - w.errors;
      const rate = errors / calls;
      w.verdict = rate > maxErrorRate ? 'unhealthy' : 'healthy';
      if (w.verdict === 'unhealthy')
        w.reason = `${v.label} failed ${errors} of ${calls} calls (${(rate * 100).toFixed(1)}% > ${(maxErrorRate * 100).toFixed(1)}%)`;
      else delete w.reason;
      w.calls = v.calls;
      w.errors = v.errors;
    }
    return w.reason === undefined ? { health: w.verdict } : { health: w.verdict, reason: w.reason };
  };

  return {
    async apply(order, signal) {
      const resolved = await resolvePatch(order, signal);
      const m = resolved.verified.manifest;
      // The order only names a patch; the signed manifest decides what runs, and must be that patch.
      const mismatch: string[] = [];
      if (m.id !== order.patchId) mismatch.push(`id ${m.id} (ordered ${order.patchId})`);
      if (m.target !== order.target) mismatch.push(`target ${m.target} (ordered ${order.target})`);
      if (m.version !== order.version) mismatch.push(`version ${m.version} (ordered ${order.version})`);
      if (m.payload_hash.toLowerCase() !== order.payloadHash.toLowerCase()) mismatch.push(`payload hash ${m.payload_hash} (ordered ${order.payloadHash})`);
      if (mismatch.length > 0) {
        throw new HotPatchError(
          mismatch.length === 1 && mismatch[0]!.startsWith('payload hash') ? 'HASH_MISMATCH' : 'INVALID',
          `the signed manifest differs from rollout ${order.id}: ${mismatch.join(', ')}`,
        );
      }
      await options.approver?.approve({ patchId: m.id, target: m.target, version: m.version, payloadHash: m.payload_hash }, signal);
      // The rollout's canary options (checked when its document was parsed) win over the host's defaults.
      const result = await twoPhaseApply(installer, resolved.verified, resolved.payload, {
        ...overlayZdtOptions(options.applyOptions, order.zdt),
        runtime,
        signal,
      });
      const now = state(order.target);
      if (result.outcome === 'promoted' || result.outcome === 'already-active') {
        return { phase: 'promoted', ...now, reason: result.reason };
      }
      return { phase: 'failed', ...now, reason: `${result.outcome}: ${result.reason}` };
    },

    async rollback(order) {
      const target = runtime.get(order.target);
      const runsIt = target.applying?.patchId === order.patchId || target.paused?.patchId === order.patchId || target.active.patchId === order.patchId;
      if (runsIt) await runtime.rollback(order.target, `rollout ${order.id} ${order.state.status}: ${order.state.reason ?? 'rolled back'}`);
      return { phase: 'rolled-back', ...state(order.target), reason: runsIt ? `rolled back ${order.patchId}` : `${order.patchId} was not active` };
    },

    report() {
      const targets = options.targets === undefined ? runtime.list() : options.targets.map((t) => runtime.get(t));
      return targets.map((t) => {
        const verdict = options.health === undefined ? defaultHealth(t) : options.health(t);
        const h: { health: FleetHealth; reason?: string } = typeof verdict === 'string' ? { health: verdict } : verdict;
        const r: TargetReport = { target: t.name, version: t.active.version, patchId: t.active.patchId, health: h.health };
        if (h.reason !== undefined) r.reason = h.reason;
        return r;
      });
    },
  };
}

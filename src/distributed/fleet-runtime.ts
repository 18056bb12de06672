import { HotPatchError, checkPatchInstaller, describe, type Approver, type PatchInstaller, type VerifiedManifest } from '../core/index.js';
import { overlayZdtOptions } from '../orchestration/index.js';
import { HotPatchRuntime, twoPhaseApply, type ZdtOptions } from '../zero-downtime/index.js';
import { fleetHealthReporter, type FleetHealthOptions } from './fleet-health.js';
import type { RolloutOrder } from './fleet-rollout.js';
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

export interface RuntimeFleetHooksOptions extends FleetHealthOptions {
  /**
   * Options of each `twoPhaseApply` (canary steps, thresholds…); a rollout's own `zdt`
   * options override them field by field. The runtime and signal are set here.
   */
  applyOptions?: Omit<ZdtOptions, 'signal'>;
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
  const report = fleetHealthReporter(runtime, options);
  const state = (name: string): { version: string; patchId: string | null } => {
    const active = runtime.get(name).active;
    return { version: active.version, patchId: active.patchId };
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

    report,
  };
}

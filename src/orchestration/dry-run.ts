import {
  HotPatchError,
  type ApprovalRequest,
  type Approver,
  type ErrorCode,
  type PatchInstaller,
  type PatchRepository,
  type PatchVerifier,
  type SecurityPolicy,
  type VerifiedManifest,
} from '../core/index.js';
import { verifyPatch } from '../verification/index.js';
import type { HotPatchRuntime } from '../zero-downtime/index.js';
import type { PatchPlan } from './plan.js';
import { manifestMismatch } from './plan-pin.js';
import { windowStatus } from './window.js';

/** The components a plan names, looked up in the registries. */
export interface PlanComponents {
  repo: PatchRepository;
  verifier: PatchVerifier;
  security: SecurityPolicy;
  installer: PatchInstaller;
  approver: Approver | undefined;
}

export type DryRunCheckName = 'target' | 'components' | 'window' | 'fetch and verify' | 'decryption' | 'gate' | 'target state' | 'approval';

export interface DryRunCheck {
  check: DryRunCheckName;
  ok: boolean;
  detail: string;
  code?: ErrorCode;
}

/** What `Planner.dryRun` found: would the plan apply now, and each check on the way. */
export interface DryRunReport {
  planId: string;
  target: string;
  patchId?: string;
  version?: string;
  /** Every check passed: a real run would go on to stage and canary the patch now. */
  wouldApply: boolean;
  checks: DryRunCheck[];
}

/**
 * The checks a run makes before staging — target, components, window, fetch and verify
 * (signatures, threshold, expiry, anti-downgrade, payload hash), decryption (an encrypted
 * payload: a key of the installer unwraps its data key), security gate, target state
 * (frozen, busy, already active) and approval (read only, through `Approver.check`) — with no
 * side effect: nothing is recorded, published, proposed or staged.
 */
export async function dryRunPlan(
  plan: PatchPlan,
  runtime: HotPatchRuntime,
  components: () => PlanComponents,
  nowMs: number,
  signal?: AbortSignal,
): Promise<DryRunReport> {
  const report: DryRunReport = { planId: plan.id, target: plan.target, wouldApply: false, checks: [] };
  const add = (check: DryRunCheckName, ok: boolean, detail: string, code?: ErrorCode): boolean => {
    report.checks.push({ check, ok, detail, ...(code === undefined ? {} : { code }) });
    return ok;
  };
  const fail = (check: DryRunCheckName, error: unknown): DryRunReport => {
    add(check, false, error instanceof Error ? error.message : String(error), error instanceof HotPatchError ? error.code : undefined);
    return report;
  };

  const target = runtime.list().find((t) => t.name === plan.target);
  if (target === undefined) return fail('target', new HotPatchError('NOT_FOUND', `target ${plan.target} is not declared in this process`));
  add('target', true, `${plan.target} serves ${target.active.version}`);
  let c: PlanComponents;
  try {
    c = components();
  } catch (error) {
    return fail('components', error);
  }
  add(
    'components',
    true,
    `repo ${plan.repo}, verifier ${plan.verifier}, security ${plan.security}, installer ${plan.installer}${plan.approver === undefined ? '' : `, approver ${plan.approver}`}`,
  );
  const w = windowStatus(plan.window, nowMs);
  add(
    'window',
    w.open,
    w.open ? (plan.window === undefined ? 'no time window' : 'inside its time window') : `outside its time window: ${w.reason}`,
    w.open ? undefined : 'POLICY_DENIED',
  );
  if (plan.patch === undefined) {
    return fail('fetch and verify', new HotPatchError('INVALID', 'a dry run needs a plan naming its patch (a polling plan picks its patch when it runs)'));
  }
  report.patchId = plan.patch;

  let verified: VerifiedManifest;
  try {
    verified = await verifyPatch(c.repo, c.verifier, plan.patch, { highestVersion: await runtime.highestVersion(plan.target) }, signal);
    const mismatch = manifestMismatch(plan, verified.manifest);
    if (mismatch !== undefined) throw mismatch;
  } catch (error) {
    return fail('fetch and verify', error);
  }
  const m = verified.manifest;
  report.version = m.version;
  add(
    'fetch and verify',
    true,
    `${m.id} ${m.version} verified: signed by ${verified.signers.join(', ')} (threshold ${verified.threshold}), payload ${m.payload_size} bytes, hash matches`,
  );
  if (m.encryption !== undefined) {
    // An encrypted payload stages only if a key of the installer unwraps its data key.
    try {
      if (c.installer.checkDecryptable === undefined) {
        // An installer of the service's own may decrypt in stage(): only a real run can tell.
        add('decryption', true, `installer ${plan.installer} cannot be asked before staging whether it decrypts ${m.id}`);
      } else {
        await c.installer.checkDecryptable(m);
        add('decryption', true, `a key of installer ${plan.installer} unwraps the data key of ${m.id}`);
      }
    } catch (error) {
      fail('decryption', error);
    }
  }
  try {
    c.security.check(verified);
    add('gate', true, `security policy ${plan.security} allows it`);
  } catch (error) {
    fail('gate', error);
  }

  const busy = target.applying ?? target.paused;
  if (target.active.patchId === m.id && target.active.version === m.version)
    add('target state', false, `${m.id} ${m.version} is already active: nothing to apply`, 'INVALID');
  else if (target.frozen !== undefined) add('target state', false, `${plan.target} is frozen: ${target.frozen}`, 'POLICY_DENIED');
  else if (busy !== undefined) add('target state', false, `${plan.target} is busy with patch ${busy.patchId} (${busy.version})`, 'ABORTED');
  else add('target state', true, `${plan.target} is free: ${target.active.version} → ${m.version}`);

  if (c.approver !== undefined) {
    const request: ApprovalRequest = { patchId: m.id, target: m.target, version: m.version, payloadHash: m.payload_hash };
    if (c.approver.check === undefined) {
      add('approval', false, `approver ${plan.approver} cannot be asked without asking for real: a run would wait for its approval`, 'APPROVAL_MISSING');
    } else {
      try {
        const answer = await c.approver.check(request);
        add('approval', answer.approved, `approver ${plan.approver}: ${answer.summary}`, answer.approved ? undefined : 'APPROVAL_MISSING');
      } catch (error) {
        fail('approval', error);
      }
    }
  }
  report.wouldApply = report.checks.every((x) => x.ok);
  return report;
}

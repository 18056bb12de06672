import { HotPatchError, asObject, canonicalVersion, payloadHashText, rejectUnknownFields, stringField, type Manifest } from '../core/index.js';
import type { PatchPlan } from './plan.js';

/**
 * What a plan may insist on beyond its patch id: the exact version and payload hash. A fleet
 * agent's plan carries the ones its signed rollout names, so the signed manifest it fetches
 * from its own repositories must be that very patch — a repository that serves another
 * (correctly signed) build under the same id is refused, not applied.
 */
export interface PlanPin {
  version: string;
  /** `<alg>:<hex>`, as the manifest's `payload_hash`. */
  payloadHash: string;
}

/** Strict check of a plan's `pin` (unknown fields, a version that is not semver, a malformed hash → INVALID). */
export function checkPlanPin(value: unknown, where: string): PlanPin {
  const field = `${where}: pin`;
  const o = asObject(value, field);
  rejectUnknownFields(o, ['version', 'payloadHash'], field);
  const payloadHash = stringField(o, 'payloadHash', field);
  payloadHashText(payloadHash, `${field}.payloadHash`);
  return { version: canonicalVersion(o.version, `${field}.version`), payloadHash: payloadHash.toLowerCase() };
}

/**
 * Whether a verified manifest is what the plan asked for: its target, and the pinned version
 * and payload hash when the plan has a pin. The error says every field that differs;
 * HASH_MISMATCH when only the payload hash does (same id and version, other bytes).
 */
export function manifestMismatch(plan: PatchPlan, m: Manifest): HotPatchError | undefined {
  const differs: string[] = [];
  if (m.target !== plan.target) differs.push(`targets ${m.target}, but plan ${plan.id} targets ${plan.target}`);
  if (plan.pin !== undefined) {
    if (m.version !== plan.pin.version) differs.push(`is version ${m.version}, but plan ${plan.id} is pinned to ${plan.pin.version}`);
    if (m.payload_hash.toLowerCase() !== plan.pin.payloadHash)
      differs.push(`has payload hash ${m.payload_hash}, but plan ${plan.id} is pinned to ${plan.pin.payloadHash}`);
  }
  if (differs.length === 0) return undefined;
  const onlyHash = differs.length === 1 && differs[0]!.startsWith('has payload hash');
  return new HotPatchError(onlyHash ? 'HASH_MISMATCH' : 'INVALID', `patch ${m.id} ${differs.join('; ')}`);
}

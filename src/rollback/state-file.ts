import semver from 'semver';
import { HotPatchError, PAYLOAD_TYPES, asObject, decodeJson, describe, rejectUnknownFields, type PayloadType } from '../core/index.js';

/**
 * `state.json` (docs/ARCHITECTURE.md "state.json"): per target, which version is active, which is
 * the warm previous one, which is the last known good, the highest version ever recorded
 * (anti-downgrade) and the patches that failed. A version record with `id: null` is the
 * implementation the host declared in code (the built-in version).
 */
export interface VersionRecord {
  /** Patch id, or null for the host's built-in implementation. */
  id: string | null;
  version: string;
  /** Content address of the staged payload (`staging/<sha256>.<ext>`); absent for built-in. */
  sha256?: string;
  type?: PayloadType;
  /** When it was promoted (RFC 3339), and its probation; absent for built-in. */
  promoted_at?: string;
  probation_ms?: number;
  /** Set once the version has run healthy through its probation (or an operator confirmed it). */
  good?: boolean;
  /**
   * Set by a graceful stop (`runtime.shutdown()`) inside the probation: the probation time
   * left. A restart resumes the probation instead of reverting — a deploy is not a crash.
   */
  probation_left_ms?: number;
}

export interface TargetState {
  active: VersionRecord | null;
  previous: VersionRecord | null;
  last_good: VersionRecord | null;
  highest_version?: string;
  failed: string[];
}

export interface StateFile {
  format: 1;
  updated_at?: string;
  targets: Record<string, TargetState>;
  /**
   * Head of the audit log's hash chain, written only by the audit log (observability):
   * `<seq>:<sha256 of line seq>`, or `<seq>:<hash>+<sha256 of line seq+1>` while an append is
   * in progress (format in observability/audit-chain.ts).
   */
  audit_head?: string;
}

export function emptyState(): StateFile {
  return { format: 1, targets: {} };
}

export function emptyTargetState(): TargetState {
  return { active: null, previous: null, last_good: null, failed: [] };
}

const RECORD_FIELDS = new Set(['id', 'version', 'sha256', 'type', 'promoted_at', 'probation_ms', 'good', 'probation_left_ms']);
const TARGET_FIELDS = new Set(['active', 'previous', 'last_good', 'highest_version', 'failed']);
const STATE_FIELDS = new Set(['format', 'updated_at', 'targets', 'audit_head']);
const SHA256_HEX = /^[0-9a-f]{64}$/;

/** Strict parse: a state file that does not parse is reported, never silently replaced. */
export function parseStateFile(bytes: Uint8Array, where: string): StateFile {
  const value = decodeJson(bytes, where);
  const obj = asObject(value, where);
  rejectUnknownFields(obj, STATE_FIELDS, where);
  if (obj.format !== 1) throw new HotPatchError('INVALID', `${where}: format must be 1, got ${describe(obj.format)}`);
  const targets = asObject(obj.targets, `${where} targets`);
  const out: StateFile = { format: 1, targets: {} };
  if (typeof obj.updated_at === 'string') out.updated_at = obj.updated_at;
  if (obj.audit_head !== undefined) {
    if (typeof obj.audit_head !== 'string') throw new HotPatchError('INVALID', `${where}: audit_head must be a string`);
    out.audit_head = obj.audit_head;
  }
  for (const [name, raw] of Object.entries(targets)) {
    const field = `${where} targets[${JSON.stringify(name)}]`;
    const t = asObject(raw, field);
    rejectUnknownFields(t, TARGET_FIELDS, field);
    const state: TargetState = {
      active: record(t.active, `${field}.active`),
      previous: record(t.previous, `${field}.previous`),
      last_good: record(t.last_good, `${field}.last_good`),
      failed: strings(t.failed ?? [], `${field}.failed`),
    };
    if (t.highest_version !== undefined) {
      if (typeof t.highest_version !== 'string' || semver.valid(t.highest_version) === null) {
        throw new HotPatchError('INVALID', `${field}.highest_version must be a semver version`);
      }
      state.highest_version = t.highest_version;
    }
    out.targets[name] = state;
  }
  return out;
}

function record(value: unknown, field: string): VersionRecord | null {
  if (value === null || value === undefined) return null;
  const r = asObject(value, field);
  rejectUnknownFields(r, RECORD_FIELDS, field);
  if (r.id !== null && typeof r.id !== 'string') throw new HotPatchError('INVALID', `${field}.id must be a string or null`);
  if (typeof r.version !== 'string') throw new HotPatchError('INVALID', `${field}.version must be a string`);
  const out: VersionRecord = { id: r.id as string | null, version: r.version };
  if (r.sha256 !== undefined) {
    if (typeof r.sha256 !== 'string' || !SHA256_HEX.test(r.sha256)) throw new HotPatchError('INVALID', `${field}.sha256 must be 64 lowercase hex digits`);
    out.sha256 = r.sha256;
  }
  if (r.type !== undefined) {
    if (!(PAYLOAD_TYPES as readonly unknown[]).includes(r.type)) throw new HotPatchError('INVALID', `${field}.type must be one of ${PAYLOAD_TYPES.join(', ')}`);
    out.type = r.type as PayloadType;
  }
  if (r.promoted_at !== undefined) {
    if (typeof r.promoted_at !== 'string' || Number.isNaN(Date.parse(r.promoted_at))) throw new HotPatchError('INVALID', `${field}.promoted_at must be a date`);
    out.promoted_at = r.promoted_at;
  }
  if (r.probation_ms !== undefined) {
    if (typeof r.probation_ms !== 'number' || !(r.probation_ms >= 0)) throw new HotPatchError('INVALID', `${field}.probation_ms must be >= 0`);
    out.probation_ms = r.probation_ms;
  }
  if (r.good !== undefined) out.good = r.good === true;
  if (r.probation_left_ms !== undefined) {
    if (typeof r.probation_left_ms !== 'number' || !(r.probation_left_ms >= 0) || r.probation_left_ms > 2 ** 31 - 1) {
      throw new HotPatchError('INVALID', `${field}.probation_left_ms must be a number of ms in [0, 2^31-1]`);
    }
    out.probation_left_ms = r.probation_left_ms;
  }
  if (out.id !== null && (out.sha256 === undefined || out.type === undefined)) {
    throw new HotPatchError('INVALID', `${field}: a patch version needs sha256 and type`);
  }
  return out;
}

function strings(value: unknown, field: string): string[] {
  if (!Array.isArray(value) || value.some((v) => typeof v !== 'string')) throw new HotPatchError('INVALID', `${field} must be an array of strings`);
  return value as string[];
}

import semver from 'semver';
import { HotPatchError, asObject, describe, parseTargetName, parseTargetPattern, rejectUnknownFields } from '../core/index.js';

/**
 * The security policy file (`hotpatch verify --policy FILE`), one JSON object. Every field is
 * optional; unknown fields, wrong types, invalid semver ranges/versions and malformed target
 * patterns are refused with `INVALID`, naming the field path (`policy.signers.allow[1]`).
 *
 * ```json
 * {
 *   "signers":      { "allow": ["team-key-1", "build-bot"], "deny": ["old-key"] },
 *   "components":   { "allow": ["xps.crypto.*"], "deny": ["xps.crypto.rng.*"] },
 *   "requirements": { "xps.crypto.hash.sha256": "^1.2.0" },
 *   "versions":     { "xps.crypto.core": "1.4.0" },
 *   "maxPayloadBytes": 67108864,
 *   "requireExpiry": true
 * }
 * ```
 */
export interface SecurityPolicyConfig {
  /**
   * Key ids (exact, case-sensitive) of the signers whose signatures counted. `deny`: a patch
   * counted by any of them is refused. `allow`: when non-empty, the counted signers that are
   * listed must on their own meet the threshold; empty or absent = any trusted signer.
   */
  signers?: { allow?: string[]; deny?: string[] };
  /**
   * Target names or globs (`*` only, anchored at both ends, as in the trust store). `deny`
   * wins over `allow`; a non-empty `allow` list refuses every target it does not match.
   */
  components?: { allow?: string[]; deny?: string[] };
  /** Exact target name → semver range the version of a patch for that target must satisfy. */
  requirements?: Record<string, string>;
  /** Exact component name → the version running now, checked against a manifest's `constraints.requires`. */
  versions?: Record<string, string>;
  /** Largest `payload_size` accepted, in bytes; default 64 MiB (`DEFAULT_MAX_PAYLOAD_BYTES`). */
  maxPayloadBytes?: number;
  /** Refuse manifests without `expires` (`POLICY_DENIED`); default false. */
  requireExpiry?: boolean;
}

/** The policy with every default filled in, as the gate holds it. */
export interface NormalizedPolicyConfig {
  signers: { allow: string[]; deny: string[] };
  components: { allow: string[]; deny: string[] };
  requirements: Map<string, string>;
  versions: Map<string, string>;
  maxPayloadBytes: number;
  requireExpiry: boolean;
}

export const DEFAULT_MAX_PAYLOAD_BYTES = 64 * 1024 * 1024;
/** Limits on a policy's lists, so a hostile policy file cannot make every check slow. */
export const MAX_POLICY_LIST_ENTRIES = 1024;
export const MAX_KEY_ID_LENGTH = 256;
const MAX_RANGE_LENGTH = 1024;

const TOP_FIELDS = new Set(['signers', 'components', 'requirements', 'versions', 'maxPayloadBytes', 'requireExpiry']);
const LIST_FIELDS = new Set(['allow', 'deny']);

/** Strictly checks a decoded policy document (or a typed config from code). */
export function parsePolicyConfig(value: unknown, field = 'policy'): NormalizedPolicyConfig {
  const obj = asObject(value, field);
  rejectUnknownFields(obj, TOP_FIELDS, field);
  const signers = allowDeny(obj.signers, `${field}.signers`, parseKeyId);
  const components = allowDeny(obj.components, `${field}.components`, parseTargetPattern);

  const requirements = new Map<string, string>();
  for (const [component, range] of entries(obj.requirements, `${field}.requirements`)) {
    const at = `${field}.requirements[${JSON.stringify(component)}]`;
    requirements.set(parseTargetName(component, `${at} component`), parseRange(range, at));
  }
  const versions = new Map<string, string>();
  for (const [component, version] of entries(obj.versions, `${field}.versions`)) {
    const at = `${field}.versions[${JSON.stringify(component)}]`;
    versions.set(parseTargetName(component, `${at} component`), parseVersion(version, at));
  }

  let maxPayloadBytes = DEFAULT_MAX_PAYLOAD_BYTES;
  if (obj.maxPayloadBytes !== undefined) {
    const n = obj.maxPayloadBytes;
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) {
      throw new HotPatchError('INVALID', `${field}.maxPayloadBytes must be a non-negative integer, got ${describe(n)}`);
    }
    maxPayloadBytes = n;
  }
  let requireExpiry = false;
  if (obj.requireExpiry !== undefined) {
    if (typeof obj.requireExpiry !== 'boolean') {
      throw new HotPatchError('INVALID', `${field}.requireExpiry must be a boolean, got ${describe(obj.requireExpiry)}`);
    }
    requireExpiry = obj.requireExpiry;
  }
  return { signers, components, requirements, versions, maxPayloadBytes, requireExpiry };
}

/** A signer key id: the same bounds the DSSE envelope puts on `keyid`. */
export function parseKeyId(value: unknown, field: string): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_KEY_ID_LENGTH) {
    throw new HotPatchError('INVALID', `${field} must be a key id (a non-empty string of at most ${MAX_KEY_ID_LENGTH} characters), got ${describe(value)}`);
  }
  return value;
}

/** A non-empty semver range (`semver.validRange`); an empty string would silently mean "any". */
export function parseRange(value: unknown, field: string): string {
  if (typeof value !== 'string' || value.trim().length === 0 || value.length > MAX_RANGE_LENGTH || semver.validRange(value) === null) {
    throw new HotPatchError('INVALID', `${field} must be a semver range, got ${describe(value)}`);
  }
  return value;
}

export function parseVersion(value: unknown, field: string): string {
  if (typeof value !== 'string' || semver.valid(value) === null) {
    throw new HotPatchError('INVALID', `${field} must be a semver version, got ${describe(value)}`);
  }
  return value;
}

function allowDeny(value: unknown, field: string, parseItem: (item: unknown, field: string) => string): { allow: string[]; deny: string[] } {
  const out = { allow: [] as string[], deny: [] as string[] };
  if (value === undefined) return out;
  const obj = asObject(value, field);
  rejectUnknownFields(obj, LIST_FIELDS, field);
  for (const which of ['allow', 'deny'] as const) {
    const list = obj[which];
    if (list === undefined) continue;
    const at = `${field}.${which}`;
    if (!Array.isArray(list) || list.length > MAX_POLICY_LIST_ENTRIES) {
      throw new HotPatchError('INVALID', `${at} must be an array of at most ${MAX_POLICY_LIST_ENTRIES} strings, got ${describe(list)}`);
    }
    const seen = new Set<string>();
    for (const [i, item] of list.entries()) {
      const parsed = parseItem(item, `${at}[${i}]`);
      if (!seen.has(parsed)) out[which].push(parsed);
      seen.add(parsed);
    }
  }
  return out;
}

function entries(value: unknown, field: string): [string, unknown][] {
  if (value === undefined) return [];
  const list = Object.entries(asObject(value, field));
  if (list.length > MAX_POLICY_LIST_ENTRIES) {
    throw new HotPatchError('INVALID', `${field} has more than ${MAX_POLICY_LIST_ENTRIES} entries`);
  }
  return list;
}

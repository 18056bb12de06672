import { HotPatchError, asObject, decodeJson, describe, rejectUnknownFields } from '../core/index.js';
import { importPublicKey, isSignatureAlgorithm, type PublicKey } from '../crypto-agile/index.js';

/**
 * The approvers trust list: which keys may approve an activation, and how many must.
 *
 * ```json
 * { "keys": { "alice": { "alg": "ed25519", "public_key": "-----BEGIN PUBLIC KEY-----…" } },
 *   "quorum": { "threshold": 2 } }            // or { "ratio": 0.66, "min": 2 }
 * ```
 * Parsed as strictly as the trust store: unknown fields, bad keys and a quorum that could
 * never be met (or that would accept no vote at all) are refused when the list loads.
 */
export interface ApproversDocument {
  keys: Record<string, { alg: string; public_key: string }>;
  quorum: { threshold: number } | { ratio: number; min?: number };
}

export interface ApproverKey {
  keyid: string;
  key: PublicKey;
}

/**
 * `threshold`: M of the list's distinct keys. `ratio`: ceil(ratio × voterCount()) of them,
 * never fewer than `min` (nor 1): `min` is the floor a store writer cannot lower by
 * deregistering voters.
 */
export type Quorum = { kind: 'threshold'; threshold: number } | { kind: 'ratio'; ratio: number; min: number };

export interface ApproversList {
  keys: ReadonlyMap<string, ApproverKey>;
  quorum: Quorum;
  /** Number of distinct public keys (by SPKI fingerprint) in `keys`. */
  distinctKeys: number;
  /** The document it was loaded from. */
  document: ApproversDocument;
}

const LIST_FIELDS = new Set(['keys', 'quorum']);
const KEY_FIELDS = new Set(['alg', 'public_key']);
const THRESHOLD_FIELDS = new Set(['threshold']);
const RATIO_FIELDS = new Set(['ratio', 'min']);
/** The trust store's key id syntax: no `/`, so a key id is always one store path segment. */
export const APPROVER_KEYID = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/;
const MAX_KEYS = 256;

/** Approvers list JSON (bytes, text or value) → checked list. Pure. */
export function parseApprovers(input: Uint8Array | string | unknown): ApproversList {
  const value = input instanceof Uint8Array || typeof input === 'string' ? decodeJson(input, 'approvers list') : input;
  const obj = asObject(value, 'approvers list');
  rejectUnknownFields(obj, LIST_FIELDS, 'approvers list');

  const keysObj = asObject(obj.keys, 'approvers list keys');
  const entries = Object.entries(keysObj);
  if (entries.length === 0) throw new HotPatchError('INVALID', 'approvers list has no keys');
  if (entries.length > MAX_KEYS) throw new HotPatchError('INVALID', `approvers list has more than ${MAX_KEYS} keys`);
  const keys = new Map<string, ApproverKey>();
  for (const [keyid, raw] of entries) {
    if (!APPROVER_KEYID.test(keyid)) {
      throw new HotPatchError('INVALID', `approvers list key id ${JSON.stringify(keyid)} is not a valid key id (1-128 of [A-Za-z0-9._:@-])`);
    }
    const field = `approvers list keys.${keyid}`;
    const k = asObject(raw, field);
    rejectUnknownFields(k, KEY_FIELDS, field);
    // As in the trust store: an algorithm that is not ours is a policy refusal.
    if (!isSignatureAlgorithm(k.alg)) {
      throw new HotPatchError('ALGORITHM_DISALLOWED', `${field}.alg ${describe(k.alg)} is not a supported signature algorithm`);
    }
    if (typeof k.public_key !== 'string') throw new HotPatchError('INVALID', `${field}.public_key must be a PEM or base64 SPKI string`);
    let key: PublicKey;
    try {
      key = importPublicKey(k.alg, k.public_key);
    } catch (cause) {
      throw new HotPatchError('INVALID', `${field}.public_key: ${(cause as Error).message}`, { cause });
    }
    keys.set(keyid, { keyid, key });
  }
  const distinctKeys = new Set([...keys.values()].map((k) => k.key.fingerprint)).size;
  const quorum = parseQuorum(obj.quorum, distinctKeys);
  return { keys, quorum, distinctKeys, document: value as ApproversDocument };
}

/** How many distinct approver keys must approve, given the number of registered voters. */
export function requiredApprovals(quorum: Quorum, voterCount: number): number {
  if (quorum.kind === 'threshold') return quorum.threshold;
  const voters = Number.isSafeInteger(voterCount) && voterCount > 0 ? voterCount : 0;
  // A tiny epsilon keeps 0.66 × 100 = 66.00000000000001 from asking for 67.
  return Math.max(1, quorum.min, Math.ceil(quorum.ratio * voters - 1e-9));
}

/** Human form of a quorum rule, for messages. */
export function describeQuorum(quorum: Quorum): string {
  return quorum.kind === 'threshold' ? `${quorum.threshold} distinct approver key(s)` : `${quorum.ratio} of the registered voters, at least ${quorum.min}`;
}

function parseQuorum(value: unknown, distinctKeys: number): Quorum {
  const q = asObject(value, 'approvers list quorum');
  if ('threshold' in q) {
    rejectUnknownFields(q, THRESHOLD_FIELDS, 'approvers list quorum');
    return { kind: 'threshold', threshold: count(q.threshold, 'approvers list quorum.threshold', distinctKeys) };
  }
  if ('ratio' in q) {
    rejectUnknownFields(q, RATIO_FIELDS, 'approvers list quorum');
    const ratio = q.ratio;
    if (typeof ratio !== 'number' || !Number.isFinite(ratio) || ratio <= 0 || ratio > 1) {
      throw new HotPatchError('INVALID', `approvers list quorum.ratio must be a number in (0, 1], got ${describe(ratio)}`);
    }
    const min = q.min === undefined ? 1 : count(q.min, 'approvers list quorum.min', distinctKeys);
    return { kind: 'ratio', ratio, min };
  }
  throw new HotPatchError('INVALID', 'approvers list quorum must be { "threshold": M } or { "ratio": R, "min": M }');
}

function count(value: unknown, field: string, distinctKeys: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
    throw new HotPatchError('INVALID', `${field} must be an integer, got ${describe(value)}`);
  }
  if (value < 1) throw new HotPatchError('INVALID', `${field} is ${value}: a quorum below 1 would approve with no vote at all`);
  if (value > distinctKeys) {
    throw new HotPatchError('INVALID', `${field} is ${value} but only ${distinctKeys} distinct keys could approve: it can never be met`);
  }
  return value;
}

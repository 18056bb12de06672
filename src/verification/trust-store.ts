import type { X509Certificate } from 'node:crypto';
import {
  HotPatchError,
  asObject,
  decodeJson,
  describe,
  isPatchId,
  matchesAnyTargetPattern,
  matchesTargetPattern,
  parseRfc3339,
  parseTargetPattern,
  rejectUnknownFields,
} from '../core/index.js';
import { importPublicKey, isSignatureAlgorithm, type PublicKey } from '../crypto-agile/index.js';
import { addCutoff, authorities, revocations, type KeyCutoff } from './key-cutoffs.js';

export type { KeyCutoff } from './key-cutoffs.js';

/**
 * The trust store (README "Trust store"; docs/ARCHITECTURE.md "Trust store"), plus two
 * optional fields for rotation (TUF-style root chaining): `version` (integer, default 1; a
 * rotation must increase it) and `root` (which keys may sign the next trust store, and how
 * many must; default: every key, the store's threshold). Two optional roles sign fleet
 * rollouts (distributed/rollout-signing.ts): `fleet`, the operators (a rollout and the states
 * that move it forward need `threshold` of them, the states that stop it `stopThreshold`,
 * default `threshold`), and `controllers`, the fleet controllers (one signs a state alone).
 * A third, `agents`, lists the fleet agents whose reports are signed (distributed/agent-report.ts):
 * each key id is an agent id, and that key signs that agent's reports, nothing else.
 *
 * Agent keys live on every host of a fleet, the least guarded place a key can be; so a key of
 * the `agents` role is kept out of everything else: it may not be named by a rule, the root or
 * another role, may not share its public key with another key id, and never counts toward the
 * store-wide threshold (a target no rule matches) nor toward the default root. Without that,
 * any one host of a fleet whose store has no rules could sign patches for the whole fleet.
 *
 * The keys of the `fleet` and `controllers` roles (operators' and controllers' keys) are kept
 * out of the store-wide threshold and the default root the same way, unless a rule or an
 * explicit `root` names them: a controller's key, on a controller host, signs rollout states,
 * not patches nor the next trust store.
 *
 * A fifth, `index`, signs the repository index (verification/repository-index.ts: which
 * patches a repository holds, at which version, payload hash and size — TUF's snapshot and
 * timestamp roles in one). Its keys sign indexes often and sit near the repository, so they
 * are kept out of the store-wide threshold and the default root as the fleet's are.
 */
export interface TrustStoreDocument {
  version?: number;
  keys: Record<string, { alg: string; public_key: string; targets?: string[]; expires?: string }>;
  threshold: number;
  rules?: { targets: string[]; threshold: number; keys: string[] }[];
  root?: { keys: string[]; threshold: number };
  fleet?: { keys: string[]; threshold: number; stopThreshold?: number };
  controllers?: { keys: string[] };
  agents?: { keys: string[] };
  index?: { keys: string[]; threshold: number };
  /** Keys revoked, and since when: their signatures count only when timestamped before then. */
  revoked?: Record<string, { at: string; reason?: string }>;
  /** The time-stamping authorities (RFC 3161) whose tokens prove when a signature existed. */
  timestamping?: { certificates: string[] };
}

/** The operators of a fleet: who signs rollouts, and how many must (see TrustStoreDocument). */
export interface FleetRole {
  keys: string[];
  threshold: number;
  /** For the states that move a rollout to safety (pause, abort); never above `threshold`. */
  stopThreshold: number;
}

export interface TrustedKey {
  keyid: string;
  key: PublicKey;
  /** Target patterns this key may sign for; undefined = every target. */
  targets: string[] | undefined;
}

export interface TrustRule {
  targets: string[];
  threshold: number;
  keys: string[];
}

export interface TrustStore {
  version: number;
  keys: ReadonlyMap<string, TrustedKey>;
  threshold: number;
  rules: readonly TrustRule[];
  root: { keys: string[]; threshold: number };
  /** Absent: nobody may sign a rollout (agents refuse every one). */
  fleet?: FleetRole;
  /** Absent: no controller may sign a rollout state. */
  controllers?: { keys: string[] };
  /**
   * Agents whose reports count only when signed by their own key (key id = agent id). Absent:
   * agent reports are taken as stored, unsigned (the weaker mode: any store writer can write one).
   */
  agents?: { keys: string[] };
  /**
   * Who signs the repository index, and how many must. Present: a repository read through
   * `IndexedRepository` (the agent's and the CLI's, automatically) must serve a signed index.
   */
  index?: { keys: string[]; threshold: number };
  /**
   * Public key fingerprint → when its signatures stop counting (the earlier of its revocation
   * and its `expires`). Keyed by public key: a revoked key listed again under another id is
   * still revoked.
   */
  cutoffs: ReadonlyMap<string, KeyCutoff>;
  /** Trusted RFC 3161 authorities (or the CAs that issue their certificates), PEM as given. */
  timestampAuthorities: readonly X509Certificate[];
  /** The document it was loaded from, for re-serialisation. */
  document: TrustStoreDocument;
}

/** What applies to one target: the threshold and which key ids may count toward it. */
export interface TargetTrust {
  target: string;
  threshold: number;
  /** Key ids authorised for the target (rule keys and key patterns both applied). */
  authorized: Set<string>;
  /** The rule that matched, if any (its index in `rules`). */
  ruleIndex: number | undefined;
}

const STORE_FIELDS = new Set(['version', 'keys', 'threshold', 'rules', 'root', 'fleet', 'controllers', 'agents', 'index', 'revoked', 'timestamping']);
const KEY_FIELDS = new Set(['alg', 'public_key', 'targets', 'expires']);
const RULE_FIELDS = new Set(['targets', 'threshold', 'keys']);
const ROOT_FIELDS = new Set(['keys', 'threshold']);
const FLEET_FIELDS = new Set(['keys', 'threshold', 'stopThreshold']);
const ROLE_FIELDS = new Set(['keys']);
const KEYID = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/;
const MAX_KEYS = 256;

/** Trust store JSON (bytes, text or value) → checked trust store. Pure. */
export function parseTrustStore(input: Uint8Array | string | unknown): TrustStore {
  const value = input instanceof Uint8Array || typeof input === 'string' ? decodeJson(input, 'trust store') : input;
  const obj = asObject(value, 'trust store');
  rejectUnknownFields(obj, STORE_FIELDS, 'trust store');

  const version = obj.version === undefined ? 1 : obj.version;
  if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 1) {
    throw new HotPatchError('INVALID', `trust store version must be an integer >= 1, got ${describe(version)}`);
  }

  const keysObj = asObject(obj.keys, 'trust store keys');
  const entries = Object.entries(keysObj);
  if (entries.length === 0) throw new HotPatchError('INVALID', 'trust store has no keys');
  if (entries.length > MAX_KEYS) throw new HotPatchError('INVALID', `trust store has more than ${MAX_KEYS} keys`);
  const keys = new Map<string, TrustedKey>();
  const cutoffs = new Map<string, KeyCutoff>();
  for (const [keyid, raw] of entries) {
    if (!KEYID.test(keyid)) throw new HotPatchError('INVALID', `trust store key id ${JSON.stringify(keyid)} is not a valid key id`);
    const k = asObject(raw, `trust store keys.${keyid}`);
    rejectUnknownFields(k, KEY_FIELDS, `trust store keys.${keyid}`);
    if (!isSignatureAlgorithm(k.alg)) {
      throw new HotPatchError('ALGORITHM_DISALLOWED', `trust store keys.${keyid}.alg ${describe(k.alg)} is not a supported signature algorithm`);
    }
    if (typeof k.public_key !== 'string') {
      throw new HotPatchError('INVALID', `trust store keys.${keyid}.public_key must be a PEM or base64 SPKI string`);
    }
    let key: PublicKey;
    try {
      key = importPublicKey(k.alg, k.public_key);
    } catch (cause) {
      throw new HotPatchError('INVALID', `trust store keys.${keyid}.public_key: ${(cause as Error).message}`, { cause });
    }
    const targets = k.targets === undefined ? undefined : patterns(k.targets, `trust store keys.${keyid}.targets`);
    keys.set(keyid, { keyid, key, targets });
    if (k.expires !== undefined)
      addCutoff(cutoffs, key.fingerprint, { at: parseRfc3339(k.expires, `trust store keys.${keyid}.expires`), why: 'expired', text: String(k.expires) });
  }
  if (obj.revoked !== undefined) revocations(obj.revoked, keys, cutoffs);
  const timestampAuthorities = obj.timestamping === undefined ? [] : authorities(obj.timestamping);
  // Parsed before the threshold: agent keys do not count toward it (see the file comment).
  const agents = obj.agents === undefined ? undefined : agentsRole(obj.agents, keys);
  const agentIds = new Set(agents?.keys);
  // The fleet's operator and controller keys sign rollouts and rollout states: they count for
  // patches (or the next trust store) only where a rule (or an explicit root) names them.
  const fleet = obj.fleet === undefined ? undefined : fleetRole(obj.fleet, keys, agentIds);
  const controllers = obj.controllers === undefined ? undefined : { keys: roleKeys(obj.controllers, 'controllers', keys, agentIds) };
  const index = obj.index === undefined ? undefined : thresholdRole(obj.index, 'index', keys, agentIds);
  const roleIds = [...(fleet?.keys ?? []), ...(controllers?.keys ?? []), ...(index?.keys ?? [])];
  // By public key: a role key listed again under another id is still that role's key.
  const roleFingerprints = new Set(roleIds.map((id) => keys.get(id)!.key.fingerprint));
  const signing = [...keys.keys()].filter((id) => !agentIds.has(id) && !roleFingerprints.has(keys.get(id)!.key.fingerprint));
  const distinctKeys = new Set(signing.map((id) => keys.get(id)!.key.fingerprint)).size;

  if (roleIds.length > 0 && typeof obj.threshold === 'number' && Number.isSafeInteger(obj.threshold) && obj.threshold > distinctKeys) {
    throw new HotPatchError(
      'INVALID',
      `trust store threshold is ${obj.threshold} but only ${distinctKeys} distinct keys outside the fleet, controllers, index and agents roles could sign: ` +
        'role keys do not count toward the store-wide threshold (name them in a rule to let them sign patches)',
    );
  }
  const threshold = thresholdOf(obj.threshold, 'trust store threshold', distinctKeys);

  const rules: TrustRule[] = [];
  if (obj.rules !== undefined) {
    if (!Array.isArray(obj.rules)) throw new HotPatchError('INVALID', 'trust store rules must be an array');
    obj.rules.forEach((raw, i) => {
      const field = `trust store rules[${i}]`;
      const r = asObject(raw, field);
      rejectUnknownFields(r, RULE_FIELDS, field);
      const ruleKeys = keyIds(r.keys, `${field}.keys`, keys, agentIds);
      const ruleDistinct = new Set(ruleKeys.map((id) => keys.get(id)!.key.fingerprint)).size;
      rules.push({
        targets: patterns(r.targets, `${field}.targets`),
        threshold: thresholdOf(r.threshold, `${field}.threshold`, ruleDistinct),
        keys: ruleKeys,
      });
    });
  }

  let root = { keys: signing, threshold };
  if (obj.root !== undefined) {
    const r = asObject(obj.root, 'trust store root');
    rejectUnknownFields(r, ROOT_FIELDS, 'trust store root');
    const rootKeys = keyIds(r.keys, 'trust store root.keys', keys, agentIds);
    const rootDistinct = new Set(rootKeys.map((id) => keys.get(id)!.key.fingerprint)).size;
    root = { keys: rootKeys, threshold: thresholdOf(r.threshold, 'trust store root.threshold', rootDistinct) };
  }

  const store: TrustStore = { version, keys, threshold, rules, root, cutoffs, timestampAuthorities, document: value as TrustStoreDocument };
  if (fleet !== undefined) store.fleet = fleet;
  if (controllers !== undefined) store.controllers = controllers;
  if (agents !== undefined) store.agents = agents;
  if (index !== undefined) store.index = index;
  return store;
}

/** A role that is keys and a threshold over their distinct public keys (`index`). */
function thresholdRole(
  value: unknown,
  role: string,
  keys: ReadonlyMap<string, TrustedKey>,
  agentIds: ReadonlySet<string>,
): { keys: string[]; threshold: number } {
  const r = asObject(value, `trust store ${role}`);
  rejectUnknownFields(r, ROOT_FIELDS, `trust store ${role}`);
  const ids = keyIds(r.keys, `trust store ${role}.keys`, keys, agentIds);
  const distinct = new Set(ids.map((id) => keys.get(id)!.key.fingerprint)).size;
  return { keys: ids, threshold: thresholdOf(r.threshold, `trust store ${role}.threshold`, distinct) };
}

/** A role that is a list of keys and nothing else (`controllers`, `agents`). */
function roleKeys(value: unknown, role: string, keys: ReadonlyMap<string, TrustedKey>, agentIds?: ReadonlySet<string>): string[] {
  const r = asObject(value, `trust store ${role}`);
  rejectUnknownFields(r, ROLE_FIELDS, `trust store ${role}`);
  return keyIds(r.keys, `trust store ${role}.keys`, keys, agentIds);
}

/**
 * The agents role: each key id a valid agent id (the id agents are registered under), each key
 * its own public key (one listed under another id too could sign as that id).
 */
function agentsRole(value: unknown, keys: ReadonlyMap<string, TrustedKey>): { keys: string[] } {
  const ids = roleKeys(value, 'agents', keys);
  ids.forEach((id, i) => {
    if (!isPatchId(id)) {
      throw new HotPatchError('INVALID', `trust store agents.keys[${i}] ${JSON.stringify(id)} is not a valid agent id (1-128 of [A-Za-z0-9._-], without "..")`);
    }
    const fingerprint = keys.get(id)!.key.fingerprint;
    const twin = [...keys.values()].find((k) => k.keyid !== id && k.key.fingerprint === fingerprint);
    if (twin !== undefined) {
      throw new HotPatchError('INVALID', `trust store agents.keys[${i}] ${id} has the public key of ${twin.keyid}: an agent's key must be its own`);
    }
  });
  return { keys: ids };
}

function fleetRole(value: unknown, keys: ReadonlyMap<string, TrustedKey>, agentIds: ReadonlySet<string>): FleetRole {
  const f = asObject(value, 'trust store fleet');
  rejectUnknownFields(f, FLEET_FIELDS, 'trust store fleet');
  const fleetKeys = keyIds(f.keys, 'trust store fleet.keys', keys, agentIds);
  const distinct = new Set(fleetKeys.map((id) => keys.get(id)!.key.fingerprint)).size;
  const threshold = thresholdOf(f.threshold, 'trust store fleet.threshold', distinct);
  const stopThreshold = f.stopThreshold === undefined ? threshold : thresholdOf(f.stopThreshold, 'trust store fleet.stopThreshold', distinct);
  // Stopping is the safe direction: it may need fewer operators, never more.
  if (stopThreshold > threshold) {
    throw new HotPatchError(
      'INVALID',
      `trust store fleet.stopThreshold ${stopThreshold} is above fleet.threshold ${threshold}: stopping a rollout would be harder than starting it`,
    );
  }
  return { keys: fleetKeys, threshold, stopThreshold };
}

/**
 * Which keys may vouch for `target`, and how many must: the first rule whose patterns
 * match decides (as TUF's ordered delegations), else the store-wide threshold over all
 * keys but the agents', the fleet operators' and the controllers'; a key's own `targets` patterns always apply on top.
 */
export function trustForTarget(store: TrustStore, target: string): TargetTrust {
  const ruleIndex = store.rules.findIndex((r) => matchesAnyTargetPattern(r.targets, target));
  const rule = ruleIndex === -1 ? undefined : store.rules[ruleIndex];
  const candidates = rule === undefined ? storeWideKeys(store) : rule.keys;
  const authorized = new Set(
    candidates.filter((id) => {
      const k = store.keys.get(id);
      return k !== undefined && keyAllowsTarget(k, target);
    }),
  );
  return {
    target,
    threshold: rule === undefined ? store.threshold : rule.threshold,
    authorized,
    ruleIndex: rule === undefined ? undefined : ruleIndex,
  };
}

const storeWide = new WeakMap<TrustStore, readonly string[]>();

/**
 * The keys the store-wide threshold counts (a target no rule matches): every key but the
 * agents' and those with the public key of a fleet or controllers key. Cached per store.
 */
function storeWideKeys(store: TrustStore): readonly string[] {
  let ids = storeWide.get(store);
  if (ids === undefined) {
    const agents = new Set(store.agents?.keys ?? []);
    const roles = new Set(
      [...(store.fleet?.keys ?? []), ...(store.controllers?.keys ?? []), ...(store.index?.keys ?? [])].map((id) => store.keys.get(id)?.key.fingerprint),
    );
    ids = [...store.keys.keys()].filter((id) => !agents.has(id) && !roles.has(store.keys.get(id)!.key.fingerprint));
    storeWide.set(store, ids);
  }
  return ids;
}

/** Whether a key's own `targets` patterns let it vouch for `target` (no patterns: every target). */
export function keyAllowsTarget(key: TrustedKey, target: string): boolean {
  return key.targets === undefined || key.targets.some((p) => matchesTargetPattern(p, target));
}

function thresholdOf(value: unknown, field: string, distinctKeys: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
    throw new HotPatchError('INVALID', `${field} must be an integer, got ${describe(value)}`);
  }
  if (value < 1) throw new HotPatchError('INVALID', `${field} is ${value}: a threshold below 1 would accept unsigned patches`);
  if (value > distinctKeys) {
    throw new HotPatchError('INVALID', `${field} is ${value} but only ${distinctKeys} distinct keys could sign: it can never be met`);
  }
  return value;
}

/** Key ids of the store, each once; none of `agentIds` (an agent's key signs its reports only). */
function keyIds(value: unknown, field: string, keys: ReadonlyMap<string, TrustedKey>, agentIds?: ReadonlySet<string>): string[] {
  if (!Array.isArray(value) || value.length === 0) throw new HotPatchError('INVALID', `${field} must be a non-empty array of key ids`);
  const ids = value.map((id, i) => {
    if (typeof id !== 'string' || !keys.has(id)) {
      throw new HotPatchError('INVALID', `${field}[${i}] ${describe(id)} is not a key of this trust store`);
    }
    if (agentIds?.has(id) === true) {
      throw new HotPatchError('INVALID', `${field}[${i}] ${id} is an agent's key (agents role): it signs that agent's reports and nothing else`);
    }
    return id;
  });
  if (new Set(ids).size !== ids.length) throw new HotPatchError('INVALID', `${field} lists a key id twice`);
  return ids;
}

function patterns(value: unknown, field: string): string[] {
  if (!Array.isArray(value) || value.length === 0 || value.length > 256) {
    throw new HotPatchError('INVALID', `${field} must be a non-empty array of target patterns`);
  }
  return value.map((p, i) => parseTargetPattern(p, `${field}[${i}]`));
}

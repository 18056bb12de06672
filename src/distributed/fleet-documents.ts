/**
 * The documents of a fleet rollout, as agents and controllers share them through a `KvStore`
 * (the key layout is in fleet-rollout.ts): their types, the key names, and the strict parsers
 * every reader goes through.
 */
import {
  HotPatchError,
  asObject,
  canonicalVersion,
  decodeJson,
  describe,
  integerInRange,
  oneOf,
  optional,
  parsePatchId,
  payloadHashText,
  parseTargetName,
  rejectUnknownFields,
  stringField,
  utcTimestamp,
} from '../core/index.js';
import { checkPersistableZdt, type PersistableZdtOptions } from '../orchestration/index.js';

export const DEFAULT_FLEET_PREFIX = '/xps/hotpatch/fleet';
const PREFIX = /^(\/[A-Za-z0-9._-]+)+$/;

export const ROLLOUT_STATUSES = ['running', 'paused', 'halted', 'rolling-back', 'rolled-back', 'completed', 'aborted'] as const;
export type RolloutStatus = (typeof ROLLOUT_STATUSES)[number];
/** States from which nothing moves any more. */
export const FINAL_ROLLOUT_STATUSES: readonly RolloutStatus[] = ['rolled-back', 'completed', 'aborted'];
/** States in which agents that applied the rollout's patch roll it back. */
export const ROLLBACK_STATUSES: readonly RolloutStatus[] = ['halted', 'rolling-back', 'rolled-back', 'aborted'];
/** The states one controller key may sign: the ring rules' outcomes, never a pause or an abort. */
export const CONTROLLER_STATUSES: readonly RolloutStatus[] = ['running', 'halted', 'rolling-back', 'rolled-back', 'completed'];
/** The states operators sign with the fleet's `stopThreshold` (the safe direction). */
export const OPERATOR_STOP_STATUSES: readonly RolloutStatus[] = ['paused', 'aborted'];
/** The states operators sign with the fleet's full `threshold` (moving forward again: resume). */
export const OPERATOR_GO_STATUSES: readonly RolloutStatus[] = ['running'];
/** How many earlier states a signed state carries (the oldest are dropped). */
export const MAX_ROLLOUT_TRAIL = 64;
/** Longest reason kept in a trail entry (the writer cuts longer ones). */
export const MAX_TRAIL_REASON = 256;
/** Most key ids a trail entry's `signedBy` keeps (the writer keeps the first ones). */
export const MAX_TRAIL_SIGNERS = 16;
/** How long a rollout spec may be started by default (`expiresInMs`): 24 h. */
export const DEFAULT_ROLLOUT_EXPIRY_MS = 24 * 60 * 60 * 1000;
/** The longest a rollout spec may stay startable: 30 days. */
export const MAX_ROLLOUT_EXPIRY_MS = 30 * 24 * 60 * 60 * 1000;
/** `by` of the states operators sign. */
export const OPERATOR = 'operator';

/** The phase an agent reports for one target. */
export const FLEET_PHASES = ['idle', 'applying', 'promoted', 'activated', 'failed', 'rolling-back', 'rolled-back'] as const;
export type FleetPhase = (typeof FLEET_PHASES)[number];
export const FLEET_HEALTH = ['healthy', 'unhealthy', 'unknown'] as const;
export type FleetHealth = (typeof FLEET_HEALTH)[number];

/** What a ring with no alive agent does: wait for one (default: never widen without evidence), or be skipped. */
export type EmptyRingPolicy = 'wait' | 'skip';

export interface RolloutState {
  status: RolloutStatus;
  /** The ring being rolled out now (0 = canary hosts); `rings` once completed. */
  ring: number;
  /** When the current ring was opened (RFC 3339). */
  ringStartedAt?: string;
  /** Since when every alive agent of the current ring has been ready (the soak clock). */
  healthySince?: string;
  /** Why the rollout is in this state (a failure, an operator's words, what it waits for). */
  reason?: string;
  /** Who wrote this state: a controller id or `operator`. */
  by?: string;
  /** The operator's own `user@host`, as they declared it: recorded, never trusted. */
  actor?: string;
  updatedAt?: string;
}

/** One earlier state of a rollout, as the signed state carries its history. */
export interface RolloutTrailEntry {
  seq: number;
  status: RolloutStatus;
  ring: number;
  by: string;
  updatedAt: string;
  reason?: string;
  /** The operator's self-declared `user@host`, when the state had one. */
  actor?: string;
  /** The key ids whose signatures counted for that state (at most MAX_TRAIL_SIGNERS; absent when none were counted). */
  signedBy?: string[];
}

/**
 * What the operators sign to start a rollout (the payload of the spec envelope): what to
 * apply, over how many rings, with which canary options. Never changes once signed.
 */
export interface SignedRolloutSpec {
  id: string;
  target: string;
  patchId: string;
  version: string;
  /** `<alg>:<hex>` as in the signed manifest: agents refuse a patch whose manifest says otherwise. */
  payloadHash: string;
  /** Number of rings (ring 0 = canary hosts, then wider rings up to `rings - 1`). */
  rings: number;
  /** How long a ring's agents must all stay promoted and healthy before the next ring opens. */
  soakMs: number;
  emptyRings: EmptyRingPolicy;
  /**
   * Canary options every agent applies the patch with (over its own `applyOptions`): the
   * storable ones, checked like a plan's `zdt` (`checkPersistableZdt`). Absent: each agent's own.
   */
  zdt?: PersistableZdtOptions;
  createdAt: string;
  /**
   * The fleet prefix the rollout was created for: a reader refuses a spec stored under another
   * prefix (a copy into another fleet).
   */
  prefix: string;
  /**
   * RFC 3339: after this, no agent starts applying the rollout and no controller opens a new
   * ring of it (rollbacks and aborts still count). At most MAX_ROLLOUT_EXPIRY_MS after createdAt.
   */
  expiresAt: string;
}

/** What an operator asks for (`signRolloutSpec`, `createRollout`): a `SignedRolloutSpec` with defaults. */
export interface RolloutSpec {
  /** Default: `<patchId>-<base36 creation time>`. */
  id?: string;
  target: string;
  patchId: string;
  version: string;
  payloadHash: string;
  rings: number;
  soakMs: number;
  /** Default `wait`: a ring with no alive agent holds the rollout (never widen without evidence). */
  emptyRings?: EmptyRingPolicy;
  /** Canary options of every agent's apply (see `SignedRolloutSpec.zdt`); absent: each agent's own. */
  zdt?: PersistableZdtOptions;
  /** How long after its creation the rollout may still start on an agent or open a ring (default 24 h, at most 30 days). */
  expiresInMs?: number;
}

/** Who vouched for the current state: the spec's operators (the implicit first state), operators, or one controller. */
export interface RolloutStateSigners {
  role: 'operator' | 'controller' | 'spec';
  /** The key ids counted (one per distinct public key); empty when the document was not verified. */
  keyids: string[];
}

/**
 * A rollout as stored at `<prefix>/rollouts/<id>` (rollout-signing.ts has the stored form):
 * the signed spec, its current signed state, and who signed them.
 */
export interface RolloutDocument extends SignedRolloutSpec {
  state: RolloutState;
  /** The state's sequence number: 0 for the implicit first state, +1 per state written. */
  seq: number;
  /** The earlier states, oldest first (at most MAX_ROLLOUT_TRAIL). */
  trail: RolloutTrailEntry[];
  /** The spec's key ids counted (one per distinct public key); empty when the document was not verified. */
  signers: string[];
  stateSigners: RolloutStateSigners;
}

/** What an agent receives: the rollout document itself. */
export type RolloutOrder = RolloutDocument;

export interface AgentTargetState {
  version: string;
  phase: FleetPhase;
  health: FleetHealth;
  /** The active patch (absent: the built-in implementation). */
  patchId?: string;
  /** The rollout this agent last acted on for the target, and how that went. */
  rollout?: string;
  reason?: string;
  updatedAt: string;
}

export interface AgentDocument {
  agentId: string;
  ring: number;
  /** What the agent says about itself (e.g. `{ "zone": "eu-1" }`): shown, never trusted. */
  labels?: Record<string, string>;
  targets: Record<string, AgentTargetState>;
  startedAt?: string;
}

export interface FleetKeys {
  prefix: string;
  agents: string;
  rollouts: string;
  /** The election name of the controllers. */
  controller: string;
}

export function fleetKeys(prefix: string = DEFAULT_FLEET_PREFIX): FleetKeys {
  if (typeof prefix !== 'string' || prefix.length > 256 || !PREFIX.test(prefix)) {
    throw new HotPatchError('INVALID', `fleet prefix must look like /a/b (segments of [A-Za-z0-9._-]), got ${describe(prefix)}`);
  }
  return { prefix, agents: `${prefix}/agents/`, rollouts: `${prefix}/rollouts/`, controller: `${prefix.slice(1).replaceAll('/', ':')}:controller` };
}

/** Agent ids and rollout ids follow the patch-id rule (they become key segments). */
export function parseFleetId(value: unknown, what: string): string {
  return parsePatchId(value, what);
}

export function parseRing(value: unknown, what = 'ring'): number {
  return integerInRange(value, what, 0, 999);
}

export const MAX_AGENT_LABELS = 16;
const LABEL_NAME = /^[A-Za-z0-9._-]{1,64}$/;
const LABEL_VALUE = /^[\x20-\x7e]{1,64}$/;

/**
 * An agent's labels: at most 16, names 1-64 of [A-Za-z0-9._-], values 1-64 printable ASCII
 * characters. Bounded because every agent's document is listed by every `fleet status`, and
 * plain so a terminal shows them as written. Returns a copy with the names sorted (the same
 * labels always serialise to the same text).
 */
export function parseLabels(value: unknown, what: string): Record<string, string> {
  const o = asObject(value, what);
  const names = Object.keys(o).sort();
  if (names.length > MAX_AGENT_LABELS) throw new HotPatchError('INVALID', `${what} has ${names.length} labels, at most ${MAX_AGENT_LABELS} are allowed`);
  const out: Record<string, string> = {};
  for (const name of names) {
    if (!LABEL_NAME.test(name)) throw new HotPatchError('INVALID', `${what}: label name ${describe(name)} must be 1-64 of [A-Za-z0-9._-]`);
    const v = o[name];
    if (typeof v !== 'string' || !LABEL_VALUE.test(v))
      throw new HotPatchError('INVALID', `${what}.${name} must be 1-64 printable ASCII characters, got ${describe(v)}`);
    out[name] = v;
  }
  return out;
}

/** A stored document: JSON text, or a value already decoded. */
function decoded(input: string | unknown, what: string): Record<string, unknown> {
  return asObject(typeof input === 'string' ? decodeJson(input, what) : input, what);
}

const SPEC_FIELDS = ['id', 'target', 'patchId', 'version', 'payloadHash', 'rings', 'soakMs', 'emptyRings', 'zdt', 'createdAt', 'prefix', 'expiresAt'];
const STATE_FIELDS = ['rollout', 'spec', 'seq', 'status', 'ring', 'ringStartedAt', 'healthySince', 'reason', 'by', 'actor', 'updatedAt', 'trail'];
const TRAIL_FIELDS = ['seq', 'status', 'ring', 'by', 'updatedAt', 'reason', 'actor', 'signedBy'];
const KEYID = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/;
const SPEC_DIGEST = /^sha256:[0-9a-f]{64}$/;

/** The payload of a rollout spec envelope (bytes, text or value), parsed strictly; zdt comes back normalised. */
export function parseRolloutSpec(input: Uint8Array | string | unknown, what = 'rollout'): SignedRolloutSpec {
  const o = asObject(input instanceof Uint8Array || typeof input === 'string' ? decodeJson(input, what) : input, what);
  rejectUnknownFields(o, SPEC_FIELDS, what);
  const payloadHash = stringField(o, 'payloadHash', what);
  payloadHashText(payloadHash, `${what}.payloadHash`);
  const createdAt = utcTimestamp(o.createdAt, `${what}.createdAt`);
  if (o.prefix === undefined) throw new HotPatchError('INVALID', `${what}.prefix is required: it names the fleet the rollout was signed for`);
  const prefix = fleetKeys(o.prefix as string).prefix;
  if (o.expiresAt === undefined) throw new HotPatchError('INVALID', `${what}.expiresAt is required: a rollout spec must expire`);
  const expiresAt = utcTimestamp(o.expiresAt, `${what}.expiresAt`);
  const lifetime = Date.parse(expiresAt) - Date.parse(createdAt);
  if (!(lifetime > 0 && lifetime <= MAX_ROLLOUT_EXPIRY_MS)) {
    throw new HotPatchError('INVALID', `${what}.expiresAt ${expiresAt} must be after createdAt ${createdAt} and at most 30 days after it`);
  }
  return {
    id: parseFleetId(o.id, `${what}.id`),
    target: parseTargetName(o.target, `${what}.target`),
    patchId: parsePatchId(o.patchId, `${what}.patchId`),
    version: canonicalVersion(o.version, `${what}.version`),
    payloadHash,
    rings: integerInRange(o.rings, `${what}.rings`, 1, 100),
    soakMs: integerInRange(o.soakMs, `${what}.soakMs`, 0),
    emptyRings: o.emptyRings === undefined ? 'wait' : oneOf(o.emptyRings, ['wait', 'skip'] as const, `${what}.emptyRings`),
    ...(o.zdt === undefined ? {} : { zdt: checkPersistableZdt(o.zdt, `${what}.zdt`) }),
    createdAt,
    prefix,
    expiresAt,
  };
}

/** The payload of a rollout state envelope, parsed strictly (what it names is checked against the spec by the verifier). */
export interface RolloutStatePayload {
  rollout: string;
  /** `sha256:<hex>` of the spec envelope's payload bytes. */
  spec: string;
  seq: number;
  state: RolloutState & { by: string; updatedAt: string };
  trail: RolloutTrailEntry[];
}

/** A state envelope's payload (bytes, text or value) for a rollout of `rings` rings, parsed strictly. */
export function parseRolloutStatePayload(input: Uint8Array | string | unknown, rings: number, what = 'rollout state'): RolloutStatePayload {
  const o = asObject(input instanceof Uint8Array || typeof input === 'string' ? decodeJson(input, what) : input, what);
  rejectUnknownFields(o, STATE_FIELDS, what);
  const spec = stringField(o, 'spec', what, { max: 80 });
  if (!SPEC_DIGEST.test(spec)) throw new HotPatchError('INVALID', `${what}.spec must be sha256:<64 lowercase hex digits>, got ${describe(spec)}`);
  const seq = integerInRange(o.seq, `${what}.seq`, 1);
  const state: RolloutState & { by: string; updatedAt: string } = {
    status: oneOf(o.status, ROLLOUT_STATUSES, `${what}.status`),
    ring: integerInRange(o.ring, `${what}.ring`, 0, rings),
    by: stringField(o, 'by', what, { max: 256 }),
    updatedAt: utcTimestamp(o.updatedAt, `${what}.updatedAt`),
  };
  const ringStartedAt = optional(o.ringStartedAt, (v) => utcTimestamp(v, `${what}.ringStartedAt`));
  if (ringStartedAt !== undefined) state.ringStartedAt = ringStartedAt;
  const healthySince = optional(o.healthySince, (v) => utcTimestamp(v, `${what}.healthySince`));
  if (healthySince !== undefined) state.healthySince = healthySince;
  const reason = stringField(o, 'reason', what, { optional: true });
  if (reason !== undefined) state.reason = reason;
  const actor = stringField(o, 'actor', what, { optional: true, max: 256 });
  if (actor !== undefined) state.actor = actor;
  return { rollout: parseFleetId(o.rollout, `${what}.rollout`), spec, seq, state, trail: parseTrail(o.trail, seq, rings, `${what}.trail`) };
}

/** Earlier states, oldest first: at most MAX_ROLLOUT_TRAIL, their seqs rising and below the state's own. */
function parseTrail(value: unknown, seq: number, rings: number, what: string): RolloutTrailEntry[] {
  if (!Array.isArray(value) || value.length > MAX_ROLLOUT_TRAIL) {
    throw new HotPatchError('INVALID', `${what} must be an array of at most ${MAX_ROLLOUT_TRAIL} entries, got ${describe(value)}`);
  }
  let previous = -1;
  return value.map((raw, i) => {
    const w = `${what}[${i}]`;
    const t = asObject(raw, w);
    rejectUnknownFields(t, TRAIL_FIELDS, w);
    const entry: RolloutTrailEntry = {
      seq: integerInRange(t.seq, `${w}.seq`, previous + 1, seq - 1),
      status: oneOf(t.status, ROLLOUT_STATUSES, `${w}.status`),
      ring: integerInRange(t.ring, `${w}.ring`, 0, rings),
      by: stringField(t, 'by', w, { max: 256 }),
      updatedAt: utcTimestamp(t.updatedAt, `${w}.updatedAt`),
    };
    const reason = stringField(t, 'reason', w, { optional: true, max: MAX_TRAIL_REASON });
    if (reason !== undefined) entry.reason = reason;
    const actor = stringField(t, 'actor', w, { optional: true, max: 256 });
    if (actor !== undefined) entry.actor = actor;
    if (t.signedBy !== undefined) entry.signedBy = trailSigners(t.signedBy, `${w}.signedBy`);
    previous = entry.seq;
    return entry;
  });
}

/** A trail entry's `signedBy`: 1-MAX_TRAIL_SIGNERS distinct key ids. */
function trailSigners(value: unknown, what: string): string[] {
  if (!Array.isArray(value) || value.length === 0 || value.length > MAX_TRAIL_SIGNERS) {
    throw new HotPatchError('INVALID', `${what} must be an array of 1-${MAX_TRAIL_SIGNERS} key ids, got ${describe(value)}`);
  }
  value.forEach((id, i) => {
    if (typeof id !== 'string' || !KEYID.test(id))
      throw new HotPatchError('INVALID', `${what}[${i}] must be a key id (1-128 of [A-Za-z0-9._:@-]), got ${describe(id)}`);
  });
  if (new Set(value).size !== value.length) throw new HotPatchError('INVALID', `${what} lists a key id twice`);
  return [...(value as string[])];
}

const AGENT_FIELDS = ['agentId', 'ring', 'labels', 'targets', 'startedAt'];

/** Parses a stored agent document strictly (the plain, unsigned form). */
export function parseAgentDocument(input: string | unknown): AgentDocument {
  const o = decoded(input, 'agent');
  rejectUnknownFields(o, AGENT_FIELDS, 'agent');
  return agentDocumentOf(o);
}

/**
 * The payload of a signed agent report (agent-report.ts): the agent document plus `seq`, the
 * number of the write (1, 2, … for one run of the agent, which `startedAt`, required here, names).
 */
export function parseAgentReportPayload(input: Uint8Array | string | unknown): { doc: AgentDocument; seq: number } {
  const what = 'agent report';
  const o = asObject(input instanceof Uint8Array || typeof input === 'string' ? decodeJson(input, what) : input, what);
  rejectUnknownFields(o, [...AGENT_FIELDS, 'seq'], what);
  const seq = integerInRange(o.seq, `${what}.seq`, 1);
  if (o.startedAt === undefined) throw new HotPatchError('INVALID', `${what}.startedAt is required: it names the run its seq counts in`);
  return { doc: agentDocumentOf(o), seq };
}

function agentDocumentOf(o: Record<string, unknown>): AgentDocument {
  const targets: Record<string, AgentTargetState> = {};
  for (const [name, value] of Object.entries(asObject(o.targets, 'agent.targets'))) {
    const w = `agent.targets[${JSON.stringify(name)}]`;
    parseTargetName(name, w);
    const t = asObject(value, w);
    rejectUnknownFields(t, ['version', 'phase', 'health', 'patchId', 'rollout', 'reason', 'updatedAt'], w);
    const state: AgentTargetState = {
      version: stringField(t, 'version', w),
      phase: oneOf(t.phase, FLEET_PHASES, `${w}.phase`),
      health: oneOf(t.health, FLEET_HEALTH, `${w}.health`),
      updatedAt: utcTimestamp(t.updatedAt, `${w}.updatedAt`),
    };
    if (t.patchId !== undefined) state.patchId = parsePatchId(t.patchId, `${w}.patchId`);
    if (t.rollout !== undefined) state.rollout = parseFleetId(t.rollout, `${w}.rollout`);
    const reason = stringField(t, 'reason', w, { optional: true });
    if (reason !== undefined) state.reason = reason;
    targets[name] = state;
  }
  const doc: AgentDocument = { agentId: parseFleetId(o.agentId, 'agent.agentId'), ring: parseRing(o.ring, 'agent.ring'), targets };
  if (o.labels !== undefined) doc.labels = parseLabels(o.labels, 'agent.labels');
  const startedAt = optional(o.startedAt, (v) => utcTimestamp(v, 'agent.startedAt'));
  if (startedAt !== undefined) doc.startedAt = startedAt;
  return doc;
}

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
  updatedAt?: string;
}

export interface RolloutDocument {
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
  state: RolloutState;
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

const PAYLOAD_HASH = /^[a-z0-9-]{2,16}:[0-9a-fA-F]{32,128}$/;

/** A stored document: JSON text, or a value already decoded. */
function decoded(input: string | unknown, what: string): Record<string, unknown> {
  return asObject(typeof input === 'string' ? decodeJson(input, what) : input, what);
}

/** Parses a stored rollout document strictly (anyone able to write the store could have written it). */
export function parseRolloutDocument(input: string | unknown): RolloutDocument {
  const what = 'rollout';
  const o = decoded(input, what);
  rejectUnknownFields(o, ['id', 'target', 'patchId', 'version', 'payloadHash', 'rings', 'soakMs', 'emptyRings', 'zdt', 'createdAt', 'state'], what);
  const rings = integerInRange(o.rings, 'rollout.rings', 1, 100);
  const soakMs = integerInRange(o.soakMs, 'rollout.soakMs', 0);
  const payloadHash = stringField(o, 'payloadHash', what);
  if (!PAYLOAD_HASH.test(payloadHash)) throw new HotPatchError('INVALID', `rollout.payloadHash must look like sha256:<hex>, got ${describe(payloadHash)}`);
  const w = 'rollout.state';
  const s = asObject(o.state, w);
  rejectUnknownFields(s, ['status', 'ring', 'ringStartedAt', 'healthySince', 'reason', 'by', 'updatedAt'], w);
  const state: RolloutState = { status: oneOf(s.status, ROLLOUT_STATUSES, `${w}.status`), ring: integerInRange(s.ring, `${w}.ring`, 0, rings) };
  const ringStartedAt = optional(s.ringStartedAt, (v) => utcTimestamp(v, `${w}.ringStartedAt`));
  if (ringStartedAt !== undefined) state.ringStartedAt = ringStartedAt;
  const healthySince = optional(s.healthySince, (v) => utcTimestamp(v, `${w}.healthySince`));
  if (healthySince !== undefined) state.healthySince = healthySince;
  const reason = stringField(s, 'reason', w, { optional: true });
  if (reason !== undefined) state.reason = reason;
  const by = stringField(s, 'by', w, { optional: true });
  if (by !== undefined) state.by = by;
  const updatedAt = optional(s.updatedAt, (v) => utcTimestamp(v, `${w}.updatedAt`));
  if (updatedAt !== undefined) state.updatedAt = updatedAt;
  return {
    id: parseFleetId(o.id, 'rollout.id'),
    target: parseTargetName(o.target, 'rollout.target'),
    patchId: parsePatchId(o.patchId, 'rollout.patchId'),
    version: canonicalVersion(o.version, 'rollout.version'),
    payloadHash,
    rings,
    soakMs,
    emptyRings: o.emptyRings === undefined ? 'wait' : oneOf(o.emptyRings, ['wait', 'skip'] as const, 'rollout.emptyRings'),
    ...(o.zdt === undefined ? {} : { zdt: checkPersistableZdt(o.zdt, 'rollout.zdt') }),
    createdAt: utcTimestamp(o.createdAt, 'rollout.createdAt'),
    state,
  };
}

/** Parses a stored agent document strictly. */
export function parseAgentDocument(input: string | unknown): AgentDocument {
  const what = 'agent';
  const o = decoded(input, what);
  rejectUnknownFields(o, ['agentId', 'ring', 'targets', 'startedAt'], what);
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
  const startedAt = optional(o.startedAt, (v) => utcTimestamp(v, 'agent.startedAt'));
  if (startedAt !== undefined) doc.startedAt = startedAt;
  return doc;
}

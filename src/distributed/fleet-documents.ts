/**
 * The documents of a fleet rollout, as agents and controllers share them through a `KvStore`
 * (the key layout is in fleet-rollout.ts): their types, the key names, and the strict parsers
 * every reader goes through.
 */
import semver from 'semver';
import { HotPatchError, describe, parsePatchId, parseTargetName } from '../core/index.js';
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
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0 || value > 999) {
    throw new HotPatchError('INVALID', `${what} must be an integer from 0 to 999, got ${describe(value)}`);
  }
  return value;
}

const PAYLOAD_HASH = /^[a-z0-9-]{2,16}:[0-9a-fA-F]{32,128}$/;
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/;

/** An object (not null, not an array), or INVALID naming `what`. */
export function object(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new HotPatchError('INVALID', `${what} must be an object, got ${describe(value)}`);
  return value as Record<string, unknown>;
}
function str(o: Record<string, unknown>, field: string, what: string): string {
  const v = o[field];
  if (typeof v !== 'string' || v.length === 0 || v.length > 4096) throw new HotPatchError('INVALID', `${what}.${field} must be a non-empty string, got ${describe(v)}`);
  return v;
}
function optStr(o: Record<string, unknown>, field: string, what: string): string | undefined {
  return o[field] === undefined ? undefined : str(o, field, what);
}
function time(o: Record<string, unknown>, field: string, what: string): string {
  const v = str(o, field, what);
  if (!ISO.test(v) || Number.isNaN(Date.parse(v))) throw new HotPatchError('INVALID', `${what}.${field} must be an RFC 3339 UTC time, got ${JSON.stringify(v)}`);
  return v;
}
function optTime(o: Record<string, unknown>, field: string, what: string): string | undefined {
  return o[field] === undefined ? undefined : time(o, field, what);
}
function oneOf<T extends string>(o: Record<string, unknown>, field: string, allowed: readonly T[], what: string): T {
  const v = o[field];
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
    throw new HotPatchError('INVALID', `${what}.${field} must be one of ${allowed.join(', ')}, got ${describe(v)}`);
  }
  return v as T;
}
function onlyFields(o: Record<string, unknown>, allowed: readonly string[], what: string): void {
  const extra = Object.keys(o).filter((k) => !allowed.includes(k));
  if (extra.length > 0) throw new HotPatchError('INVALID', `${what} has unknown field(s) ${extra.join(', ')}`);
}
function decode(text: string, what: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (cause) {
    throw new HotPatchError('PARSE', `${what} is not JSON: ${(cause as Error).message}`, { cause });
  }
}

function parseVersion(value: unknown, what: string): string {
  if (typeof value !== 'string' || semver.valid(value) !== value) throw new HotPatchError('INVALID', `${what} must be a canonical semver version, got ${describe(value)}`);
  return value;
}

/** Parses a stored rollout document strictly (anyone able to write the store could have written it). */
export function parseRolloutDocument(input: string | unknown): RolloutDocument {
  const what = 'rollout';
  const o = object(typeof input === 'string' ? decode(input, what) : input, what);
  onlyFields(o, ['id', 'target', 'patchId', 'version', 'payloadHash', 'rings', 'soakMs', 'emptyRings', 'zdt', 'createdAt', 'state'], what);
  const rings = o.rings;
  if (typeof rings !== 'number' || !Number.isSafeInteger(rings) || rings < 1 || rings > 100) {
    throw new HotPatchError('INVALID', `rollout.rings must be an integer from 1 to 100, got ${describe(rings)}`);
  }
  const soakMs = o.soakMs;
  if (typeof soakMs !== 'number' || !Number.isSafeInteger(soakMs) || soakMs < 0) {
    throw new HotPatchError('INVALID', `rollout.soakMs must be an integer >= 0, got ${describe(soakMs)}`);
  }
  const payloadHash = str(o, 'payloadHash', what);
  if (!PAYLOAD_HASH.test(payloadHash)) throw new HotPatchError('INVALID', `rollout.payloadHash must look like sha256:<hex>, got ${JSON.stringify(payloadHash)}`);
  const s = object(o.state, 'rollout.state');
  onlyFields(s, ['status', 'ring', 'ringStartedAt', 'healthySince', 'reason', 'by', 'updatedAt'], 'rollout.state');
  const ring = s.ring;
  if (typeof ring !== 'number' || !Number.isSafeInteger(ring) || ring < 0 || ring > rings) {
    throw new HotPatchError('INVALID', `rollout.state.ring must be an integer from 0 to ${rings}, got ${describe(ring)}`);
  }
  const state: RolloutState = { status: oneOf(s, 'status', ROLLOUT_STATUSES, 'rollout.state'), ring };
  const ringStartedAt = optTime(s, 'ringStartedAt', 'rollout.state');
  if (ringStartedAt !== undefined) state.ringStartedAt = ringStartedAt;
  const healthySince = optTime(s, 'healthySince', 'rollout.state');
  if (healthySince !== undefined) state.healthySince = healthySince;
  const reason = optStr(s, 'reason', 'rollout.state');
  if (reason !== undefined) state.reason = reason;
  const by = optStr(s, 'by', 'rollout.state');
  if (by !== undefined) state.by = by;
  const updatedAt = optTime(s, 'updatedAt', 'rollout.state');
  if (updatedAt !== undefined) state.updatedAt = updatedAt;
  return {
    id: parseFleetId(o.id, 'rollout.id'),
    target: parseTargetName(o.target, 'rollout.target'),
    patchId: parsePatchId(o.patchId, 'rollout.patchId'),
    version: parseVersion(o.version, 'rollout.version'),
    payloadHash,
    rings,
    soakMs,
    emptyRings: o.emptyRings === undefined ? 'wait' : oneOf(o, 'emptyRings', ['wait', 'skip'] as const, what),
    ...(o.zdt === undefined ? {} : { zdt: checkPersistableZdt(o.zdt, 'rollout.zdt') }),
    createdAt: time(o, 'createdAt', what),
    state,
  };
}

/** Parses a stored agent document strictly. */
export function parseAgentDocument(input: string | unknown): AgentDocument {
  const what = 'agent';
  const o = object(typeof input === 'string' ? decode(input, what) : input, what);
  onlyFields(o, ['agentId', 'ring', 'targets', 'startedAt'], what);
  const targets: Record<string, AgentTargetState> = {};
  for (const [name, value] of Object.entries(object(o.targets, 'agent.targets'))) {
    const w = `agent.targets[${JSON.stringify(name)}]`;
    parseTargetName(name, w);
    const t = object(value, w);
    onlyFields(t, ['version', 'phase', 'health', 'patchId', 'rollout', 'reason', 'updatedAt'], w);
    const state: AgentTargetState = {
      version: str(t, 'version', w),
      phase: oneOf(t, 'phase', FLEET_PHASES, w),
      health: oneOf(t, 'health', FLEET_HEALTH, w),
      updatedAt: time(t, 'updatedAt', w),
    };
    if (t.patchId !== undefined) state.patchId = parsePatchId(t.patchId, `${w}.patchId`);
    if (t.rollout !== undefined) state.rollout = parseFleetId(t.rollout, `${w}.rollout`);
    const reason = optStr(t, 'reason', w);
    if (reason !== undefined) state.reason = reason;
    targets[name] = state;
  }
  const doc: AgentDocument = { agentId: parseFleetId(o.agentId, 'agent.agentId'), ring: parseRing(o.ring, 'agent.ring'), targets };
  const startedAt = optTime(o, 'startedAt', what);
  if (startedAt !== undefined) doc.startedAt = startedAt;
  return doc;
}

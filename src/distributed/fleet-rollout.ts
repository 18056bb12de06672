/**
 * Fleet rollout by rings: the documents agents and controllers share through a `KvStore`,
 * and the operator's actions on them (create, pause, resume, abort, status).
 *
 * Key layout under a prefix (default `/xps/hotpatch/fleet`, beside the approval keys):
 *   <prefix>/agents/<agentId>   an agent's registration and per-target report; attached to the
 *                               agent's lease, so a dead agent drops out when its TTL runs out
 *   <prefix>/rollouts/<id>      a rollout: what to apply, over how many rings, and its state;
 *                               changed only by compare-and-swap on the whole document
 *   election `<prefix with "/" as ":">:controller` (e.g. `xps:hotpatch:fleet:controller`):
 *                               the one active controller (election names are one key
 *                               segment, so the prefix's slashes become colons)
 *
 * Whoever can write to the store can start or stop a rollout, but never make an agent run an
 * unsigned patch: an order names a patch id, version and payload hash, and each agent fetches
 * and verifies the signed patch itself, refusing one whose manifest differs from the order.
 * A rollout's `zdt` (canary options) is likewise only what a store writer may choose: it can
 * make the canary more or less strict, never change which signed code runs.
 */
import semver from 'semver';
import { HotPatchError, describe, parsePatchId, parseTargetName } from '../core/index.js';
import { checkPersistableZdt, type PersistableZdtOptions } from '../orchestration/index.js';
import type { KeyValue, KvStore } from './kv-store.js';

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

function object(value: unknown, what: string): Record<string, unknown> {
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

// --- operator actions ---

export interface RolloutSpec {
  /** Default: `<patchId>-<base36 time>`. */
  id?: string;
  target: string;
  patchId: string;
  version: string;
  payloadHash: string;
  rings: number;
  soakMs: number;
  /** Default `wait`: a ring with no alive agent holds the rollout (never widen without evidence). */
  emptyRings?: EmptyRingPolicy;
  /** Canary options of every agent's apply (see `RolloutDocument.zdt`); absent: each agent's own. */
  zdt?: PersistableZdtOptions;
}

export interface FleetStoreOptions {
  prefix?: string;
  /** Clock (epoch ms) for the timestamps written; default Date.now. */
  now?: () => number;
}

const iso = (ms: number): string => new Date(ms).toISOString();

/**
 * Creates a rollout in state `running` at ring 0. Refused (INVALID) while another rollout of
 * the same target is not final: one rollout per target at a time, so agents never get two
 * orders for one target.
 */
export async function createRollout(store: KvStore, spec: RolloutSpec, options: FleetStoreOptions = {}): Promise<RolloutDocument> {
  const keys = fleetKeys(options.prefix);
  const now = (options.now ?? Date.now)();
  const input = object(spec, 'rollout spec');
  const patchId = parsePatchId(input.patchId, 'patchId');
  const id = input.id === undefined ? `${patchId.slice(0, 110)}-${now.toString(36)}` : parseFleetId(input.id, 'rollout id');
  const doc = parseRolloutDocument({
    id,
    target: input.target,
    patchId,
    version: input.version,
    payloadHash: input.payloadHash,
    rings: input.rings,
    soakMs: input.soakMs,
    emptyRings: input.emptyRings ?? 'wait',
    ...(input.zdt === undefined ? {} : { zdt: input.zdt }),
    createdAt: iso(now),
    state: { status: 'running', ring: 0, ringStartedAt: iso(now), by: 'operator', updatedAt: iso(now) },
  });
  const busy = (await listRollouts(store, options)).rollouts.find((r) => r.target === doc.target && !FINAL_ROLLOUT_STATUSES.includes(r.state.status));
  if (busy !== undefined) {
    throw new HotPatchError('INVALID', `target ${doc.target} already has rollout ${busy.id} (${busy.state.status}); finish or abort it first`, {
      detail: { rollout: busy.id, status: busy.state.status },
    });
  }
  if (!(await store.create(`${keys.rollouts}${doc.id}`, JSON.stringify(doc)))) {
    throw new HotPatchError('INVALID', `rollout ${doc.id} already exists`);
  }
  return doc;
}

export async function getRollout(store: KvStore, id: string, options: FleetStoreOptions = {}): Promise<RolloutDocument> {
  const keys = fleetKeys(options.prefix);
  const raw = await store.get(`${keys.rollouts}${parseFleetId(id, 'rollout id')}`);
  if (raw === undefined) throw new HotPatchError('NOT_FOUND', `no rollout named ${id}`);
  return parseRolloutDocument(raw);
}

/**
 * Read-modify-CAS on one rollout: `change` returns the new state, or throws to refuse.
 * Retried (bounded) when someone else changed the document in between.
 */
export async function updateRollout(
  store: KvStore,
  id: string,
  change: (doc: RolloutDocument) => RolloutState,
  options: FleetStoreOptions = {},
): Promise<RolloutDocument> {
  const keys = fleetKeys(options.prefix);
  const key = `${keys.rollouts}${parseFleetId(id, 'rollout id')}`;
  for (let attempt = 0; attempt < 20; attempt++) {
    const raw = await store.get(key);
    if (raw === undefined) throw new HotPatchError('NOT_FOUND', `no rollout named ${id}`);
    const doc = parseRolloutDocument(raw);
    const next: RolloutDocument = { ...doc, state: change(doc) };
    if (await store.compareAndSwap(key, raw, JSON.stringify(next))) return next;
  }
  throw new HotPatchError('IO', `rollout ${id} kept changing under 20 attempts to update it`);
}

function operatorState(doc: RolloutDocument, status: RolloutStatus, reason: string, now: number): RolloutState {
  const state: RolloutState = { status, ring: doc.state.ring, reason, by: 'operator', updatedAt: iso(now) };
  if (doc.state.ringStartedAt !== undefined) state.ringStartedAt = doc.state.ringStartedAt;
  return state;
}

function refuse(doc: RolloutDocument, action: string, allowed: readonly RolloutStatus[]): never {
  throw new HotPatchError('INVALID', `cannot ${action} rollout ${doc.id}: it is ${doc.state.status} (only ${allowed.join(' or ')})`, {
    detail: { rollout: doc.id, status: doc.state.status },
  });
}

/** running → paused: no ring opens and no agent starts applying until resumed. */
export function pauseRollout(store: KvStore, id: string, reason = 'paused by operator', options: FleetStoreOptions = {}): Promise<RolloutDocument> {
  return updateRollout(store, id, (doc) => {
    if (doc.state.status !== 'running') refuse(doc, 'pause', ['running']);
    return operatorState(doc, 'paused', reason, (options.now ?? Date.now)());
  }, options);
}

/** paused → running; the current ring's soak starts over. */
export function resumeRollout(store: KvStore, id: string, reason = 'resumed by operator', options: FleetStoreOptions = {}): Promise<RolloutDocument> {
  return updateRollout(store, id, (doc) => {
    if (doc.state.status !== 'paused') refuse(doc, 'resume', ['paused']);
    return operatorState(doc, 'running', reason, (options.now ?? Date.now)());
  }, options);
}

/** running / paused / halted → aborted: every agent that applied the patch rolls it back. */
export function abortRollout(store: KvStore, id: string, reason = 'aborted by operator', options: FleetStoreOptions = {}): Promise<RolloutDocument> {
  const allowed: RolloutStatus[] = ['running', 'paused', 'halted'];
  return updateRollout(store, id, (doc) => {
    if (!allowed.includes(doc.state.status)) refuse(doc, 'abort', allowed);
    return operatorState(doc, 'aborted', reason, (options.now ?? Date.now)());
  }, options);
}

export interface StoredRollout extends RolloutDocument {
  /** The exact stored text (the expected value of a compare-and-swap). */
  readonly raw: string;
  readonly key: string;
}

export interface StoredAgent extends AgentDocument {
  readonly key: string;
}

export interface FleetProblem {
  key: string;
  error: string;
}

export async function listRollouts(store: KvStore, options: FleetStoreOptions = {}): Promise<{ rollouts: StoredRollout[]; problems: FleetProblem[] }> {
  const keys = fleetKeys(options.prefix);
  const out = parseAll(await store.list(keys.rollouts), (kv) => ({ ...parseRolloutDocument(kv.value), raw: kv.value, key: kv.key }), keys.rollouts, 'id');
  return { rollouts: out.items, problems: out.problems };
}

/** Registered agents: a key is present only while its agent's lease lives, so every one listed is alive. */
export async function listAgents(store: KvStore, options: FleetStoreOptions = {}): Promise<{ agents: StoredAgent[]; problems: FleetProblem[] }> {
  const keys = fleetKeys(options.prefix);
  const out = parseAll(await store.list(keys.agents), (kv) => ({ ...parseAgentDocument(kv.value), key: kv.key }), keys.agents, 'agentId');
  return { agents: out.items, problems: out.problems };
}

function parseAll<T extends { id?: string; agentId?: string }>(
  kvs: KeyValue[],
  parse: (kv: KeyValue) => T,
  prefix: string,
  idField: 'id' | 'agentId',
): { items: T[]; problems: FleetProblem[] } {
  const items: T[] = [];
  const problems: FleetProblem[] = [];
  for (const kv of kvs) {
    try {
      const item = parse(kv);
      // The key names the document: a document copied under another key is not believed.
      const name = kv.key.slice(prefix.length);
      if (item[idField] !== name) throw new HotPatchError('INVALID', `document ${idField} ${JSON.stringify(item[idField])} does not match its key`);
      items.push(item);
    } catch (error) {
      problems.push({ key: kv.key, error: error instanceof Error ? error.message : String(error) });
    }
  }
  return { items, problems };
}

export interface FleetStatus {
  /** The active controller's id, if one leads. */
  controller: string | undefined;
  /** Alive agents (their key is present), by ring then id. */
  agents: StoredAgent[];
  /** Rollouts, newest first. */
  rollouts: StoredRollout[];
  /** Stored documents that did not parse (never acted on). */
  problems: FleetProblem[];
}

export async function fleetStatus(store: KvStore, options: FleetStoreOptions = {}): Promise<FleetStatus> {
  const keys = fleetKeys(options.prefix);
  const [agents, rollouts, controller] = await Promise.all([listAgents(store, options), listRollouts(store, options), store.leader(keys.controller)]);
  return {
    controller,
    agents: agents.agents.sort((a, b) => a.ring - b.ring || (a.agentId < b.agentId ? -1 : a.agentId > b.agentId ? 1 : 0)),
    rollouts: rollouts.rollouts.sort(newestFirst),
    problems: [...agents.problems, ...rollouts.problems],
  };
}

/** Newest rollout first (creation time, then id). */
export function newestFirst(a: RolloutDocument, b: RolloutDocument): number {
  if (a.createdAt !== b.createdAt) return a.createdAt < b.createdAt ? 1 : -1;
  return a.id < b.id ? 1 : a.id > b.id ? -1 : 0;
}

/** Whether an agent report shows the rollout's patch running (promoted or activated). */
export function runsRollout(report: AgentTargetState | undefined, rollout: RolloutDocument): boolean {
  return report !== undefined && report.version === rollout.version && report.patchId === rollout.patchId;
}

/** Agent report → ready for the ring to pass: the rollout's version, promoted, healthy. */
export function readyFor(report: AgentTargetState | undefined, rollout: RolloutDocument): boolean {
  return runsRollout(report, rollout) && (report!.phase === 'promoted' || report!.phase === 'activated') && report!.health === 'healthy';
}

/**
 * Agent report → a failure of this rollout: the agent failed to apply it, or runs its patch
 * and is unhealthy. An unhealthy agent running something else is not this rollout's doing.
 */
export function failureOf(report: AgentTargetState | undefined, rollout: RolloutDocument): string | undefined {
  if (report === undefined) return undefined;
  if (report.phase === 'failed' && report.rollout === rollout.id) return report.reason ?? 'apply failed';
  if (report.health === 'unhealthy' && runsRollout(report, rollout)) return report.reason ?? `unhealthy on ${rollout.version}`;
  return undefined;
}

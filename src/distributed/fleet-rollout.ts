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
import { HotPatchError, asObject, messageOf, parsePatchId } from '../core/index.js';
import type { PersistableZdtOptions } from '../orchestration/index.js';
import type { KeyValue, KvStore } from './kv-store.js';
import {
  FINAL_ROLLOUT_STATUSES,
  fleetKeys,
  parseFleetId,
  parseRolloutDocument,
  parseAgentDocument,
  type RolloutStatus,
  type EmptyRingPolicy,
  type RolloutState,
  type RolloutDocument,
  type AgentTargetState,
  type AgentDocument,
  type FleetKeys,
} from './fleet-documents.js';
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
  const input = asObject(spec, 'rollout spec');
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
  return updateRollout(
    store,
    id,
    (doc) => {
      if (doc.state.status !== 'running') refuse(doc, 'pause', ['running']);
      return operatorState(doc, 'paused', reason, (options.now ?? Date.now)());
    },
    options,
  );
}

/** paused → running; the current ring's soak starts over. */
export function resumeRollout(store: KvStore, id: string, reason = 'resumed by operator', options: FleetStoreOptions = {}): Promise<RolloutDocument> {
  return updateRollout(
    store,
    id,
    (doc) => {
      if (doc.state.status !== 'paused') refuse(doc, 'resume', ['paused']);
      return operatorState(doc, 'running', reason, (options.now ?? Date.now)());
    },
    options,
  );
}

/** running / paused / halted → aborted: every agent that applied the patch rolls it back. */
export function abortRollout(store: KvStore, id: string, reason = 'aborted by operator', options: FleetStoreOptions = {}): Promise<RolloutDocument> {
  const allowed: RolloutStatus[] = ['running', 'paused', 'halted'];
  return updateRollout(
    store,
    id,
    (doc) => {
      if (!allowed.includes(doc.state.status)) refuse(doc, 'abort', allowed);
      return operatorState(doc, 'aborted', reason, (options.now ?? Date.now)());
    },
    options,
  );
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
  const out = parseAll(await store.list(keys.rollouts), (kv) => storedRollout(kv, keys));
  return { rollouts: out.items, problems: out.problems };
}

/** Registered agents: a key is present only while its agent's lease lives, so every one listed is alive. */
export async function listAgents(store: KvStore, options: FleetStoreOptions = {}): Promise<{ agents: StoredAgent[]; problems: FleetProblem[] }> {
  const keys = fleetKeys(options.prefix);
  const out = parseAll(await store.list(keys.agents), (kv) => storedAgent(kv, keys));
  return { agents: out.items, problems: out.problems };
}

/** A stored rollout document, parsed; throws (INVALID, PARSE) when it does not parse or its id is not its key's. */
export function storedRollout(kv: Pick<KeyValue, 'key' | 'value'>, keys: FleetKeys): StoredRollout {
  const doc = parseRolloutDocument(kv.value);
  namedByKey(doc.id, kv.key, keys.rollouts, 'id');
  return { ...doc, raw: kv.value, key: kv.key };
}

/** A stored agent document, parsed; throws (INVALID, PARSE) when it does not parse or its id is not its key's. */
export function storedAgent(kv: Pick<KeyValue, 'key' | 'value'>, keys: FleetKeys): StoredAgent {
  const doc = parseAgentDocument(kv.value);
  namedByKey(doc.agentId, kv.key, keys.agents, 'agentId');
  return { ...doc, key: kv.key };
}

/** The key names the document: a document copied under another key is not believed. */
function namedByKey(id: string, key: string, prefix: string, idField: 'id' | 'agentId'): void {
  if (key.slice(prefix.length) !== id) throw new HotPatchError('INVALID', `document ${idField} ${JSON.stringify(id)} does not match its key`);
}

function parseAll<T>(kvs: KeyValue[], parse: (kv: KeyValue) => T): { items: T[]; problems: FleetProblem[] } {
  const items: T[] = [];
  const problems: FleetProblem[] = [];
  for (const kv of kvs) {
    try {
      items.push(parse(kv));
    } catch (error) {
      problems.push({ key: kv.key, error: messageOf(error) });
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

// The documents and their parsers live in fleet-documents.ts; importers of this module see them here too.
export * from './fleet-documents.js';

/**
 * Fleet rollout by rings: the documents agents and controllers share through a `KvStore`,
 * and the operator's actions on them (create, pause, resume, abort, status).
 *
 * Key layout under a prefix (default `/xps/hotpatch/fleet`, beside the approval keys):
 *   <prefix>/agents/<agentId>   an agent's registration and per-target report; attached to the
 *                               agent's lease, so a dead agent drops out when its TTL runs out;
 *                               signed by the agent's own key (agent-report.ts) when it has one
 *   <prefix>/rollouts/<id>      a rollout: what to apply, over how many rings, and its state;
 *                               changed only by compare-and-swap on the whole document
 *   election `<prefix with "/" as ":">:controller` (e.g. `xps:hotpatch:fleet:controller`):
 *                               the one active controller (election names are one key
 *                               segment, so the prefix's slashes become colons)
 *
 * Every rollout is signed (rollout-signing.ts, rollout-verify.ts): its spec by `fleet.threshold`
 * of the trust store's fleet operators, each state by one controller or by operators. A store
 * writer alone can delete a rollout or put back an older signed text, never order a rollout,
 * a ring, a pause, an abort or a rollback. And an order only names a patch: each agent fetches
 * and verifies the signed patch itself, refusing one whose manifest differs from the order.
 * Agent reports, which decide halts and rings, are signed by each agent's key when the trust
 * store has an `agents` role; without one they are taken as stored (the weaker mode).
 */
import { HotPatchError, asObject, describe, messageOf, type Envelope } from '../core/index.js';
import type { CryptoPolicy } from '../crypto-agile/index.js';
import type { TrustStore } from '../verification/index.js';
import type { KeyValue, KvStore } from './kv-store.js';
import {
  FINAL_ROLLOUT_STATUSES,
  OPERATOR,
  fleetKeys,
  parseFleetId,
  type RolloutStatus,
  type RolloutState,
  type RolloutDocument,
  type RolloutSpec,
  type AgentTargetState,
  type AgentDocument,
  type FleetKeys,
} from './fleet-documents.js';
import { readAgentReport } from './agent-report.js';
import { checkSigners, signRolloutSpec, signRolloutState, specDigest, storedRolloutText, type RolloutSigner } from './rollout-signing.js';
import { RolloutVerifier, parseRolloutDocument, readStoredSpec, verifyRolloutDocument } from './rollout-verify.js';

// --- operator actions ---

export interface FleetStoreOptions {
  prefix?: string;
  /** Clock (epoch ms) for the timestamps written; default Date.now. */
  now?: () => number;
  /**
   * The trust store rollouts are verified against (its `fleet` and `controllers` roles), and,
   * when it has an `agents` role, agent reports (agent-report.ts). Reads without it
   * (`getRollout`, `listRollouts`, `listAgents`, `fleetStatus`) show what is stored, unverified.
   */
  trust?: TrustStore;
  /** Algorithm policy of the signature checks (default: the built-in one). */
  cryptoPolicy?: CryptoPolicy;
}

/** What an operator's write needs: the trust store, and the operators' keys to sign with. */
export interface RolloutActionOptions extends FleetStoreOptions {
  trust: TrustStore;
  /** Fleet operators' keys: enough of them for the fleet's threshold (stopThreshold for pause and abort). */
  signers: readonly RolloutSigner[];
  /** The operator's own `user@host`, recorded in the state (not trusted: anyone can claim a name). */
  actor?: string;
}

const iso = (ms: number): string => new Date(ms).toISOString();
/** How far in the future a rollout's creation time may lie (agents ignore one dated later). */
export const FUTURE_SKEW_MS = 60_000;

function requireTrust(options: FleetStoreOptions, what: string): TrustStore {
  if (options.trust === undefined) throw new HotPatchError('INVALID', `${what} needs options.trust: rollouts are verified against its fleet role`);
  return options.trust;
}

/**
 * Signs `spec` with `options.signers` and submits it (`submitRollout`): a rollout in state
 * `running` at ring 0. Refused before anything is written when the signatures do not meet
 * the fleet's threshold for the target.
 */
export async function createRollout(store: KvStore, spec: RolloutSpec, options: RolloutActionOptions): Promise<RolloutDocument> {
  requireTrust(options ?? {}, 'createRollout');
  const input = asObject(spec, 'rollout spec');
  const createdAt = iso((options.now ?? Date.now)());
  const prefix = fleetKeys(options.prefix).prefix;
  return submitRollout(
    store,
    signRolloutSpec({ ...(input as unknown as RolloutSpec), createdAt, prefix }, checkSigners(options.signers, 'options.signers')),
    options,
  );
}

/**
 * Stores a signed rollout spec (from `signRolloutSpec`, perhaps signed by several operators
 * with `addRolloutSpecSignature`) after verifying it as every agent will. Refused (INVALID)
 * while another rollout of the same target is not final: one rollout per target at a time,
 * so agents never get two orders for one target.
 */
export async function submitRollout(store: KvStore, envelope: Envelope, options: FleetStoreOptions & { trust: TrustStore }): Promise<RolloutDocument> {
  const trust = requireTrust(options ?? {}, 'submitRollout');
  const keys = fleetKeys(options.prefix);
  const e = asObject(envelope, 'rollout spec envelope');
  const signatures = Array.isArray(e.signatures) ? (e.signatures as unknown[]) : undefined;
  if (
    !(e.payload instanceof Uint8Array) ||
    typeof e.payloadType !== 'string' ||
    signatures?.every((x) => asObject(x, 'signature').sig instanceof Uint8Array) !== true
  ) {
    throw new HotPatchError('INVALID', 'the rollout spec envelope must be an Envelope as signRolloutSpec returns it (decodeEnvelope reads one from JSON)');
  }
  const text = storedRolloutText(envelope);
  const doc = verifyRolloutDocument(text, trust, options.cryptoPolicy, keys.prefix);
  const now = (options.now ?? Date.now)();
  if (Date.parse(doc.createdAt) > now + FUTURE_SKEW_MS) {
    throw new HotPatchError('INVALID', `rollout ${doc.id} is dated ${doc.createdAt}, in the future: agents would ignore it`);
  }
  if (Date.parse(doc.expiresAt) <= now) {
    throw new HotPatchError('EXPIRED', `rollout ${doc.id} expired at ${doc.expiresAt}: no agent would start it`);
  }
  const busy = (await listRollouts(store, options)).rollouts.find((r) => r.target === doc.target && !FINAL_ROLLOUT_STATUSES.includes(r.state.status));
  if (busy !== undefined) {
    throw new HotPatchError('INVALID', `target ${doc.target} already has rollout ${busy.id} (${busy.state.status}); finish or abort it first`, {
      detail: { rollout: busy.id, status: busy.state.status },
    });
  }
  if (!(await store.create(`${keys.rollouts}${doc.id}`, text))) {
    throw new HotPatchError('INVALID', `rollout ${doc.id} already exists`);
  }
  return doc;
}

/** One rollout: verified when `options.trust` is given, else as stored (unverified). */
export async function getRollout(store: KvStore, id: string, options: FleetStoreOptions = {}): Promise<RolloutDocument> {
  const keys = fleetKeys(options.prefix);
  const raw = await store.get(`${keys.rollouts}${parseFleetId(id, 'rollout id')}`);
  if (raw === undefined) throw new HotPatchError('NOT_FOUND', `no rollout named ${id}`);
  return readRollout(raw, options, keys.prefix);
}

/** Verified against `options.trust` (a spec signed for another prefix than `prefix` refused), else as stored. */
function readRollout(raw: string, options: Pick<FleetStoreOptions, 'trust' | 'cryptoPolicy'>, prefix: string): RolloutDocument {
  return options.trust === undefined ? parseRolloutDocument(raw) : verifyRolloutDocument(raw, options.trust, options.cryptoPolicy, prefix);
}

/**
 * Read-verify-sign-CAS on one rollout, as operators: `change` returns the new state (its
 * `by`, `actor` and `updatedAt` are set here), or throws to refuse. The new state is signed
 * by `options.signers` and verified before it is written (too few signatures: nothing is
 * written). Retried (bounded) when someone else changed the document in between.
 */
export function updateRollout(
  store: KvStore,
  id: string,
  change: (doc: RolloutDocument) => RolloutState,
  options: RolloutActionOptions,
): Promise<RolloutDocument> {
  return writeOperatorState(store, id, change, options, false);
}

/**
 * `updateRollout`; with `overDamagedState`, a stored state that does not verify (a store
 * writer's) is written over as if the spec stood alone (seq 0, running at ring 0), provided
 * the spec verifies: how an abort still reaches agents (they take an operators' abort
 * whatever its seq, rollout-replay.ts).
 */
async function writeOperatorState(
  store: KvStore,
  id: string,
  change: (doc: RolloutDocument) => RolloutState,
  options: RolloutActionOptions,
  overDamagedState: boolean,
): Promise<RolloutDocument> {
  const trust = requireTrust(options ?? {}, 'updateRollout');
  const signers = checkSigners(options.signers, 'options.signers');
  if (options.actor !== undefined && (typeof options.actor !== 'string' || options.actor.length === 0 || options.actor.length > 256)) {
    throw new HotPatchError('INVALID', `options.actor must be a string of 1-256 characters, got ${describe(options.actor)}`);
  }
  const keys = fleetKeys(options.prefix);
  const key = `${keys.rollouts}${parseFleetId(id, 'rollout id')}`;
  for (let attempt = 0; attempt < 20; attempt++) {
    const raw = await store.get(key);
    if (raw === undefined) throw new HotPatchError('NOT_FOUND', `no rollout named ${id}`);
    const spec = readStoredSpec(raw);
    let doc: RolloutDocument;
    try {
      doc = verifyRolloutDocument(raw, trust, options.cryptoPolicy, keys.prefix);
    } catch (error) {
      if (!overDamagedState) throw error;
      doc = verifyRolloutDocument(storedRolloutText(spec), trust, options.cryptoPolicy, keys.prefix);
    }
    const state: RolloutState = { ...change(doc), by: OPERATOR, updatedAt: iso((options.now ?? Date.now)()) };
    if (options.actor !== undefined) state.actor = options.actor;
    const text = storedRolloutText(spec, signRolloutState(doc, specDigest(spec), state, signers));
    const next = verifyRolloutDocument(text, trust, options.cryptoPolicy, keys.prefix);
    if (await store.compareAndSwap(key, raw, text)) return next;
  }
  throw new HotPatchError('IO', `rollout ${id} kept changing under 20 attempts to update it`);
}

function operatorState(doc: RolloutDocument, status: RolloutStatus, reason: string): RolloutState {
  const state: RolloutState = { status, ring: doc.state.ring, reason };
  if (doc.state.ringStartedAt !== undefined) state.ringStartedAt = doc.state.ringStartedAt;
  return state;
}

function refuse(doc: RolloutDocument, action: string, allowed: readonly RolloutStatus[]): never {
  throw new HotPatchError('INVALID', `cannot ${action} rollout ${doc.id}: it is ${doc.state.status} (only ${allowed.join(' or ')})`, {
    detail: { rollout: doc.id, status: doc.state.status },
  });
}

/** running → paused (signed by the fleet's stopThreshold): no ring opens and no agent starts applying until resumed. */
export function pauseRollout(store: KvStore, id: string, reason = 'paused by operator', options: RolloutActionOptions): Promise<RolloutDocument> {
  return updateRollout(
    store,
    id,
    (doc) => {
      if (doc.state.status !== 'running') refuse(doc, 'pause', ['running']);
      return operatorState(doc, 'paused', reason);
    },
    options,
  );
}

/** paused → running (signed by the fleet's full threshold); the current ring's soak starts over. */
export function resumeRollout(store: KvStore, id: string, reason = 'resumed by operator', options: RolloutActionOptions): Promise<RolloutDocument> {
  return updateRollout(
    store,
    id,
    (doc) => {
      if (doc.state.status !== 'paused') refuse(doc, 'resume', ['paused']);
      return operatorState(doc, 'running', reason);
    },
    options,
  );
}

/**
 * running / paused / halted → aborted (signed by the fleet's stopThreshold): every agent that
 * applied the patch rolls it back. Works over a stored state that does not verify (see
 * `writeOperatorState`), as long as the spec does.
 */
export function abortRollout(store: KvStore, id: string, reason = 'aborted by operator', options: RolloutActionOptions): Promise<RolloutDocument> {
  const allowed: RolloutStatus[] = ['running', 'paused', 'halted'];
  return writeOperatorState(
    store,
    id,
    (doc) => {
      if (!allowed.includes(doc.state.status)) refuse(doc, 'abort', allowed);
      return operatorState(doc, 'aborted', reason);
    },
    options,
    true,
  );
}

export interface StoredRollout extends RolloutDocument {
  /** The exact stored text (the expected value of a compare-and-swap). */
  readonly raw: string;
  readonly key: string;
}

export interface StoredAgent extends AgentDocument {
  readonly key: string;
  /** The report's number in the agent's run (`startedAt`), when it is stored signed. */
  readonly seq?: number;
  /**
   * The key id whose signature was verified against the trust store's `agents` role (the
   * agent's own); absent when no signature was checked (no agents role: the weaker mode).
   */
  readonly signedBy?: string;
}

export interface FleetProblem {
  key: string;
  error: string;
}

/** Rollouts as stored: verified when `options.trust` is given (one that does not verify is a problem), else unverified. */
export async function listRollouts(store: KvStore, options: FleetStoreOptions = {}): Promise<{ rollouts: StoredRollout[]; problems: FleetProblem[] }> {
  const keys = fleetKeys(options.prefix);
  const out = parseAll(await store.list(keys.rollouts), (kv) => storedRollout(kv, keys, options));
  return { rollouts: out.items, problems: out.problems };
}

/**
 * Registered agents: a key is present only while its agent's lease lives, so every one listed
 * is alive. With `options.trust` holding an `agents` role, a report not signed by its agent's
 * key is a problem, not an agent.
 */
export async function listAgents(store: KvStore, options: FleetStoreOptions = {}): Promise<{ agents: StoredAgent[]; problems: FleetProblem[] }> {
  const keys = fleetKeys(options.prefix);
  const out = parseAll(await store.list(keys.agents), (kv) => storedAgent(kv, keys, options));
  return { agents: out.items, problems: out.problems };
}

/**
 * A stored rollout document, verified against `options.trust` or by a `RolloutVerifier`
 * (unverified without either); throws (INVALID, PARSE, a signature code) when it does not
 * verify or its id is not its key's.
 */
export function storedRollout(
  kv: Pick<KeyValue, 'key' | 'value'>,
  keys: FleetKeys,
  options: Pick<FleetStoreOptions, 'trust' | 'cryptoPolicy'> | RolloutVerifier = {},
): StoredRollout {
  const doc = options instanceof RolloutVerifier ? options.verify(kv.value) : readRollout(kv.value, options, keys.prefix);
  namedByKey(doc.id, kv.key, keys.rollouts, 'id');
  return { ...doc, raw: kv.value, key: kv.key };
}

/**
 * A stored agent report, read (and verified when `options.trust` has an `agents` role:
 * agent-report.ts); throws (INVALID, PARSE, a signature code) when it does not parse, does not
 * verify, or its agentId is not its key's.
 */
export function storedAgent(
  kv: Pick<KeyValue, 'key' | 'value'>,
  keys: FleetKeys,
  options: Pick<FleetStoreOptions, 'trust' | 'cryptoPolicy'> = {},
): StoredAgent {
  const { doc, seq, signedBy } = readAgentReport(kv.value, options.trust, options.cryptoPolicy);
  namedByKey(doc.agentId, kv.key, keys.agents, 'agentId');
  return { ...doc, key: kv.key, ...(seq === undefined ? {} : { seq }), ...(signedBy === undefined ? {} : { signedBy }) };
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
  /** Stored documents that did not parse, or (with a trust store) did not verify: never acted on. */
  problems: FleetProblem[];
}

/**
 * Agents, rollouts and the leading controller; with `options.trust`, a rollout that does not
 * verify is listed in `problems`, and so is an agent report when the trust store's `agents`
 * role says it must be signed and it is not (by its agent's key).
 */
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

// The documents and their parsers live in fleet-documents.ts, the signed form in
// rollout-signing.ts, rollout-verify.ts and agent-report.ts; importers of this module see them here too.
export * from './agent-report.js';
export * from './fleet-documents.js';
export * from './rollout-signing.js';
export * from './rollout-verify.js';

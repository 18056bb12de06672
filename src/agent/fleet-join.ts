import { hostname } from 'node:os';
import { HotPatchError, asObject, describe, isPatchId, messageOf, rejectUnknownFields } from '../core/index.js';
import {
  FleetMember,
  checkAgentSigner,
  openStore,
  parseFleetId,
  fleetStatus,
  parseLabels,
  parseRing,
  plannerFleetHooks,
  readPrivateKeyFile,
  type FleetStatus,
  type KvStore,
  type PlannerFleetHooksOptions,
  type RolloutOrder,
  type RolloutSigner,
} from '../distributed/index.js';
import type { Planner } from '../orchestration/index.js';
import { readFileBounded } from '../repo/index.js';
import { parseTrustStore, type TrustStore } from '../verification/index.js';
import type { ActionRecorder } from './operator-record.js';

/** `startAgent({ fleet })`: the agent joins a fleet and follows its signed rollouts through its own Planner. */
export interface AgentFleetOptions {
  /** `etcd://host:port[,host:port…]`, `file:/dir` (the embedded store, one host), or an open `KvStore` (not closed by the agent). */
  store: string | KvStore;
  /** The agent's ring (0 = canary hosts). */
  ring: number;
  /** Default: the host name, with characters outside [A-Za-z0-9._-] replaced by "-". Unique in the fleet. */
  agentId?: string;
  /**
   * Written in the agent's registration and shown by `fleet status` (e.g. `{ "zone": "eu-1" }`):
   * at most 16, names 1-64 of [A-Za-z0-9._-], values 1-64 printable ASCII characters.
   */
  labels?: Record<string, string>;
  /** Key prefix of the fleet (default `/xps/hotpatch/fleet`). */
  prefix?: string;
  /**
   * The trust store whose `fleet` and `controllers` roles sign rollouts (default: the agent's
   * `defaults.trustStore`). Rollouts it cannot verify are never acted on. When it has an
   * `agents` role, this agent's reports count only signed with its key (`key`), which is then required.
   */
  trustStore?: string;
  /**
   * The agent's private key file (PKCS#8 PEM, mode 0600): every report the agent writes is
   * signed with it, under its agent id as key id. With an `agents` role in the trust store it
   * must be that role's key of this agent id.
   */
  key?: string;
  /** The registered components of each rollout's plan (default `default` each); `approver` makes every host wait for its approval quorum. */
  components?: PlannerFleetHooksOptions['components'];
  /** Registration lease TTL (default 10 s), report polling (default 1 s), full re-read (default 30 s). */
  leaseTtlMs?: number;
  reportIntervalMs?: number;
  resyncMs?: number;
  /** The fleet's health rule over the active version's calls (default 1 % over at least 20 calls). */
  maxErrorRate?: number;
  minCalls?: number;
}

export interface AgentFleet {
  readonly agentId: string;
  readonly ring: number;
  readonly prefix: string;
  readonly member: FleetMember;
  /** The fleet as its store holds it: agents by ring with their per-target reports, rollouts, the leading controller (rollouts verified against the trust store). */
  status(): Promise<FleetStatus>;
  stop(): Promise<void>;
}

const FIELDS = [
  'store',
  'ring',
  'agentId',
  'labels',
  'prefix',
  'trustStore',
  'key',
  'components',
  'leaseTtlMs',
  'reportIntervalMs',
  'resyncMs',
  'maxErrorRate',
  'minCalls',
] as const;

/** The host name as an agent id (the fleet's ids follow the patch-id rule). */
export function defaultAgentId(): string {
  const id = hostname()
    .replace(/[^A-Za-z0-9._-]/g, '-')
    .replace(/\.\.+/g, '.')
    .replace(/^[^A-Za-z0-9]+/, '')
    .slice(0, 128);
  if (!isPatchId(id)) throw new HotPatchError('INVALID', `the host name ${describe(hostname())} cannot be an agent id: set fleet.agentId`);
  return id;
}

/** Fleet options checked, the trust store and the agent's key read, the agent id settled: before the agent claims or touches anything. */
export interface PreparedFleet {
  readonly options: AgentFleetOptions;
  readonly trust: TrustStore;
  readonly agentId: string;
  /** The agent's key (`fleet.key`), checked against the trust store's agents role when it has one. */
  readonly signer: RolloutSigner | undefined;
}

/**
 * Checks the `fleet` options (unknown fields, the agent id, the ring, the labels) and reads the trust store
 * that signs rollouts, refusing one without a `fleet` role (no rollout could ever verify), and the agent's
 * key, refusing one that is unreadable, readable by others, or not the agents role's key of this agent id.
 */
export async function prepareFleet(options: AgentFleetOptions, defaultTrustStore: string | undefined): Promise<PreparedFleet> {
  const o = asObject(options, 'fleet');
  rejectUnknownFields(o, FIELDS, 'fleet');
  const trustFile = options.trustStore ?? defaultTrustStore;
  if (trustFile === undefined) {
    throw new HotPatchError('INVALID', 'fleet: a trust store is needed to verify rollouts (fleet.trustStore, or defaults.trustStore)');
  }
  const trust = parseTrustStore(await readFileBounded(trustFile, 1024 * 1024, { noFollow: false, what: 'trust store' }));
  if (trust.fleet === undefined) {
    throw new HotPatchError(
      'INVALID',
      `fleet: the trust store ${trustFile} has no "fleet" role (the operators who sign rollouts): no rollout could be verified`,
    );
  }
  const agentId = options.agentId === undefined ? defaultAgentId() : parseFleetId(options.agentId, 'fleet.agentId');
  parseRing(options.ring, 'fleet.ring');
  if (options.labels !== undefined) parseLabels(options.labels, 'fleet.labels');
  if (typeof options.store !== 'string' && (typeof options.store !== 'object' || options.store === null)) {
    throw new HotPatchError('INVALID', `fleet.store must be a store spec (etcd://…, file:…) or a KvStore, got ${describe(options.store)}`);
  }
  if (options.key !== undefined && (typeof options.key !== 'string' || options.key.length === 0)) {
    throw new HotPatchError('INVALID', `fleet.key must be the path of the agent's private key file, got ${describe(options.key)}`);
  }
  const privateKey = options.key === undefined ? undefined : await readPrivateKeyFile(options.key, 'fleet.key');
  const signer = checkAgentSigner(trust, agentId, privateKey === undefined ? undefined : { keyid: agentId, privateKey }, 'fleet.key');
  return { options, trust, agentId, signer };
}

/**
 * Joins the fleet: opens the store and starts a `FleetMember` whose apply / rollback go
 * through this agent's Planner. Each order is recorded in the agent's audit log (a
 * `Requested` event, credential `fleet-rollout`, with the rollout, its signers and the
 * operator's declared identity) before the agent acts on it.
 */
export async function joinFleet(prepared: PreparedFleet, planner: Planner, record: ActionRecorder, onError: (error: unknown) => void): Promise<AgentFleet> {
  const { options, trust, agentId, signer } = prepared;
  const opened = typeof options.store === 'string';
  const store = typeof options.store === 'string' ? await openStore(options.store) : options.store;
  try {
    const onOrder = async (order: RolloutOrder, action: 'apply' | 'rollback'): Promise<void> => {
      await record({ credential: 'fleet-rollout', ...(order.state.actor === undefined ? {} : { actor: order.state.actor }) }, `fleet-${action}`, order.target, {
        patch: order.patchId,
        rollout: order.id,
        version: order.version,
        payloadHash: order.payloadHash,
        status: order.state.status,
        ring: order.state.ring,
        seq: order.seq,
        signers: order.signers,
        stateSigners: order.stateSigners,
      });
    };
    const hooks = plannerFleetHooks(planner, {
      ...(options.components === undefined ? {} : { components: options.components }),
      ...(options.maxErrorRate === undefined ? {} : { maxErrorRate: options.maxErrorRate }),
      ...(options.minCalls === undefined ? {} : { minCalls: options.minCalls }),
      onOrder,
    });
    const member = new FleetMember({
      store,
      agentId,
      ring: options.ring,
      trust,
      ...(signer === undefined ? {} : { signer }),
      ...(options.labels === undefined ? {} : { labels: options.labels }),
      ...(options.prefix === undefined ? {} : { prefix: options.prefix }),
      ...(options.leaseTtlMs === undefined ? {} : { leaseTtlMs: options.leaseTtlMs }),
      ...(options.reportIntervalMs === undefined ? {} : { reportIntervalMs: options.reportIntervalMs }),
      ...(options.resyncMs === undefined ? {} : { resyncMs: options.resyncMs }),
      ...hooks,
      onError,
    });
    await member.start();
    return {
      agentId: member.agentId,
      ring: member.ring,
      prefix: member.keys.prefix,
      member,
      status: () => fleetStatus(store, { prefix: member.keys.prefix, trust }),
      async stop() {
        try {
          await member.stop();
        } finally {
          if (opened) await store.close();
        }
      },
    };
  } catch (error) {
    if (opened) await store.close().catch((e: unknown) => onError(new HotPatchError('IO', `closing the fleet store: ${messageOf(e)}`)));
    throw error;
  }
}

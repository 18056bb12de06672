import { createServer, type Server } from 'node:http';
import { connect } from 'node:net';
import { chmod, lstat, mkdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { HotPatchError, Registries, emitRedactedWarning, messageOf, positiveInteger, registerSecret, type EventBus } from '../core/index.js';
import { openDecryptionKeys, type AgentDecryptionKey } from './decryption-keys.js';
import { RecentEvents } from './recent-events.js';
import { DynamicInstaller } from '../installer/index.js';
import { AuditLog, HotPatchMetrics, createLogger, logEvents } from '../observability/index.js';
import { Planner, type PlannerOptions } from '../orchestration/index.js';
import { openRepository, readFileBounded, type RepositoryLocation } from '../repo/index.js';
import { SecurityGate } from '../security/index.js';
import { DefaultVerifier, INDEX_FLOOR_FILE, IndexedRepository, parseTrustStore } from '../verification/index.js';
import { HotPatchRuntime } from '../zero-downtime/index.js';
import { joinFleet, prepareFleet, type AgentFleet, type AgentFleetOptions } from './fleet-join.js';
import { AUDIT_MODES, actionRecorder, requestRecorder, type AuditMode } from './operator-record.js';
import type { AgentContext } from './routes.js';
import { requestHandler } from './serve.js';
import { lockStateDir } from './state-lock.js';
import { readAgentTokens, type HttpTokenOption } from './token.js';

export type { HttpTokenOption } from './token.js';
export type { AgentDecryptionKey } from './decryption-keys.js';
export type { AgentFleet, AgentFleetOptions } from './fleet-join.js';

export interface AgentOptions {
  /** State directory: state.json, staging/, manifests/, journal.json, audit.log, agent.sock. */
  stateDir: string;
  /** The host's runtime with its targets declared; default: a new one on `stateDir`. */
  runtime?: HotPatchRuntime;
  /**
   * The keys the agent decrypts encrypted payloads with (added to the runtime's DynamicInstaller
   * for the agent's lifetime, or given to the one it creates): recipient private key files
   * (PEM, 0600), keys on a PKCS#11 token (`{pkcs11: {module, token, keyLabel, pinFile}}`, the PIN
   * file 0600; the session closes with the agent), or providers (a remote KMS: `RemoteUnwrapProvider`).
   */
  decryptionKeys?: readonly AgentDecryptionKey[];
  registries?: Registries;
  /** Unix socket of the admin endpoint (default `<stateDir>/agent.sock`, mode 0600). */
  socketPath?: string;
  /**
   * Serve on loopback HTTP instead, with bearer tokens read from 0600 files (at least one):
   * `tokens` names each one and gives it a role (`operate`: everything; `read`: status,
   * plans, events, metrics), and every request it makes is recorded under its name.
   * `tokenFile` is the token named "operator" (role operate), `readTokenFile` the one named
   * "read" (role read). Names and tokens must all be distinct.
   */
  http?: { port?: number; host?: '127.0.0.1' | '::1' | 'localhost'; tokenFile?: string; readTokenFile?: string; tokens?: readonly HttpTokenOption[] };
  /**
   * Registers components named "default": a repository (a directory, or an http(s):// URL, or
   * a list of them: mirrors tried by priority), a verifier over this trust store file, and a
   * security gate (from the policy file, or the default gate). A trust store with an `index`
   * role makes the repository one read through its signed index (`IndexedRepository`).
   */
  defaults?: { repository?: string | readonly RepositoryLocation[]; trustStore?: string; policy?: string };
  /** Structured JSON logs of every event (default: to stderr at info; false: none). */
  log?: { destination?: NodeJS.WritableStream | number; level?: string } | false;
  /** Requests handled at once, event streams apart; one more is refused with 503 (default 64). */
  maxRequestsInFlight?: number;
  /** Event streams (`GET /v1/events`) open at once; one more is refused with 503 (default 64). */
  maxEventStreams?: number;
  /** A stream whose unsent events pass this many bytes (a client not reading) is closed (default 1 MiB). */
  maxEventBacklogBytes?: number;
  /**
   * `'fail-closed'` (default): an operator request whose record cannot be written to the audit
   * log is refused, and an apply whose events cannot be recorded is aborted (back to the
   * running version) — nothing proceeds unrecorded. `'fail-open'`: both go on; the records
   * are written, in order, once the log can be.
   */
  auditMode?: AuditMode;
  /** The planner's crash-loop limit, finished plans kept and open plans allowed (see `PlannerOptions`). */
  maxApplyCrashes?: number;
  keepFinishedPlans?: number;
  maxOpenPlans?: number;
  /**
   * Join a fleet: register with a lease in the store, report each target's version, phase and
   * health, and apply the fleet's signed rollouts through this agent's own Planner (README
   * "Fleets").
   */
  fleet?: AgentFleetOptions;
}

export interface Agent {
  readonly runtime: HotPatchRuntime;
  readonly planner: Planner;
  readonly bus: EventBus;
  readonly metrics: HotPatchMetrics;
  readonly audit: AuditLog;
  /** `unix:<path>` or `http://127.0.0.1:<port>`: what `hotpatch --agent` takes. */
  readonly address: string;
  /** The fleet membership, when started with `fleet`. */
  readonly fleet: AgentFleet | undefined;
  close(): Promise<void>;
}

/**
 * Embeds the admin endpoint in a host process: restores the persisted versions, recovers
 * interrupted plans from the journal, appends every event to the audit log, and serves
 * status / plans / apply / promote / abort / rollback / freeze / events / metrics.
 */
export async function startAgent(options: AgentOptions): Promise<Agent> {
  const stateDir = options.stateDir;
  const host = options.http?.host ?? '127.0.0.1';
  if (options.http !== undefined && !LOOPBACK_HOSTS.includes(host)) {
    throw new HotPatchError('INVALID', `the agent's HTTP endpoint serves loopback only (${LOOPBACK_HOSTS.join(', ')}), not ${String(host)}`);
  }
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  if (options.runtime !== undefined && options.decryptionKeys !== undefined && !(options.runtime.installer instanceof DynamicInstaller)) {
    throw new HotPatchError('INVALID', "decryptionKeys need the runtime's installer to be a DynamicInstaller (they are tried while it stages)");
  }
  // Everything opened so far, undone in reverse if the start fails halfway.
  const undo: (() => Promise<void> | void)[] = [];
  let runtime: HotPatchRuntime;
  try {
    const decryptionKeys = await openDecryptionKeys(options.decryptionKeys ?? [], undo);
    runtime = options.runtime ?? new HotPatchRuntime({ stateDir, installer: new DynamicInstaller(stateDir, { decryptionKeys }) });
    // The host's own installer: the keys are added to it for the agent's lifetime.
    if (options.runtime !== undefined && runtime.installer instanceof DynamicInstaller && decryptionKeys.length > 0) {
      undo.push(runtime.installer.addDecryptionKeys(decryptionKeys));
    }
    if (runtime.stateDir === undefined || runtime.installer === undefined) {
      throw new HotPatchError('INVALID', 'the agent needs a runtime created with stateDir and installer');
    }
  } catch (error) {
    await undoAll(undo, error);
    throw error;
  }

  try {
    // Check the options and claim first — tokens, the state directory, the listening address —
    // and only then touch any state: a refused start must not restore, journal or audit anything.
    const maxRequestsInFlight = positiveInteger(options.maxRequestsInFlight ?? 64, 'maxRequestsInFlight');
    const maxEventStreams = positiveInteger(options.maxEventStreams ?? 64, 'maxEventStreams');
    const auditMode = options.auditMode ?? 'fail-closed';
    if (!AUDIT_MODES.includes(auditMode)) throw new HotPatchError('INVALID', `auditMode must be one of ${AUDIT_MODES.join(', ')}, got ${String(auditMode)}`);
    const plannerOptions = plannerLimits(options);
    const fleetPlan = options.fleet === undefined ? undefined : await prepareFleet(options.fleet, options.defaults?.trustStore);
    const tokens = options.http === undefined ? undefined : await readAgentTokens(options.http);
    // The tokens are cut out of every message the agent records (a payload may read the file).
    for (const t of tokens ?? []) undo.push(registerSecret(t.token));
    const lock = await lockStateDir(stateDir);
    undo.push(() => lock.release());
    let ctx: AgentContext | undefined;
    const server = createServer(requestHandler({ tokens, maxRequestsInFlight, ...(options.http === undefined ? {} : { ownHost: host }) }, () => ctx));
    limitConnections(server, maxRequestsInFlight + maxEventStreams);
    let address: string;
    if (options.http !== undefined) {
      await listen(server, { port: options.http.port ?? 0, host });
      undo.push(() => closeServer(server));
      const info = server.address();
      if (info === null || typeof info === 'string') throw new HotPatchError('IO', 'the agent HTTP server has no address');
      address = `http://${host.includes(':') ? `[${host}]` : host}:${info.port}`;
    } else {
      const path = options.socketPath ?? join(stateDir, 'agent.sock');
      await removeStaleSocket(path);
      await listen(server, { path });
      undo.push(async () => {
        await closeServer(server);
        await unlinkIfPresent(path);
      });
      // The state directory is 0700 already; the socket itself is narrowed to its owner too.
      await chmod(path, 0o600);
      address = `unix:${path}`;
    }

    const bus = runtime.bus;
    const registries = options.registries ?? new Registries();
    if (!registries.installers.has('default')) registries.installers.register('default', runtime.installer);
    await registerDefaults(registries, options.defaults, stateDir);

    // Audit before restore and recovery, so their events are recorded too.
    const audit = new AuditLog(stateDir, runtime.store === undefined ? {} : { store: runtime.store });
    await audit.open();
    // Requested records are appended (and awaited) by the endpoint before it acts.
    const detachAudit = audit.attach(bus, {
      except: ['Requested'],
      onFailure: (event) => {
        if (auditMode !== 'fail-closed') return;
        // Nothing proceeds unrecorded: an apply whose events cannot be written goes back to the running version.
        const target = runtime.list().find((t) => t.name === event.target);
        if (target?.applying !== undefined)
          target.abort(
            `the audit log cannot be written (${audit.failure?.message ?? 'I/O error'}); aborted so that nothing proceeds unrecorded (auditMode "fail-closed")`,
          );
      },
    });
    // The whole chain of what the log held is read off the start path (a long log must not hold
    // the start); the status and hotpatch_audit_chain_ok report it once read.
    const chainChecked = audit.checkChain();
    undo.push(async () => {
      detachAudit();
      await audit.close(); // stops the chain check if it is still reading
      await chainChecked;
    });
    // Logs go to stderr by default: stdout is the host's own.
    const logger = options.log === false ? undefined : createLogger({ destination: 2, ...(options.log ?? {}) });
    const detachLog = logger === undefined ? () => {} : logEvents(bus, logger);
    undo.push(detachLog);
    const metrics = new HotPatchMetrics({ runtime, bus, audit });
    undo.push(() => metrics.close());
    const recent = new RecentEvents(bus);
    undo.push(() => recent.close());
    // A graceful stop: probations are suspended (resumed at the next start), not reverted.
    undo.push(() => runtime.shutdown());

    // Restored versions go through the trust pipeline again when a verifier is registered.
    await runtime.restore(registries.verifiers.has('default') ? { verifier: registries.verifiers.get('default') } : {});
    const planner = await Planner.open({ runtime, registries, stateDir, ...plannerOptions });
    undo.push(() => planner.close());
    await planner.recover();
    ctx = {
      runtime,
      planner,
      bus,
      metrics,
      recent,
      audit,
      streams: new Set(),
      maxEventStreams,
      maxEventBacklogBytes: positiveInteger(options.maxEventBacklogBytes ?? 1024 * 1024, 'maxEventBacklogBytes'),
      recordRequest: requestRecorder(audit, bus, auditMode),
    };
    // Last: the agent follows rollouts only once it can serve, record and plan.
    let fleet: AgentFleet | undefined;
    if (fleetPlan !== undefined) {
      const onFleetError = (error: unknown): void => {
        if (logger !== undefined) logger.warn({ fleet: true, code: error instanceof HotPatchError ? error.code : undefined }, messageOf(error));
        else emitRedactedWarning(`fleet: ${messageOf(error)}`, { code: 'HOTPATCH_FLEET_AGENT' });
      };
      fleet = await joinFleet(fleetPlan, planner, actionRecorder(audit, bus, auditMode), onFleetError);
      const joined = fleet;
      undo.push(() => joined.stop());
      ctx.fleet = { agentId: fleet.agentId, ring: fleet.ring, prefix: fleet.prefix };
      ctx.fleetStatus = () => joined.status();
    }
    const streams = ctx.streams;
    // Said once, where the operator looks: where the agent listens and what it came up with.
    logger?.info(
      {
        address,
        stateDir,
        targets: runtime.list().map((t) => ({ target: t.name, version: t.active.version, patchId: t.active.patchId })),
        plans: planner.plans().length,
      },
      `hotpatch agent listening on ${address}`,
    );

    let closed = false;
    return {
      runtime,
      planner,
      bus,
      metrics,
      audit,
      address,
      fleet,
      async close() {
        if (closed) return;
        closed = true;
        for (const res of streams) res.end();
        await undoAll(undo);
        logger?.info({ address, stateDir }, 'hotpatch agent stopped (graceful: probations suspended, resumed at the next start)');
      },
    };
  } catch (error) {
    await undoAll(undo, error);
    throw error;
  }
}

const LOOPBACK_HOSTS: readonly string[] = ['127.0.0.1', '::1', 'localhost'];

/** Runs the undo steps in reverse; a step that fails is reported, and the others still run. */
async function undoAll(undo: (() => Promise<void> | void)[], primary?: unknown): Promise<void> {
  const failures: unknown[] = [];
  for (const step of undo.splice(0).reverse()) {
    try {
      await step();
    } catch (error) {
      failures.push(error);
    }
  }
  if (failures.length === 0) return;
  if (primary !== undefined) {
    // The start already failed: its own error is what the caller must see.
    emitRedactedWarning(`agent cleanup after a failed start: ${failures.map((f) => (f as Error).message).join('; ')}`, { code: 'HOTPATCH_AGENT_CLEANUP' });
    return;
  }
  throw new HotPatchError('IO', `closing the agent failed: ${failures.map((f) => (f as Error).message).join('; ')}`, { cause: failures[0] });
}

function closeServer(server: Server): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.close((e) => (e === undefined ? resolve() : reject(e)));
    server.closeAllConnections();
  });
}

async function unlinkIfPresent(path: string): Promise<void> {
  await unlink(path).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'ENOENT') throw e;
  });
}

/**
 * Node's defaults let a client hold a connection for a minute sending its headers and five
 * sending its body, and accept connections without bound: each costs the host process a file
 * descriptor. The admin endpoint's clients are local and quick, so the bounds are tight; past
 * twice the requests and streams it may serve, a new connection is closed at once.
 */
function limitConnections(server: Server, servable: number): void {
  server.headersTimeout = 10_000;
  server.requestTimeout = 60_000;
  server.maxConnections = 2 * servable;
}

async function registerDefaults(registries: Registries, defaults: AgentOptions['defaults'], stateDir: string): Promise<void> {
  if (defaults === undefined) return;
  if (defaults.trustStore !== undefined && !registries.verifiers.has('default')) {
    const trust = parseTrustStore(await readFileBounded(defaults.trustStore, 1024 * 1024, { noFollow: false, what: 'trust store' }));
    registries.verifiers.register('default', new DefaultVerifier(trust));
  }
  if (defaults.repository !== undefined && !registries.repositories.has('default')) {
    const repository = openRepository(defaults.repository);
    const verifier = registries.verifiers.has('default') ? registries.verifiers.get('default') : undefined;
    // A trust store with an index role requires the signed index: the repository is read
    // through it, its highest version kept in the state directory (a replay is refused after a restart too).
    const indexed = verifier instanceof DefaultVerifier && verifier.trustStore.index !== undefined;
    registries.repositories.register(
      'default',
      indexed ? new IndexedRepository(repository, { trustStore: () => verifier.trustStore, floorFile: join(stateDir, INDEX_FLOOR_FILE) }) : repository,
    );
  }
  if (!registries.security.has('default')) {
    registries.security.register('default', defaults.policy === undefined ? new SecurityGate() : await SecurityGate.fromFile(defaults.policy));
  }
}

function listen(server: Server, where: { port: number; host: string } | { path: string }): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(where, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** A socket file left by a crashed agent is removed; one that answers belongs to a live agent. */
async function removeStaleSocket(path: string): Promise<void> {
  try {
    const info = await lstat(path);
    if (!info.isSocket()) throw new HotPatchError('INVALID', `${path} exists and is not a socket; refusing to replace it`);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  const alive = await new Promise<boolean>((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
  if (alive) throw new HotPatchError('INVALID', `another agent is listening on ${path}`);
  await unlink(path);
}

function plannerLimits(options: AgentOptions): Pick<PlannerOptions, 'maxApplyCrashes' | 'keepFinishedPlans' | 'maxOpenPlans'> {
  const out: Pick<PlannerOptions, 'maxApplyCrashes' | 'keepFinishedPlans' | 'maxOpenPlans'> = {};
  for (const key of ['maxApplyCrashes', 'keepFinishedPlans', 'maxOpenPlans'] as const) {
    if (options[key] !== undefined) out[key] = positiveInteger(options[key], key);
  }
  return out;
}

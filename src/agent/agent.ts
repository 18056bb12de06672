import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { chmod, lstat, mkdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { HotPatchError, Registries, type EventBus } from '../core/index.js';
import { DynamicInstaller } from '../installer/index.js';
import { AuditLog, HotPatchMetrics, createLogger, logEvents } from '../observability/index.js';
import { Planner } from '../orchestration/index.js';
import { FileSystemRepository, readFileBounded } from '../repo/index.js';
import { SecurityGate } from '../security/index.js';
import { DefaultVerifier, parseTrustStore } from '../verification/index.js';
import { HotPatchRuntime } from '../zero-downtime/index.js';
import { ROUTES, sendError, type AgentContext } from './routes.js';
import { bearerMatches, readTokenFile } from './token.js';

export interface AgentOptions {
  /** State directory: state.json, staging/, manifests/, journal.json, audit.log, agent.sock. */
  stateDir: string;
  /** The host's runtime with its targets declared; default: a new one on `stateDir`. */
  runtime?: HotPatchRuntime;
  registries?: Registries;
  /** Unix socket of the admin endpoint (default `<stateDir>/agent.sock`, mode 0600). */
  socketPath?: string;
  /** Serve on loopback HTTP instead, with a bearer token read from a 0600 file. */
  http?: { port?: number; host?: '127.0.0.1' | '::1' | 'localhost'; tokenFile: string };
  /**
   * Registers components named "default": a filesystem repository, a verifier over this
   * trust store file, and a security gate (from the policy file, or the default gate).
   */
  defaults?: { repository?: string; trustStore?: string; policy?: string };
  /** Structured JSON logs of every event (default: to stderr at info; false: none). */
  log?: { destination?: NodeJS.WritableStream | number; level?: string } | false;
}

export interface Agent {
  readonly runtime: HotPatchRuntime;
  readonly planner: Planner;
  readonly bus: EventBus;
  readonly metrics: HotPatchMetrics;
  readonly audit: AuditLog;
  /** `unix:<path>` or `http://127.0.0.1:<port>`: what `hotpatch --agent` takes. */
  readonly address: string;
  close(): Promise<void>;
}

/**
 * Embeds the admin endpoint in a host process: restores the persisted versions, recovers
 * interrupted plans from the journal, appends every event to the audit log, and serves
 * status / plans / apply / promote / abort / rollback / freeze / events / metrics.
 */
export async function startAgent(options: AgentOptions): Promise<Agent> {
  const stateDir = options.stateDir;
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const runtime = options.runtime ?? new HotPatchRuntime({ stateDir, installer: new DynamicInstaller(stateDir) });
  if (runtime.stateDir === undefined || runtime.installer === undefined) {
    throw new HotPatchError('INVALID', 'the agent needs a runtime created with stateDir and installer');
  }
  const bus = runtime.bus;
  const registries = options.registries ?? new Registries();
  if (!registries.installers.has('default')) registries.installers.register('default', runtime.installer);
  await registerDefaults(registries, options.defaults);

  // Audit first, so restore and recovery events are recorded too.
  const audit = new AuditLog(stateDir, runtime.store === undefined ? {} : { store: runtime.store });
  await audit.open();
  const detachAudit = audit.attach(bus);
  const logger = options.log === false ? undefined : createLogger({ ...(options.log ?? {}) });
  const detachLog = logger === undefined ? () => {} : logEvents(bus, logger);
  const metrics = new HotPatchMetrics({ runtime, bus });

  await runtime.restore();
  const planner = await Planner.open({ runtime, registries, stateDir });
  await planner.recover();

  const ctx: AgentContext = { runtime, planner, bus, metrics, streams: new Set() };
  const token = options.http === undefined ? undefined : await readTokenFile(options.http.tokenFile);
  const server = createServer((req, res) => void handle(ctx, token, req, res));
  let address: string;
  let socketPath: string | undefined;
  if (options.http !== undefined) {
    const host = options.http.host ?? '127.0.0.1';
    await listen(server, { port: options.http.port ?? 0, host });
    const info = server.address();
    if (info === null || typeof info === 'string') throw new HotPatchError('IO', 'the agent HTTP server has no address');
    address = `http://${host.includes(':') ? `[${host}]` : host}:${info.port}`;
  } else {
    socketPath = options.socketPath ?? join(stateDir, 'agent.sock');
    await removeStaleSocket(socketPath);
    await listen(server, { path: socketPath });
    // The state directory is 0700 already; the socket itself is narrowed to its owner too.
    await chmod(socketPath, 0o600);
    address = `unix:${socketPath}`;
  }

  let closed = false;
  return {
    runtime,
    planner,
    bus,
    metrics,
    audit,
    address,
    async close() {
      if (closed) return;
      closed = true;
      for (const res of ctx.streams) res.end();
      await new Promise<void>((resolve, reject) => server.close((e) => (e === undefined ? resolve() : reject(e))));
      server.closeAllConnections?.();
      if (socketPath !== undefined) await unlink(socketPath).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'ENOENT') throw e;
      });
      metrics.close();
      detachLog();
      detachAudit();
      await audit.close();
      runtime.close();
    },
  };
}

async function handle(ctx: AgentContext, token: string | undefined, req: IncomingMessage, res: ServerResponse): Promise<void> {
  try {
    if (token !== undefined && !bearerMatches(req.headers.authorization, token)) {
      res.setHeader('www-authenticate', 'Bearer');
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ ok: false, code: 'POLICY_DENIED', message: 'missing or wrong bearer token' }));
      return;
    }
    const url = new URL(req.url ?? '/', 'http://agent');
    const route = ROUTES[`${req.method ?? 'GET'} ${url.pathname}`];
    if (route === undefined) {
      const known = Object.keys(ROUTES).some((k) => k.endsWith(` ${url.pathname}`));
      throw new HotPatchError(known ? 'INVALID' : 'NOT_FOUND', known ? `${req.method} is not allowed on ${url.pathname}` : `no endpoint ${url.pathname}`);
    }
    await route(ctx, req, res, url);
  } catch (error) {
    sendError(res, error);
  }
}

async function registerDefaults(registries: Registries, defaults: AgentOptions['defaults']): Promise<void> {
  if (defaults === undefined) return;
  if (defaults.repository !== undefined && !registries.repositories.has('default')) {
    registries.repositories.register('default', new FileSystemRepository(defaults.repository));
  }
  if (defaults.trustStore !== undefined && !registries.verifiers.has('default')) {
    const trust = parseTrustStore(await readFileBounded(defaults.trustStore, 1024 * 1024, { noFollow: false, what: 'trust store' }));
    registries.verifiers.register('default', new DefaultVerifier(trust));
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

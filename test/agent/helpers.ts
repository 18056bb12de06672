/*
 * Shared fixtures of the agent integration tests: really signed patches in a real
 * FileSystemRepository directory, an HTTP client for the agent's Unix socket or loopback
 * port, a Server-Sent Events reader, the real `hotpatch` binary run asynchronously, and
 * agent-host.ts child processes.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type RequestOptions } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startAgent, type Agent, type AgentOptions } from '../../src/agent/index.js';
import { EventBus, type HotPatchEvent } from '../../src/core/index.js';
import { DynamicInstaller } from '../../src/installer/index.js';
import type { PatchPlan, PlanRunResult } from '../../src/orchestration/index.js';
import { HotPatchRuntime, type Target } from '../../src/zero-downtime/index.js';
import { CI_TRUST, publishPatch } from '../support/patches.js';
import { until } from '../support/wait.js';
import { collectJsonLines, type JsonLine } from '../support/json-lines.js';

export { until };

export const T = 'xps.crypto.hash.sha256';
export const BUILTIN_VERSION = '1.0.0';
export const sha = (s: string): string => createHash('sha256').update(s).digest('hex');
export const builtin = { digest: (s: string): string => sha(s) };
const ABC = 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad';

/** The host's known-answer test, run on every candidate before it takes a live call. */
export function kat(api: typeof builtin): void {
  if (api.digest('abc') !== ABC) throw new Error('KAT: digest("abc") is wrong');
}

/** Same digests as the built-in (the canary passes), tagged so each payload is distinct. */
export function goodSource(tag: string): string {
  return `import { createHash, randomBytes } from 'node:crypto';
// ${tag}
export const api = { digest: (s) => createHash('sha256').update(s).digest('hex') };
export function selfTest() { if (api.digest('abc') !== '${ABC}') throw new Error('KAT'); }
`;
}

/** Passes the known-answer test but answers wrongly for inputs ending in "7": a deterministic canary catches it. */
export function faultySource(tag: string): string {
  return `import { createHash, randomBytes } from 'node:crypto';
// ${tag}
export const api = { digest: (s) => s.endsWith('7') ? 'not-a-digest' : createHash('sha256').update(s).digest('hex') };
`;
}

/** Fast canary: two short steps, few calls needed, latency not judged on a busy CI box. */
export const FAST_ZDT = {
  steps: [0.5, 1],
  canaryInterval: 10,
  backoffFactor: 1,
  jitterRatio: 0,
  minCallsPerStep: 5,
  minCalls: 0,
  minLatencySamples: 5,
  maxLatencyRatio: 1000,
};

/** A canary that stays open (one long step) until promoted or aborted by an operator. */
export const LONG_ZDT = { ...FAST_ZDT, steps: [0.5, 1], canaryInterval: 60_000 };

/** The trust store of every fixture: the ci key of test/support/patches.ts. */
export const TRUST = CI_TRUST;

/** Writes `<id>.json` (a really signed DSSE envelope) and `<id>.bin` into a repository directory. */
export async function publish(repoDir: string, id: string, version: string, source = goodSource(`${id} ${version}`), target = T): Promise<void> {
  await publishPatch(repoDir, id, target, version, source);
}

export interface Fixture {
  dir: string;
  stateDir: string;
  repoDir: string;
  trustFile: string;
  publish(id: string, version: string, source?: string): Promise<void>;
  close(): Promise<void>;
}

/** A temp directory with a state dir (0700), a repository and a trust store file. */
export async function makeFixture(prefix = 'hotpatch-agent-'): Promise<Fixture> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  const stateDir = join(dir, 'state');
  const repoDir = join(dir, 'repo');
  const trustFile = join(dir, 'trust.json');
  await mkdir(stateDir, { mode: 0o700 });
  await mkdir(repoDir);
  await writeFile(trustFile, JSON.stringify(TRUST));
  return {
    dir,
    stateDir,
    repoDir,
    trustFile,
    publish: (id, version, source) => publish(repoDir, id, version, source),
    close: () => rm(dir, { recursive: true, force: true, maxRetries: 5 }),
  };
}

/** A host runtime (own bus, own installer) with the target declared, as a service would build it. */
export function hostRuntime(stateDir: string): { runtime: HotPatchRuntime; target: Target<typeof builtin>; bus: EventBus } {
  const bus = new EventBus();
  const runtime = new HotPatchRuntime({ stateDir, bus, installer: new DynamicInstaller(stateDir) });
  const target = runtime.target(T, { version: BUILTIN_VERSION, impl: builtin, deterministic: true, selfTest: kat });
  return { runtime, target, bus };
}

/** A plan for the agent's "default" components. */
export function planOf(id: string, patch: string, zdt: Record<string, unknown> = FAST_ZDT): Record<string, unknown> {
  return { id, target: T, patch, repo: 'default', verifier: 'default', security: 'default', installer: 'default', zdt };
}

/** Declares the builtin target on `agent`, as a service would. */
export function declareBuiltin(agent: Agent): Target<typeof builtin> {
  return agent.runtime.target(T, { version: BUILTIN_VERSION, impl: builtin, deterministic: true, selfTest: kat });
}

/**
 * Runs one plan of patch `patch` to its outcome while `target` is called (every answer
 * checked) all along: a canary needs live calls to judge.
 */
export async function runPlanUnderTraffic(agent: Agent, target: Target<typeof builtin>, planId: string, patch: string): Promise<PlanRunResult> {
  const traffic = setInterval(() => {
    for (let i = 0; i < 20; i++) assert.equal(target.api.digest(`x${i}`), sha(`x${i}`));
  }, 1);
  try {
    agent.planner.addPlan(planOf(planId, patch) as unknown as PatchPlan);
    return await agent.planner.runOnce(planId);
  } finally {
    clearInterval(traffic);
  }
}

// --- HTTP client -----------------------------------------------------------------------

/** Where the agent listens: a Unix socket, or a loopback port (with a bearer token). */
export interface Endpoint {
  socketPath?: string;
  port?: number;
  host?: string;
  token?: string;
}

export function endpointOf(address: string, token?: string): Endpoint {
  if (address.startsWith('unix:')) return { socketPath: address.slice(5) };
  const url = new URL(address);
  return { host: url.hostname, port: Number(url.port), ...(token === undefined ? {} : { token }) };
}

export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  json: Record<string, unknown>;
}

function requestOptions(ep: Endpoint, method: string, path: string, headers: Record<string, string>): RequestOptions {
  const h: Record<string, string> = { ...headers };
  if (ep.token !== undefined && h.authorization === undefined) h.authorization = `Bearer ${ep.token}`;
  if (ep.socketPath !== undefined) return { socketPath: ep.socketPath, path, method, headers: h };
  return { host: ep.host ?? '127.0.0.1', ...(ep.port === undefined ? {} : { port: ep.port }), path, method, headers: h };
}

/**
 * One request. `body`: an object is sent as JSON, a string or Buffer as it is; `chunked`
 * sends it without a content-length. Resolves with the status and the body (parsed when JSON).
 */
export function call(
  ep: Endpoint,
  method: string,
  path: string,
  body?: unknown,
  options: { headers?: Record<string, string>; chunked?: boolean } = {},
): Promise<Reply> {
  const data =
    body === undefined
      ? undefined
      : typeof body === 'string' || Buffer.isBuffer(body)
        ? Buffer.from(body as string | Buffer)
        : Buffer.from(JSON.stringify(body));
  const headers: Record<string, string> = { ...(options.headers ?? {}) };
  if (data !== undefined) {
    headers['content-type'] ??= 'application/json';
    if (options.chunked !== true) headers['content-length'] = String(data.length);
  }
  return new Promise((resolvePromise, reject) => {
    let answered = false;
    const req = httpRequest(requestOptions(ep, method, path, headers), (res: IncomingMessage) => {
      answered = true;
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: Record<string, unknown> = {};
        try {
          json = JSON.parse(text) as Record<string, unknown>;
        } catch {
          json = {}; // not JSON (metrics text): callers read `text`
        }
        resolvePromise({ status: res.statusCode ?? 0, headers: res.headers, text, json });
      });
    });
    // Bounded: an agent that never answers fails the test instead of hanging it.
    req.setTimeout(30_000, () => req.destroy(new Error(`${method} ${path}: no answer from the agent within 30 s`)));
    // The agent may answer (413) before the whole body is sent: the write then fails, the answer stands.
    req.on('error', (e) => {
      if (!answered) reject(e);
    });
    if (data !== undefined && options.chunked === true) {
      // Several writes so the body really travels in chunks.
      const step = 256 * 1024;
      for (let at = 0; at < data.length; at += step) req.write(data.subarray(at, at + step));
      req.end();
    } else {
      req.end(data);
    }
  });
}

// --- Server-Sent Events -------------------------------------------------------------------

export interface SseMessage {
  id?: string;
  event?: string;
  data?: string;
  retry?: string;
  comment?: string;
}

export interface EventStream {
  status: Promise<number>;
  contentType: Promise<string | undefined>;
  messages: SseMessage[];
  events: HotPatchEvent[];
  waitFor(predicate: (events: HotPatchEvent[]) => boolean, timeoutMs?: number, what?: string): Promise<void>;
  /**
   * Resolves once the stream's first message (the agent's `retry:` line) has arrived: the agent
   * subscribes to its bus in the same turn as it writes that line, so every event published
   * after this resolves is streamed. Wait for it instead of sleeping before an action.
   */
  subscribed(timeoutMs?: number): Promise<void>;
  close(): void;
}

/** Parses one SSE block (lines of `field: value`; `:` starts a comment). */
export function parseSseBlock(block: string): SseMessage {
  const m: SseMessage = {};
  for (const line of block.split('\n')) {
    if (line.startsWith(':')) {
      m.comment = line.slice(1).trim();
      continue;
    }
    const at = line.indexOf(':');
    const field = at === -1 ? line : line.slice(0, at);
    const value = at === -1 ? '' : line.slice(at + 1).replace(/^ /, '');
    if (field === 'data') m.data = m.data === undefined ? value : `${m.data}\n${value}`;
    else if (field === 'id' || field === 'event' || field === 'retry') m[field] = value;
  }
  return m;
}

/** Opens GET /v1/events and parses the stream as it arrives. */
export function openEvents(ep: Endpoint, path = '/v1/events', onEvent?: (e: HotPatchEvent) => void): EventStream {
  const messages: SseMessage[] = [];
  const events: HotPatchEvent[] = [];
  let res: IncomingMessage | undefined;
  let resolveStatus!: (n: number) => void;
  let rejectStatus!: (e: unknown) => void;
  let resolveType!: (s: string | undefined) => void;
  const status = new Promise<number>((a, b) => {
    resolveStatus = a;
    rejectStatus = b;
  });
  const contentType = new Promise<string | undefined>((a) => (resolveType = a));
  const req = httpRequest(requestOptions(ep, 'GET', path, { accept: 'text/event-stream' }), (r) => {
    res = r;
    resolveStatus(r.statusCode ?? 0);
    resolveType(r.headers['content-type']);
    let buffer = '';
    r.setEncoding('utf8');
    r.on('data', (chunk: string) => {
      buffer += chunk;
      let at: number;
      while ((at = buffer.indexOf('\n\n')) !== -1) {
        const block = buffer.slice(0, at);
        buffer = buffer.slice(at + 2);
        const m = parseSseBlock(block);
        messages.push(m);
        if (m.data !== undefined && r.statusCode === 200) {
          const e = JSON.parse(m.data) as HotPatchEvent;
          events.push(e);
          onEvent?.(e);
        }
      }
    });
    r.on('error', () => undefined);
  });
  req.on('error', (e) => rejectStatus(e));
  req.end();
  return {
    status,
    contentType,
    messages,
    events,
    waitFor: (predicate, timeoutMs = 15_000, what = 'events') => until(() => predicate(events), timeoutMs, what),
    subscribed: (timeoutMs = 15_000) => until(() => messages.length > 0, timeoutMs, `the first message of ${path}`),
    close: () => {
      res?.destroy();
      req.destroy();
    },
  };
}

// --- misc -------------------------------------------------------------------------------

/** A TCP port nothing listens on now (bound to port 0, then released). */
export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const info = s.address();
      const port = typeof info === 'object' && info !== null ? info.port : 0;
      s.close(() => resolvePort(port));
    });
  });
}

/** Writes a token file with the given mode (default 0600). */
export async function writeToken(path: string, token: string, mode = 0o600): Promise<void> {
  await writeFile(path, token, { mode });
  await chmod(path, mode); // the umask must not decide the mode under test
}

// --- the real `hotpatch` binary, asynchronously ----------------------------------------

export const CLI = resolve('dist/src/cli/main.js');

export interface CliResult {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** The JSON object on the last line of stdout, when there is one. */
  json: Record<string, unknown> | undefined;
}

/** Runs `hotpatch ARGS` in a child process (never blocks this process's event loop). */
export function hotpatch(args: string[], options: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: options.env ?? process.env });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      const lines = stdout.trimEnd().split('\n');
      let json: Record<string, unknown> | undefined;
      try {
        json = JSON.parse(lines[lines.length - 1] ?? '') as Record<string, unknown>;
      } catch {
        json = undefined; // not --json output
      }
      resolveRun({ status, signal, stdout, stderr, json });
    });
  });
}

// --- agent-host.ts children --------------------------------------------------------------

const HERE = dirname(fileURLToPath(import.meta.url));
export const AGENT_HOST = join(HERE, 'agent-host.js');

/** What agent-host.js takes as its one argument (JSON). */
export interface HostConfig {
  stateDir: string;
  socketPath: string;
  repoDir: string;
  trustFile: string;
  /** SIGKILL itself synchronously inside the bus listener when this event type is published. */
  killOn?: string;
  /** Print every bus event as a line (default false: the crash tests read them, others do not). */
  printEvents?: boolean;
  /** Run `planner.runLoop` once the agent serves, as a service resuming its plans would (default false). */
  runLoop?: boolean;
}

export type HostLine = JsonLine;

export interface Host {
  child: ChildProcess;
  lines: HostLine[];
  stderr(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  waitLine(predicate: (l: HostLine) => boolean, timeoutMs?: number, what?: string): Promise<HostLine>;
  /** SIGTERM, then the "stopped" line and a clean exit (SIGKILL after a bound). */
  stop(): Promise<HostLine | undefined>;
  kill(): Promise<void>;
}

/** Starts agent-host.js and waits for its ready line. */
export async function startHost(config: HostConfig): Promise<Host> {
  const child = spawn(process.execPath, [AGENT_HOST, JSON.stringify(config)], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: HostLine[] = [];
  let err = '';
  collectJsonLines(child.stdout!, lines);
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.on('exit', (code, signal) => r({ code, signal })));
  let done = false;
  void exited.then(() => (done = true));
  const waitLine = async (predicate: (l: HostLine) => boolean, timeoutMs = 20_000, what = 'a line'): Promise<HostLine> => {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const hit = lines.find(predicate);
      if (hit !== undefined) return hit;
      if (done) throw new Error(`agent host exited while waiting for ${what}; last lines: ${JSON.stringify(lines.slice(-3))}; stderr:\n${err}`);
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}; stderr:\n${err}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  const host: Host = {
    child,
    lines,
    stderr: () => err,
    exited,
    waitLine,
    async stop() {
      if (done) return lines.find((l) => l.event === 'stopped');
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
      return lines.find((l) => l.event === 'stopped');
    },
    async kill() {
      if (!done) child.kill('SIGKILL');
      await exited;
    },
  };
  try {
    await waitLine((l) => l.event === 'ready', 20_000, 'the ready line');
  } catch (error) {
    await host.kill();
    throw error;
  }
  return host;
}

/**
 * An agent on loopback HTTP with a fresh bearer token (a 0600 file), over a host runtime with
 * the target declared, reading the fixture's repository and trust store.
 */
export async function startHttpAgent(
  fx: Fixture,
  extra: Partial<AgentOptions> = {},
): Promise<{ agent: Agent; ep: Endpoint; port: number; token: string; tokenFile: string; target: Target<typeof builtin>; runtime: HotPatchRuntime }> {
  const token = randomBytes(24).toString('hex');
  const tokenFile = join(fx.dir, 'agent.token');
  await writeToken(tokenFile, token);
  const host = hostRuntime(fx.stateDir);
  const { http, ...rest } = extra;
  const agent = await startAgent({
    stateDir: fx.stateDir,
    runtime: host.runtime,
    http: { port: 0, tokenFile, ...http },
    defaults: { repository: fx.repoDir, trustStore: fx.trustFile },
    log: false,
    ...rest,
  });
  const port = Number(new URL(agent.address).port);
  return { agent, ep: { host: http?.host === '::1' ? '::1' : '127.0.0.1', port, token }, port, token, tokenFile, target: host.target, runtime: host.runtime };
}

/** The status of a GET to the agent carrying the Host header given (fetch would not send another). */
export function statusWithHost(ep: Endpoint, path: string, host: string): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const req = httpRequest({ host: ep.host, port: ep.port, path, headers: { host, authorization: `Bearer ${ep.token}` } }, (res) => {
      res.resume();
      resolvePromise(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

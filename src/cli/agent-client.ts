import { hostname, userInfo } from 'node:os';
import { request, type IncomingMessage, type RequestOptions } from 'node:http';
import { HotPatchError, isErrorCode, type HotPatchEvent } from '../core/index.js';
import { UsageError } from './cli-error.js';

export interface AgentAddress {
  socketPath?: string;
  url?: URL;
  token?: string;
  /** The file the token was read from, named when the agent refuses it (401). */
  tokenFile?: string;
  /** Where the address came from when not `--agent` (HOTPATCH_AGENT, a config file), named in errors. */
  source?: string;
}

/**
 * `--agent unix:/path`, `--agent /path/agent.sock` or `--agent http://127.0.0.1:PORT` (+ token
 * file). `source` says where `agent` came from when it was not the flag (agent-config.ts).
 */
export async function resolveAgent(agent: string, tokenFile: string | undefined, source?: string): Promise<AgentAddress> {
  const from = source === undefined || source === '--agent' ? {} : { source };
  if (agent.startsWith('http://') || agent.startsWith('https://')) {
    let url: URL;
    try {
      url = new URL(agent);
    } catch {
      throw new UsageError(`--agent ${agent} is not a valid URL`);
    }
    // The agent serves plain HTTP on loopback only: anything else would send the bearer token
    // in clear across a network (or, for https://, to something that is not the agent).
    if (url.protocol !== 'http:' || !isLoopbackUrl(url)) {
      throw new UsageError(
        `${source ?? '--agent'} ${agent}: the agent serves plain HTTP on loopback only (http://127.0.0.1:PORT, http://[::1]:PORT, http://localhost:PORT) or a unix socket; reach a remote agent through an SSH tunnel`,
      );
    }
    const file = tokenFile ?? (process.env.HOTPATCH_TOKEN_FILE || undefined);
    if (file === undefined) throw new UsageError('an HTTP agent needs --token-file FILE (or HOTPATCH_TOKEN_FILE, or "tokenFile" in the config file)');
    // Loaded only here: the agent's index pulls in pino, prom-client and the runtime (about 45
    // ms of imports), which a unix-socket agent never needs. Through the index, as the layering
    // test requires (agent/token.js alone would be lighter but is past it).
    const { readTokenFile } = await import('../agent/index.js');
    let token: string;
    try {
      token = await readTokenFile(file);
    } catch (error) {
      // A token file others can read, or a short one, is the operator's to fix: a usage error
      // (exit 2), like a broken config file; a missing or unreadable one stays operational.
      if (error instanceof HotPatchError && error.code === 'INVALID') throw new UsageError(error.message, 'INVALID', { cause: error });
      throw error;
    }
    return { url, token, tokenFile: file, ...from };
  }
  return { socketPath: agent.startsWith('unix:') ? agent.slice(5) : agent, ...from };
}

/** An http(s) URL whose host is a loopback name or address (where an agent listens). */
export function isLoopbackUrl(url: URL): boolean {
  const host = url.hostname;
  return host === 'localhost' || host === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

const ACTOR = ((): string => {
  try {
    return `${userInfo().username}@${hostname()}`;
  } catch {
    return `uid ${process.getuid?.() ?? '?'}@${hostname()}`; // no passwd entry for this uid (a container)
  }
})();

function options(agent: AgentAddress, method: string, path: string, headers: Record<string, string>): RequestOptions {
  // Who is asking, as the agent's audit record shows it (self-declared: the token or socket is the check).
  const h: Record<string, string> = { 'x-hotpatch-actor': ACTOR, ...headers };
  if (agent.token !== undefined) h.authorization = `Bearer ${agent.token}`;
  if (agent.socketPath !== undefined) return { socketPath: agent.socketPath, path, method, headers: h };
  // URL keeps an IPv6 literal's brackets ([::1]); the socket API wants the bare address.
  return { host: agent.url!.hostname.replace(/^\[(.*)\]$/, '$1'), port: agent.url!.port, path, method, headers: h };
}

function where(agent: AgentAddress): string {
  return `${agent.socketPath ?? agent.url?.href}${agent.source === undefined ? '' : ` (from ${agent.source})`}`;
}

function unreachable(agent: AgentAddress, cause: unknown): HotPatchError {
  return new HotPatchError('IO', `cannot reach the agent at ${where(agent)}: ${(cause as Error).message}`, { cause });
}

/** 401: the agent refused who we are. Not a verdict on anything asked: exit 3, UNAUTHENTICATED. */
function unauthenticated(agent: AgentAddress, method: string, path: string): HotPatchError {
  const text =
    agent.tokenFile === undefined
      ? `the agent at ${where(agent)} refused ${method} ${path} (401): it wants a bearer token; pass --token-file FILE`
      : `the agent refused the token in ${agent.tokenFile} (401): wrong or missing token (agent ${where(agent)})`;
  return new HotPatchError('UNAUTHENTICATED', text, { detail: { httpStatus: 401 } });
}

/** One JSON request. A refusal by the agent is thrown as the HotPatchError it describes. */
export async function callAgent(agent: AgentAddress, method: 'GET' | 'POST', path: string, body?: unknown): Promise<Record<string, unknown>> {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  const res = await new Promise<IncomingMessage>((resolve, reject) => {
    const req = request(
      options(agent, method, path, payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)) }),
      resolve,
    );
    req.on('error', (e) => reject(unreachable(agent, e)));
    req.end(payload);
  });
  if (res.statusCode === 401) {
    res.resume();
    throw unauthenticated(agent, method, path);
  }
  const chunks: Buffer[] = [];
  for await (const c of res) chunks.push(c as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch (cause) {
    throw new HotPatchError('IO', `the agent answered ${res.statusCode} with a body that is not JSON`, { cause });
  }
  if ((res.statusCode ?? 500) >= 400 && json.ok === false) {
    const code = isErrorCode(json.code) ? json.code : 'IO';
    // The whole answer travels in `detail` (a refused apply carries its plan outcome there).
    const { ok: _ok, code: _code, message, ...rest } = json;
    let text = String(message ?? `agent error ${res.statusCode}`);
    // 403: the token is good but may not do this (a read-only token asked to change something).
    if (res.statusCode === 403) text = `the agent refused ${method} ${path} with this token (403 forbidden): ${text}`;
    throw new HotPatchError(code, text, { detail: { httpStatus: res.statusCode, ...rest } });
  }
  return json;
}

/** Follows the agent's event stream (Server-Sent Events) until the signal aborts. */
export async function followEvents(agent: AgentAddress, target: string | undefined, onEvent: (e: HotPatchEvent) => void, signal: AbortSignal): Promise<void> {
  const path = target === undefined ? '/v1/events' : `/v1/events?target=${encodeURIComponent(target)}`;
  const res = await new Promise<IncomingMessage>((resolve, reject) => {
    const req = request({ ...options(agent, 'GET', path, { accept: 'text/event-stream' }), signal }, resolve);
    req.on('error', (e) => reject(signal.aborted ? e : unreachable(agent, e)));
    req.end();
  });
  if (res.statusCode !== 200) {
    res.resume();
    if (res.statusCode === 401) throw unauthenticated(agent, 'GET', path);
    throw new HotPatchError(res.statusCode === 403 ? 'POLICY_DENIED' : 'IO', `the agent refused the event stream (${res.statusCode})`);
  }
  let buffer = '';
  try {
    for await (const chunk of res) {
      buffer += (chunk as Buffer).toString('utf8');
      let at: number;
      while ((at = buffer.indexOf('\n\n')) !== -1) {
        const block = buffer.slice(0, at);
        buffer = buffer.slice(at + 2);
        const data = block
          .split('\n')
          .filter((l) => l.startsWith('data: '))
          .map((l) => l.slice(6))
          .join('\n');
        if (data.length > 0) onEvent(JSON.parse(data) as HotPatchEvent);
      }
    }
  } catch (error) {
    if (!signal.aborted) throw error;
  }
}

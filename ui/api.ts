/**
 * The admin API with the agent's token as a bearer token, like any client. The token is kept in
 * this page's memory only — not in storage another page of this origin could read later — and
 * it is dropped the moment the connection to the agent is lost: an agent that stopped may have
 * its port taken by another program, which must never receive the token. A reload, or a lost
 * connection, asks for it again.
 */
let token: string | undefined;

export const session = {
  get token(): string | undefined {
    return token;
  },
  set(value: string): void {
    token = value;
  },
  clear(): void {
    token = undefined;
  },
};

/** Every request but the event stream gives up after this long (a hung agent is a lost one). */
const REQUEST_TIMEOUT_MS = 10_000;
/** The agent writes a heartbeat every 15 s: a stream silent for this long is lost. */
const STREAM_SILENCE_MS = 45_000;

export interface HotPatchEvent {
  type: string;
  id: string;
  target: string;
  version: string;
  reason: string;
  ts: string;
  detail?: Record<string, unknown>;
}

export interface VersionStatus {
  version: string;
  patchId: string | null;
  inflight: number;
  isolate?: { mode: string; state: string; restarts: number; death?: string };
}

export interface TargetStatus {
  target: string;
  isolation: string;
  active: VersionStatus;
  previous: VersionStatus | undefined;
  frozen: string | undefined;
  probation: { good: true } | { good: false; leftMs: number };
  canary: { patchId: string; version: string; ratio: number; candidateCalls: number; candidateErrors: number; baselineCalls: number } | undefined;
  /** The last version known good (state.json), null before any promotion. */
  lastGood: { version: string; patchId: string | null } | null;
}

export interface PlanRow {
  id: string;
  target: string;
  patch?: string;
  status: string;
  reason?: string;
  patchId?: string;
  version?: string;
}

export interface Status {
  targets: TargetStatus[];
  plans: PlanRow[];
  planCounts: Record<string, number>;
  audit: {
    ok: boolean;
    seq: number;
    consistent: boolean;
    chain: 'unchecked' | 'checking' | 'ok' | 'broken' | 'unreadable';
    failedAppends: number;
    lostAppends: number;
    failure?: string;
  };
  fleet?: { agentId: string; ring: number; prefix: string };
}

/** The API refused the token (401): it is wrong, or the agent no longer has it. */
export class SignedOut extends Error {}

/** The connection to the agent was lost (refused, reset, timed out, silent): the token is dropped. */
export class Lost extends Error {}

function headers(extra: Record<string, string> = {}): Record<string, string> {
  if (token === undefined) throw new SignedOut('not signed in');
  return { accept: 'application/json', authorization: `Bearer ${token}`, ...extra };
}

async function send(path: string, init: RequestInit): Promise<Response> {
  try {
    return await fetch(path, { ...init, cache: 'no-store', signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
  } catch (error) {
    throw new Lost(`the agent cannot be reached (${(error as Error).message})`);
  }
}

async function replyOf<T>(res: Response): Promise<T & { ok: boolean; message?: string; code?: string }> {
  if (res.status === 401) throw new SignedOut('the agent refused the token');
  if (!(res.headers.get('content-type') ?? '').startsWith('application/json')) throw new Lost(`not the agent's answer (HTTP ${res.status})`);
  return (await res.json()) as T & { ok: boolean; message?: string; code?: string };
}

export async function getJson<T>(path: string): Promise<T> {
  const body = await replyOf<T>(await send(path, { headers: headers() }));
  if (!body.ok) throw new Error(body.message ?? 'refused');
  return body;
}

export async function post(path: string, body: unknown): Promise<{ ok: boolean; message: string; code?: string }> {
  const reply = await replyOf<object>(
    await send(path, { method: 'POST', headers: headers({ 'content-type': 'application/json' }), body: JSON.stringify(body) }),
  );
  return { ok: reply.ok, message: reply.message ?? '', ...(reply.code === undefined ? {} : { code: reply.code }) };
}

/**
 * Follows GET /v1/events (Server-Sent Events read through fetch: an EventSource cannot send a
 * bearer token) until `signal` aborts. Never returns normally: the stream's end, a failure or a
 * silence of 45 s is Lost; a 401 SignedOut.
 */
export async function follow(onEvent: (e: HotPatchEvent) => void, onOpen: () => void, signal: AbortSignal): Promise<never> {
  const silence = new AbortController();
  let timer = setTimeout(() => silence.abort(), STREAM_SILENCE_MS);
  const both = AbortSignal.any([signal, silence.signal]);
  try {
    let res: Response;
    try {
      res = await fetch('/v1/events', { headers: headers({ accept: 'text/event-stream' }), signal: both, cache: 'no-store' });
    } catch (error) {
      throw new Lost(`the event stream cannot be opened (${(error as Error).message})`);
    }
    if (res.status === 401) throw new SignedOut('the agent refused the token');
    if (!res.ok || res.body === null || !(res.headers.get('content-type') ?? '').startsWith('text/event-stream')) {
      throw new Lost(`the event stream answered HTTP ${res.status}`);
    }
    onOpen();
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      let chunk: ReadableStreamReadResult<string>;
      try {
        chunk = await reader.read();
      } catch (error) {
        throw new Lost(silence.signal.aborted ? 'the event stream went silent' : `the event stream broke (${(error as Error).message})`);
      }
      if (chunk.done) throw new Lost('the event stream ended');
      clearTimeout(timer);
      timer = setTimeout(() => silence.abort(), STREAM_SILENCE_MS);
      buffer += chunk.value;
      let end: number;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = block
          .split('\n')
          .filter((line) => line.startsWith('data: '))
          .map((line) => line.slice(6))
          .join('\n');
        if (data !== '') onEvent(JSON.parse(data) as HotPatchEvent);
      }
    }
  } finally {
    clearTimeout(timer);
  }
}

export interface Fleet {
  self: { agentId: string; ring: number; prefix: string };
  controller: string | null;
  agents: {
    agentId: string;
    ring: number;
    labels: Record<string, string>;
    targets: Record<string, { version: string; patchId?: string; phase: string; health: string }>;
  }[];
  rollouts: { id: string; target: string; version: string; patchId: string; status: string; ring: number }[];
  problems: { key: string; error: string }[];
}

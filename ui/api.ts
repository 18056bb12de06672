/**
 * The admin API with the agent's token as a bearer token, like any client. The token lives in
 * this tab's sessionStorage: one origin (this agent's port), gone when the tab closes, and never
 * sent by the browser on its own — so no other page can make a request in the operator's name.
 */

const KEY = 'hotpatch-token';

export const session = {
  get token(): string | undefined {
    return sessionStorage.getItem(KEY) ?? undefined;
  },
  set(token: string): void {
    sessionStorage.setItem(KEY, token);
  },
  clear(): void {
    sessionStorage.removeItem(KEY);
  },
};

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
  audit: { ok: boolean; seq: number; consistent: boolean; failedAppends: number; lostAppends: number; failure?: string };
  fleet?: { agentId: string; ring: number; prefix: string };
}

/** The API refused the token (401): it is wrong, or the agent no longer has it. */
export class SignedOut extends Error {}

/** The agent is starting or busy (503): worth asking again shortly. */
export class Busy extends Error {}

function headers(extra: Record<string, string> = {}): Record<string, string> {
  return { accept: 'application/json', authorization: `Bearer ${session.token ?? ''}`, ...extra };
}

async function replyOf<T>(res: Response): Promise<T & { ok: boolean; message?: string; code?: string }> {
  if (res.status === 401) throw new SignedOut('the agent refused the token');
  const body = (await res.json()) as T & { ok: boolean; message?: string; code?: string };
  if (res.status === 503) throw new Busy(body.message ?? 'the agent is busy');
  return body;
}

export async function getJson<T>(path: string): Promise<T> {
  const body = await replyOf<T>(await fetch(path, { headers: headers(), cache: 'no-store' }));
  if (!body.ok) throw new Error(body.message ?? 'refused');
  return body;
}

export async function post(path: string, body: unknown): Promise<{ ok: boolean; message: string; code?: string }> {
  const reply = await replyOf<object>(
    await fetch(path, { method: 'POST', headers: headers({ 'content-type': 'application/json' }), body: JSON.stringify(body) }),
  );
  return { ok: reply.ok, message: reply.message ?? '', ...(reply.code === undefined ? {} : { code: reply.code }) };
}

/**
 * Follows GET /v1/events (Server-Sent Events read through fetch: an EventSource cannot send a
 * bearer token) until `signal` aborts. Resolves when the stream ends; rejects with SignedOut on
 * a 401, Busy on a 503.
 */
export async function follow(onEvent: (e: HotPatchEvent) => void, onOpen: () => void, signal: AbortSignal): Promise<void> {
  const res = await fetch('/v1/events', { headers: headers({ accept: 'text/event-stream' }), signal, cache: 'no-store' });
  if (res.status === 401) throw new SignedOut('the agent refused the token');
  if (res.status === 503) throw new Busy('too many event streams');
  if (!res.ok || res.body === null) throw new Error(`the event stream answered HTTP ${res.status}`);
  onOpen();
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
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

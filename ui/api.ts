/** The admin API, through the session cookie; changes carry the session's CSRF token. */

function meta(name: string): string {
  return document.querySelector<HTMLMetaElement>(`meta[name="${name}"]`)?.content ?? '';
}

export const session = { csrf: meta('hotpatch-csrf'), role: meta('hotpatch-role'), name: meta('hotpatch-token-name') };

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

/** The event types the agent streams (an EventSource needs a listener per type). */
export const EVENT_TYPES = [
  'Planned',
  'Fetched',
  'Verified',
  'Approved',
  'Staged',
  'CanaryStarted',
  'CanaryStep',
  'Promoted',
  'Activated',
  'Aborted',
  'RolledBack',
  'Failed',
  'Requested',
];

export async function getJson<T>(path: string): Promise<T> {
  const res = await fetch(path, { credentials: 'same-origin', headers: { accept: 'application/json' } });
  if (res.status === 401) {
    location.reload(); // the session ended: back to the sign-in form
    throw new Error('signed out');
  }
  const body = (await res.json()) as T & { ok: boolean; message?: string };
  if (!res.ok) throw new Error(body.message ?? `HTTP ${res.status}`);
  return body;
}

export async function post(path: string, body: unknown): Promise<{ ok: boolean; message: string; code?: string }> {
  const res = await fetch(path, {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'content-type': 'application/json', 'x-hotpatch-csrf': session.csrf },
    body: JSON.stringify(body),
  });
  const reply = (await res.json()) as { ok: boolean; message?: string; code?: string };
  return { ok: res.ok && reply.ok, message: reply.message ?? `HTTP ${res.status}`, ...(reply.code === undefined ? {} : { code: reply.code }) };
}

/** Follows the event stream; `onOpen(false)` while it reconnects. */
export function follow(onEvent: (e: HotPatchEvent) => void, onOpen: (open: boolean) => void): EventSource {
  const source = new EventSource('/v1/events', { withCredentials: true });
  source.onopen = () => onOpen(true);
  source.onerror = () => onOpen(false);
  for (const type of EVENT_TYPES) source.addEventListener(type, (m) => onEvent(JSON.parse((m as MessageEvent<string>).data) as HotPatchEvent));
  return source;
}

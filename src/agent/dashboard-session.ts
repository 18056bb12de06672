import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { AgentToken } from './token.js';

/**
 * Browser sessions of the dashboard (README "The dashboard"). A browser cannot send the admin
 * API's bearer token on a page load or an EventSource, so the operator gives the token once
 * (POST /ui/session) and gets a session cookie: HttpOnly, SameSite=Strict, Path=/, random
 * 256 bits, in memory only (a restart of the agent ends every session), for at most 8 hours.
 * A session acts with its token's name and role. Because a cookie travels by itself, every
 * request that changes something must also carry the session's CSRF token in a header (a
 * cross-site form cannot set one) and, when the browser sends an Origin, the agent's own.
 */
export const SESSION_COOKIE = 'hotpatch_session';
export const CSRF_HEADER = 'x-hotpatch-csrf';
const TTL_MS = 8 * 60 * 60 * 1000;
const MAX_SESSIONS = 256;

export interface DashboardSession {
  token: AgentToken;
  csrf: string;
  expires: number;
}

export class DashboardSessions {
  readonly #sessions = new Map<string, DashboardSession>();

  /** A new session for `token`: the cookie value and the session (oldest dropped past the cap). */
  open(token: AgentToken, now = Date.now()): { id: string; session: DashboardSession } {
    this.#sweep(now);
    while (this.#sessions.size >= MAX_SESSIONS) this.#sessions.delete(this.#sessions.keys().next().value!);
    const id = randomBytes(32).toString('base64url');
    const session = { token, csrf: randomBytes(32).toString('base64url'), expires: now + TTL_MS };
    this.#sessions.set(id, session);
    return { id, session };
  }

  /** The live session the request's cookie names, if any. */
  of(req: IncomingMessage, now = Date.now()): DashboardSession | undefined {
    const id = cookieValue(req.headers.cookie, SESSION_COOKIE);
    if (id === undefined) return undefined;
    const session = this.#sessions.get(id);
    if (session === undefined) return undefined;
    if (session.expires <= now) {
      this.#sessions.delete(id);
      return undefined;
    }
    return session;
  }

  close(req: IncomingMessage): void {
    const id = cookieValue(req.headers.cookie, SESSION_COOKIE);
    if (id !== undefined) this.#sessions.delete(id);
  }

  #sweep(now: number): void {
    for (const [id, s] of this.#sessions) if (s.expires <= now) this.#sessions.delete(id);
  }
}

/** The Set-Cookie header of a session (`id`), or of its end (no id). */
export function sessionCookie(id: string | undefined): string {
  const value = id ?? '';
  const age = id === undefined ? 0 : TTL_MS / 1000;
  return `${SESSION_COOKIE}=${value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${age}`;
}

/**
 * Whether a state-changing request of a cookie session may proceed: the CSRF header equals the
 * session's token, and an Origin header, when sent, is this agent's own (http://<Host>).
 */
export function csrfAllows(req: IncomingMessage, session: DashboardSession): boolean {
  const presented = req.headers[CSRF_HEADER];
  if (typeof presented !== 'string') return false;
  const a = Buffer.from(presented);
  const b = Buffer.from(session.csrf);
  if (a.length !== b.length || !timingSafeEqual(a, b)) return false;
  const origin = req.headers.origin;
  return origin === undefined || origin === `http://${req.headers.host ?? ''}`;
}

function cookieValue(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  for (const part of header.split(';')) {
    const at = part.indexOf('=');
    if (at > 0 && part.slice(0, at).trim() === name) return part.slice(at + 1).trim();
  }
  return undefined;
}

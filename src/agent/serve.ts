import type { IncomingMessage, ServerResponse } from 'node:http';
import { HotPatchError } from '../core/index.js';
import { ROUTES, send, sendError, type AgentContext } from './routes.js';
import { setIdentity, setRequestRole } from './operator-record.js';
import { serveDashboard } from './dashboard-routes.js';
import { matchToken, type AgentTokenSet } from './token.js';

export interface ServeOptions {
  /**
   * The HTTP endpoint's bearer tokens. Undefined on the Unix socket, whose mode (0600 in a
   * 0700 directory) is the check: whoever can connect is the owner, and may do everything.
   */
  tokens: AgentTokenSet | undefined;
  /** Requests handled at once, event streams apart (they have maxEventStreams). */
  maxRequestsInFlight: number;
  /**
   * HTTP endpoint only: the host name a request's Host must carry — the address the agent
   * listens on, as given (`127.0.0.1`, `::1`, `localhost`). A browser led to the agent by DNS
   * rebinding sends the attacker's host name: refused (421) before anything else, the dashboard
   * included. A listener on 127.0.0.1 does not answer to `localhost`: a browser may resolve it
   * to ::1, where another user's server could be listening on the same port.
   */
  ownHost?: string;
}

/** What a read-only token may call, named in its refusals. */
const READ_ENDPOINTS = Object.entries(ROUTES)
  .filter(([, route]) => route.access === 'read')
  .map(([key]) => key)
  .join(', ');

/**
 * The agent's request handler: authenticate (401), wait for the start to finish (503), route
 * (404 / 400), check the token may use that verb (403), admit within maxRequestsInFlight
 * (503), then run the endpoint. Every refusal is answered before the body is read, so a
 * refused request changes nothing and costs the agent next to nothing.
 * `context` is undefined until the agent has restored its versions and recovered its plans.
 */
export function requestHandler(options: ServeOptions, context: () => AgentContext | undefined): (req: IncomingMessage, res: ServerResponse) => void {
  let inFlight = 0;

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let admitted = false;
    try {
      // "//host/path" would parse as another authority: only a plain path is a target here.
      if ((req.url ?? '/').startsWith('//')) {
        send(res, 400, { ok: false, code: 'INVALID', message: 'the request target must be a path such as /v1/status, not one starting with //' });
        return;
      }
      const url = new URL(req.url ?? '/', 'http://agent');
      if (options.ownHost !== undefined && !hostAllowed(req, options.ownHost)) {
        send(res, 421, { ok: false, code: 'POLICY_DENIED', message: 'this agent answers requests to its own address only (Host header)' });
        return;
      }
      if (options.tokens !== undefined && (await serveDashboard(req, res, url))) return;
      const token = options.tokens === undefined ? undefined : matchToken(req.headers.authorization, options.tokens);
      const role = options.tokens === undefined ? 'operate' : token?.role;
      if (role === undefined) {
        send(res, 401, { ok: false, code: 'UNAUTHENTICATED', message: 'missing or wrong bearer token' }, { 'www-authenticate': 'Bearer' });
        return;
      }
      if (token === undefined) setIdentity(req, 'unix-socket');
      else setIdentity(req, token.credential, token.name);
      setRequestRole(req, role);
      const ctx = context();
      if (ctx === undefined) {
        send(res, 503, { ok: false, code: 'IO', message: 'the agent is starting (restoring versions, recovering plans); try again' }, { 'retry-after': '1' });
        return;
      }
      const key = `${req.method ?? 'GET'} ${url.pathname}`;
      const route = ROUTES[key];
      if (route === undefined) {
        const methods = Object.keys(ROUTES)
          .filter((k) => k.endsWith(` ${url.pathname}`))
          .map((k) => k.slice(0, k.indexOf(' ')));
        if (methods.length === 0) throw new HotPatchError('NOT_FOUND', `no endpoint ${url.pathname}`);
        send(
          res,
          405,
          { ok: false, code: 'INVALID', message: `${req.method} is not allowed on ${url.pathname} (${methods.join(', ')})` },
          { allow: methods.join(', ') },
        );
        return;
      }
      if (route.access === 'operate' && role !== 'operate') {
        send(res, 403, {
          ok: false,
          code: 'POLICY_DENIED',
          message: `this token is read-only: it may call ${READ_ENDPOINTS}, not ${key}; use the operator token`,
        });
        return;
      }
      if (route.stream !== true) {
        if (inFlight >= options.maxRequestsInFlight) {
          send(
            res,
            503,
            { ok: false, code: 'TOO_LARGE', message: `too many requests in flight (${options.maxRequestsInFlight}); try again later` },
            { 'retry-after': '1' },
          );
          return;
        }
        // Held until the endpoint's work ends, not when its client goes away: an apply whose
        // client disconnected still runs, and still counts.
        inFlight += 1;
        admitted = true;
      }
      await route.handler(ctx, req, res, url);
    } catch (error) {
      sendError(res, error);
    } finally {
      if (admitted) inFlight -= 1;
    }
  }

  return (req, res) => void handle(req, res);
}

/**
 * Whether a request names this endpoint: an origin-form target (`/path`, not an absolute URL
 * naming another host), at most one Host header, and that Host the endpoint's own name with
 * any port or none. A browser always sends Host, and after DNS rebinding it carries the
 * attacker's name; a request without one (HTTP/1.0) comes from no browser.
 */
function hostAllowed(req: IncomingMessage, ownHost: string): boolean {
  if (!(req.url ?? '/').startsWith('/')) return false;
  let hosts = 0;
  for (let i = 0; i < req.rawHeaders.length; i += 2) if (req.rawHeaders[i]!.toLowerCase() === 'host') hosts += 1;
  if (hosts > 1) return false;
  const host = req.headers.host;
  if (host === undefined) return true;
  // An IPv6 literal is bracketed in Host ([::1]:port).
  return host.toLowerCase().replace(/:\d+$/, '') === (ownHost.includes(':') ? `[${ownHost}]` : ownHost);
}

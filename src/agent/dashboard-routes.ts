import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { DashboardSessions, csrfAllows, sessionCookie, type DashboardSession } from './dashboard-session.js';
import { readJsonBody, stringField } from './request-body.js';
import { matchToken, type AgentTokenSet } from './token.js';

/**
 * The dashboard's own paths, under /ui on the agent's HTTP endpoint (README "The dashboard"):
 * the page (401 with the sign-in form until a session exists), its scripts and style (served
 * from the package, no third-party origin: an offline machine renders it), sign-in and
 * sign-out. The data comes from the admin API itself (/v1/…), with the session cookie.
 */
const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
};

/** The compiled page scripts and style (dist/ui next to dist/src). */
const ASSETS_DIR = new URL('../../ui/', import.meta.url);
const ASSET = /^[a-z][a-z-]*\.(js|css)$/;
const TYPES: Readonly<Record<string, string>> = { js: 'text/javascript; charset=utf-8', css: 'text/css; charset=utf-8' };
const assetCache = new Map<string, Buffer>();

/** Whether `url` is the dashboard's (then it has been answered). */
export async function serveDashboard(
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
  tokens: AgentTokenSet,
  sessions: DashboardSessions,
): Promise<boolean> {
  const path = url.pathname;
  if (path !== '/ui' && !path.startsWith('/ui/')) return false;
  const method = req.method ?? 'GET';
  if (path === '/ui' && method === 'GET') {
    res.writeHead(308, { ...SECURITY_HEADERS, location: '/ui/' }).end();
    return true;
  }
  if (path === '/ui/' && method === 'GET') {
    const session = sessions.of(req);
    page(res, session === undefined ? 401 : 200, session === undefined ? signInPage() : appPage(session));
    return true;
  }
  if (path.startsWith('/ui/assets/') && method === 'GET') {
    await asset(res, path.slice('/ui/assets/'.length));
    return true;
  }
  if (path === '/ui/session' && method === 'POST') {
    // Signing in from another site is refused (a login CSRF would sign the victim in as the attacker).
    if (req.headers.origin !== undefined && req.headers.origin !== `http://${req.headers.host ?? ''}`) {
      json(res, 403, { ok: false, code: 'POLICY_DENIED', message: 'sign-in from another origin is refused' });
      return true;
    }
    const body = await readJsonBody(req);
    const token = matchToken(`Bearer ${stringField(body, 'token', 'sign-in')!}`, tokens);
    if (token === undefined) {
      json(res, 401, { ok: false, code: 'UNAUTHENTICATED', message: 'wrong token' });
      return true;
    }
    const { id } = sessions.open(token);
    json(res, 200, { ok: true, name: token.name, role: token.role }, { 'set-cookie': sessionCookie(id) });
    return true;
  }
  if (path === '/ui/logout' && method === 'POST') {
    const session = sessions.of(req);
    if (session !== undefined && !csrfAllows(req, session)) {
      json(res, 403, { ok: false, code: 'POLICY_DENIED', message: 'missing or wrong CSRF token' });
      return true;
    }
    sessions.close(req);
    json(res, 200, { ok: true }, { 'set-cookie': sessionCookie(undefined) });
    return true;
  }
  json(res, 404, { ok: false, code: 'NOT_FOUND', message: `no dashboard path ${method} ${path}` });
  return true;
}

async function asset(res: ServerResponse, name: string): Promise<void> {
  if (!ASSET.test(name)) {
    json(res, 404, { ok: false, code: 'NOT_FOUND', message: 'no such dashboard file' });
    return;
  }
  let bytes = assetCache.get(name);
  if (bytes === undefined) {
    try {
      bytes = await readFile(new URL(name, ASSETS_DIR));
    } catch (cause) {
      const missing = (cause as NodeJS.ErrnoException).code === 'ENOENT';
      json(res, missing ? 404 : 500, {
        ok: false,
        code: missing ? 'NOT_FOUND' : 'IO',
        message: missing ? 'no such dashboard file' : 'the dashboard file cannot be read',
      });
      return;
    }
    assetCache.set(name, bytes);
  }
  res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': TYPES[name.slice(name.lastIndexOf('.') + 1)]!, 'cache-control': 'no-cache' });
  res.end(bytes);
}

function page(res: ServerResponse, status: number, html: string): void {
  res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': 'text/html; charset=utf-8' });
  res.end(html);
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

/** Text for an HTML attribute or element: every character HTML gives a meaning escaped. */
function esc(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function shell(title: string, head: string, body: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/ui/assets/app.css">
${head}
</head>
<body>
${body}
</body>
</html>
`;
}

function signInPage(): string {
  return shell(
    'Hot Patch — sign in',
    '<script type="module" src="/ui/assets/sign-in.js"></script>',
    `<main class="sign-in">
<h1>XPScerpto Hot Patch</h1>
<p>This agent's dashboard needs one of its tokens (the operator's, or a read-only one).</p>
<form id="sign-in" autocomplete="off">
<label for="token">Token</label>
<input id="token" name="token" type="password" required>
<button type="submit">Sign in</button>
<p id="sign-in-error" class="error" role="alert"></p>
</form>
</main>`,
  );
}

function appPage(session: DashboardSession): string {
  return shell(
    'Hot Patch — agent',
    `<meta name="hotpatch-csrf" content="${esc(session.csrf)}">
<meta name="hotpatch-role" content="${esc(session.token.role)}">
<meta name="hotpatch-token-name" content="${esc(session.token.name)}">
<script type="module" src="/ui/assets/main.js"></script>`,
    `<header class="top"><h1>XPScerpto Hot Patch</h1><span id="who"></span><span id="live" class="badge">connecting…</span><button id="sign-out" type="button">Sign out</button></header>
<main id="app"><p>Loading…</p></main>
<dialog id="confirm"><form method="dialog"><p id="confirm-text"></p><menu><button value="cancel">Cancel</button><button id="confirm-ok" value="ok" class="danger">Confirm</button></menu></form></dialog>`,
  );
}

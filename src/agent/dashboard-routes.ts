import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';

/**
 * The dashboard's own paths, under /ui on the agent's HTTP endpoint (README "The dashboard"):
 * the page and its scripts and style, served from the package (no third-party origin: an
 * offline machine renders it). They hold no data: the page asks for a token, keeps it in the
 * tab's sessionStorage (one origin: this agent's port, no other) and reads everything from the
 * admin API with it as a bearer token, like any client. No cookie: nothing the browser would
 * send by itself to another site or another port of 127.0.0.1, so no request can be forged.
 */
const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
};

/** The compiled page scripts and style (dist/ui next to dist/src). */
const ASSETS_DIR = new URL('../../ui/', import.meta.url);
/** The files the page is made of, and no other (a stale build output is never served). */
const ASSETS: ReadonlySet<string> = new Set(['main.js', 'api.js', 'views.js', 'chart.js', 'dom.js', 'app.css']);
const TYPES: Readonly<Record<string, string>> = { js: 'text/javascript; charset=utf-8', css: 'text/css; charset=utf-8' };
const assetCache = new Map<string, Buffer>();

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Hot Patch — agent</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/ui/assets/app.css">
<script type="module" src="/ui/assets/main.js"></script>
</head>
<body>
<header class="top"><h1>XPScerpto Hot Patch</h1><span id="who"></span><span id="live" class="badge">signed out</span><button id="sign-out" type="button" hidden>Sign out</button></header>
<main id="app"><p>Loading…</p></main>
<dialog id="confirm"><form method="dialog"><p id="confirm-text"></p><menu><button value="cancel">Cancel</button><button id="confirm-ok" value="ok" class="danger">Confirm</button></menu></form></dialog>
</body>
</html>
`;

/** Whether `url` is the dashboard's (then it has been answered). */
export async function serveDashboard(req: IncomingMessage, res: ServerResponse, url: URL): Promise<boolean> {
  const path = url.pathname;
  if (path !== '/ui' && !path.startsWith('/ui/')) return false;
  const method = req.method ?? 'GET';
  if (method !== 'GET') {
    json(res, 405, { ok: false, code: 'INVALID', message: `${method} is not allowed on ${path}` });
  } else if (path === '/ui') {
    res.writeHead(308, { ...SECURITY_HEADERS, location: '/ui/' }).end();
  } else if (path === '/ui/') {
    res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-cache' }).end(PAGE);
  } else if (path.startsWith('/ui/assets/')) {
    await asset(res, path.slice('/ui/assets/'.length));
  } else {
    json(res, 404, { ok: false, code: 'NOT_FOUND', message: `no dashboard path ${path}` });
  }
  return true;
}

async function asset(res: ServerResponse, name: string): Promise<void> {
  if (!ASSETS.has(name)) {
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

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

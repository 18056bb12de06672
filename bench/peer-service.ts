/*
 * The service bench/peer-reload.ts replaces code in: a small HTTP service on 127.0.0.1 whose
 * every answer is `<code> <sha256 hex of the URL> <count>\n`, where `<code>` is the marker of
 * the code that computed it ("v1" before the swap, "v2" after) and `<count>` the in-memory
 * session counter: requests this process has served, kept in memory only. Headers repeat them
 * (`x-code`, `x-count`, `x-pid`) for the load generator's script.
 *
 * The code is an ES module exporting `api.page(url)` (PEER_CODE); how it is replaced depends
 * on the mode:
 *   PEER_MODE=plain     the module is imported at start, nothing else: `pm2 reload` replaces it
 *                       by starting new processes on the file's new contents (run under pm2 in
 *                       cluster mode, two instances).
 *   PEER_MODE=hotpatch  the module is the built-in version of the hot-swappable target
 *                       `bench.peer.page`; the agent serves on loopback HTTP with a token, and
 *                       `hotpatch apply` brings the signed v2 in without a restart.
 *
 * Environment: PEER_MODE, PEER_CODE, PEER_PORT (0: pick one), PEER_STOP (below); hotpatch mode
 * also PEER_STATE_DIR, PEER_REPO, PEER_TRUST, PEER_TOKEN_FILE.
 * Stdout: JSON lines. `{"event":"ready","port":…,"pid":…,"agent":…}` once listening; in hotpatch
 * mode also one `{"event":"hotpatch","type":…,"ts":…,"at":…}` per event of the runtime's bus,
 * `at` being the epoch time in ms (sub-millisecond) when it was published here.
 * SIGINT or SIGTERM (what pm2 sends the old process of a reload): a graceful stop. Every answer
 * from then on says `connection: close` (keep-alive clients reconnect, to the new process under
 * pm2), the server stops accepting, and the process exits once its connections are closed (the
 * agent closed first in hotpatch mode). PEER_STOP=drain (default): idle keep-alive connections
 * are left to close after their next answer; PEER_STOP=close: `server.close()` as pm2's
 * documentation shows it, which in Node 20 also closes idle keep-alive connections at once.
 */
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import { Server } from 'node:net';
import { pathToFileURL } from 'node:url';
import { startAgent, type Agent } from '../src/index-agent.js';
import { DynamicInstaller, HotPatchRuntime } from '../src/index-runtime.js';

const PEER_TARGET = 'bench.peer.page';

interface PageApi {
  page(url: string): string;
}

const env = process.env;
const need = (name: string): string => {
  const value = env[name];
  if (value === undefined || value === '') throw new Error(`peer-service: ${name} must be set`);
  return value;
};
const nowMs = (): number => performance.timeOrigin + performance.now();
const out = (line: Record<string, unknown>): void => {
  process.stdout.write(`${JSON.stringify(line)}\n`);
};

const mode = need('PEER_MODE');
if (mode !== 'plain' && mode !== 'hotpatch') throw new Error(`peer-service: PEER_MODE must be plain or hotpatch, got ${mode}`);
const stopMode = env.PEER_STOP ?? 'drain';
if (stopMode !== 'drain' && stopMode !== 'close') throw new Error(`peer-service: PEER_STOP must be drain or close, got ${stopMode}`);
const code = (await import(pathToFileURL(need('PEER_CODE')).href)) as { api: PageApi };

let page: (url: string) => string = (url) => code.api.page(url);
let agent: Agent | undefined;
let runtime: HotPatchRuntime | undefined;
if (mode === 'hotpatch') {
  const stateDir = need('PEER_STATE_DIR');
  runtime = new HotPatchRuntime({ stateDir, installer: new DynamicInstaller(stateDir) });
  const target = runtime.target<PageApi>(PEER_TARGET, {
    version: '1.0.0',
    impl: code.api,
    selfTest: (api) => {
      const expected = createHash('sha256').update('/self-test').digest('hex');
      if (api.page('/self-test').split(' ')[1] !== expected) throw new Error('known-answer test for /self-test failed');
    },
  });
  runtime.bus.subscribe((e) =>
    out({
      event: 'hotpatch',
      type: e.type,
      ts: e.ts,
      at: nowMs(),
      id: e.id,
      version: e.version,
      ...(e.type === 'CanaryStep' ? { verdict: e.detail?.verdict, calls: e.detail?.candidateCalls } : {}),
    }),
  );
  agent = await startAgent({
    stateDir,
    runtime,
    defaults: { repository: need('PEER_REPO'), trustStore: need('PEER_TRUST') },
    http: { port: 0, tokenFile: need('PEER_TOKEN_FILE') },
    log: false,
  });
  page = (url) => target.api.page(url);
}

let served = 0;
let closing = false;
const server = createServer((req, res) => {
  let body: string;
  try {
    body = page(req.url ?? '/');
  } catch (error) {
    res.writeHead(500, { 'content-type': 'text/plain' }).end(`${(error as Error).message}\n`);
    return;
  }
  served += 1;
  const headers: Record<string, string> = {
    'content-type': 'text/plain',
    'x-code': body.slice(0, body.indexOf(' ')),
    'x-count': String(served),
    'x-pid': String(process.pid),
  };
  if (closing) headers.connection = 'close';
  res.writeHead(200, headers).end(`${body} ${served}\n`);
});
await new Promise<void>((resolve, reject) => {
  server.once('error', reject);
  server.listen(Number(env.PEER_PORT ?? '0'), '127.0.0.1', () => resolve());
});
const address = server.address();

async function stop(): Promise<void> {
  if (closing) return;
  closing = true;
  const closed = new Promise((resolve) => {
    // drain: net.Server's close, not http.Server's, which (Node 19 and later) also drops idle
    // keep-alive connections at once, racing a request the client may be sending on one; so
    // each connection closes after its next answer (connection: close) and the process exits
    // once none is left. close: http.Server's close, as pm2's documentation shows.
    if (stopMode === 'drain') Server.prototype.close.call(server, resolve);
    else server.close(resolve);
  });
  // A client that keeps its connection busy does not hold the stop for ever.
  setTimeout(() => server.closeAllConnections(), 5000).unref();
  await agent?.close();
  runtime?.close();
  await closed;
  process.exit(0);
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => void stop());

out({
  event: 'ready',
  mode,
  pid: process.pid,
  port: typeof address === 'object' && address !== null ? address.port : 0,
  ...(agent === undefined ? {} : { agent: agent.address }),
});

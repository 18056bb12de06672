/*
 * Benchmark 10 — peer-reload: replacing the code of a live HTTP service, `hotpatch apply`
 * against `pm2 reload`, under the same load.
 *
 * The service (bench/peer-service.ts): HTTP on 127.0.0.1, every answer `<code> <sha256 of the
 * URL> <count>`, where `<code>` marks the code that computed it (v1, then v2 after the swap) and
 * `<count>` is an in-memory session counter (requests the process has served). Load: `wrk`
 * (Debian's package), 2 threads and 32 keep-alive connections, with a Lua script that reads
 * every answer's headers and records, on the wall clock (gettimeofday through LuaJIT's ffi),
 * when the first v2 answer and the last v1 answer arrived, the lowest counter a v2 answer
 * carried, and answers per 100 ms. Beside it a probe (one request every 10 ms from this
 * process) gives the counter just before the swap. The code is replaced once per run, four
 * ways, each on a fresh service, the ways interleaved round by round:
 *   - `hotpatch apply --steps 1`: the real CLI (dist/src/cli/main.js) against the service's
 *     agent (loopback HTTP + token file), applying a really signed v2 (packPatch + signPatch, a
 *     trust store of one Ed25519 key): fetch, verify, stage, load, self-test, one canary step
 *     at 100 %, promote;
 *   - `hotpatch apply` with the default canary steps (0.4 %, 5 %, 25 %, 50 %, then promotion);
 *   - `pm2 reload` (pm2 from npm, a dev dependency, with its own PM2_HOME in the temp
 *     directory): the same service as a plain app in cluster mode, 2 instances, its code file
 *     rewritten to v2 and then `pm2 reload`. On pm2's SIGINT the old process answers with
 *     `connection: close`, stops accepting and exits once its connections are gone (a drain);
 *   - the same, with the app stopping by `server.close()` as pm2's documentation shows: in
 *     Node 20 that also closes idle keep-alive connections at once, racing requests clients are
 *     sending on them (the failed requests of the earlier measurement, 43).
 * Reported per way (median over rounds, best round beside it):
 *   - new code serving: until every answer comes from v2 (the later of the last v1 answer and
 *     the first v2 answer wrk received), timed from the command's start (`pm2 reload`; the
 *     hotpatch CLI) and, for hotpatch, from the agent receiving the request (the `ts` of its
 *     `Requested` event, taken once the request is read, before it is recorded); the first v2
 *     answer is in the note;
 *   - failed requests: wrk's non-2xx/3xx answers plus its socket errors (connect, read, write,
 *     timeout);
 *   - state kept: every v2 answer's counter is above the counter the probe saw just before the
 *     swap began (the counter went on; not reset);
 *   - throughput: wrk's answers per second over the whole run (during the swap in the note);
 *   - for --steps 1, where the time goes: CLI start → agent receipt → canary started (v2
 *     serving every call) → promoted → CLI exit, from the events the service's runtime
 *     published (printed per run, with every event, as ms from the agent's receipt).
 * Goals (reported, not asserted): hotpatch --steps 1 serves the new code ≥ 100× sooner than pm2
 * reload (the draining app: pm2 at its best; hotpatch timed from the agent receiving the
 * request, pm2 from `pm2 reload` start); 0 failed requests and the counter kept for both
 * hotpatch ways.
 *
 * Needs `wrk` (installed with apt-get when missing and running as root with apt-get, as
 * .ci/run does; otherwise the benchmark stops saying how to install it) and pm2 (`npm ci`).
 * Every process it starts — services, wrk, the CLI, the pm2 daemon (`pm2 kill`) — is stopped
 * and the temp directory removed in `finally`, and by an exit hook if the run is interrupted.
 *
 * --quick: 1 round of each way, wrk running at least 4 s, the swap 1 s after it starts and at
 * least 1 s of load after the swap (about 25 s in all). Full: 3 rounds, at least 10 s of load
 * per run, the swap 3 s in, at least 2 s after it.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { Agent as HttpAgent, request } from 'node:http';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { generateKeyPair, packPatch, signPatch } from '../src/index.js';
import { collectJsonLines, type JsonLine } from '../test/support/json-lines.js';
import { runNode } from '../test/support/run-node.js';
import { CLI_MAIN, PACKAGE_ROOT } from './fixtures.js';
import { judge, median, withTempDir, type Row } from './harness.js';

const NAME = 'peer-reload';
const TARGET = 'bench.peer.page';
const PATCH_ID = 'peer-page-v2';
const SERVICE = resolve(PACKAGE_ROOT, 'dist', 'bench', 'peer-service.js');
const PM2_APP = 'peer-bench';
const THREADS = 2;
const CONNECTIONS = 32;
const PATH = '/session/peer-bench';
const QUICK = { rounds: 1, minRunMs: 4000, beforeMs: 1000, afterMs: 1000 };
const FULL = { rounds: 3, minRunMs: 10_000, beforeMs: 3000, afterMs: 2000 };
/** wrk is stopped (SIGINT) once the run has what it needs; this only bounds a run that hangs. */
const WRK_CAP_S = 120;
const PROBE_GAP_MS = 10;
const GOAL = '>= 100';
const HANG_GUARD_MS = 120_000;

const HP1 = 'hotpatch apply --steps 1';
const HPD = 'hotpatch apply (default steps)';
const PM2 = 'pm2 reload (2 instances)';
const PM2C = 'pm2 reload, app stopping with server.close()';
type Way = typeof HP1 | typeof HPD | typeof PM2 | typeof PM2C;
type Pm2Way = typeof PM2 | typeof PM2C;

const nowMs = (): number => performance.timeOrigin + performance.now();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The service's code, v1 or v2: what pm2 reloads from disk and what the signed patch carries. */
function codeSource(marker: 'v1' | 'v2'): string {
  return `import { createHash } from 'node:crypto';
// ${marker} of the peer-reload benchmark's page: the marker, then the SHA-256 of the URL.
export const api = {
  page(url) {
    return '${marker} ' + createHash('sha256').update(url).digest('hex');
  },
};
`;
}

/**
 * wrk's script: per thread, which code answered (the x-code header), when the first v2 and the
 * last v1 answer arrived (epoch ms, gettimeofday through LuaJIT's ffi), the lowest counter of a
 * v2 answer, answers per 100 ms; done() merges the threads and prints one JSON line.
 */
const WRK_SCRIPT = `
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_usec; } peer_timeval;
int gettimeofday(peer_timeval *tv, void *tz);
]]
local tv = ffi.new("peer_timeval")
local function now_ms()
  ffi.C.gettimeofday(tv, nil)
  return tonumber(tv.tv_sec) * 1000 + tonumber(tv.tv_usec) / 1000
end
local BUCKET_MS = 100
local threads = {}
function setup(thread) table.insert(threads, thread) end

n_old, n_new, n_other = 0, 0, 0
first_new, last_old, first_any, last_any = 0, 0, 0, 0
min_new_count = -1
buckets, buckets_new = {}, {}

function response(status, headers, body)
  local t = now_ms()
  if first_any == 0 then first_any = t end
  last_any = t
  local b = math.floor(t / BUCKET_MS)
  buckets[b] = (buckets[b] or 0) + 1
  local code = headers["x-code"]
  if status ~= 200 then
    n_other = n_other + 1
  elseif code == "v2" then
    n_new = n_new + 1
    buckets_new[b] = (buckets_new[b] or 0) + 1
    if first_new == 0 then first_new = t end
    local c = tonumber(headers["x-count"])
    if c ~= nil and (min_new_count < 0 or c < min_new_count) then min_new_count = c end
  elseif code == "v1" then
    n_old = n_old + 1
    last_old = t
  else
    n_other = n_other + 1
  end
end

local function lowest(a, b) if a <= 0 then return b elseif b <= 0 then return a elseif a < b then return a else return b end end
local function highest(a, b) if a > b then return a else return b end end

function done(summary, latency, requests)
  local old, new, other = 0, 0, 0
  local fn, lo, fa, la, mnc = 0, 0, 0, 0, -1
  local all, alln = {}, {}
  for _, t in ipairs(threads) do
    old = old + t:get("n_old"); new = new + t:get("n_new"); other = other + t:get("n_other")
    fn = lowest(fn, t:get("first_new")); fa = lowest(fa, t:get("first_any"))
    lo = highest(lo, t:get("last_old")); la = highest(la, t:get("last_any"))
    local c = t:get("min_new_count")
    if c >= 0 and (mnc < 0 or c < mnc) then mnc = c end
    for k, v in pairs(t:get("buckets")) do all[k] = (all[k] or 0) + v end
    for k, v in pairs(t:get("buckets_new")) do alln[k] = (alln[k] or 0) + v end
  end
  local keys = {}
  for k in pairs(all) do table.insert(keys, k) end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do table.insert(parts, string.format("[%d,%d,%d]", k * BUCKET_MS, all[k], alln[k] or 0)) end
  local e = summary.errors
  io.write(string.format(
    'PEER_RESULT {"requests":%d,"durationUs":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"old":%d,"new":%d,"other":%d,"firstNew":%.3f,"lastOld":%.3f,"firstAny":%.3f,"lastAny":%.3f,"minNewCount":%d,' ..
    '"p50Us":%d,"p99Us":%d,"maxUs":%d,"buckets":[%s]}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    old, new, other, fn, lo, fa, la, mnc,
    latency:percentile(50), latency:percentile(99), latency.max, table.concat(parts, ",")))
end
`;

/** What wrk's script printed. Times are epoch ms; 0 when there was none. */
interface WrkResult {
  requests: number;
  durationUs: number;
  errors: { connect: number; read: number; write: number; status: number; timeout: number };
  old: number;
  new: number;
  other: number;
  firstNew: number;
  lastOld: number;
  firstAny: number;
  lastAny: number;
  minNewCount: number;
  p50Us: number;
  p99Us: number;
  maxUs: number;
  /** [bucket start (epoch ms), answers, v2 answers] per 100 ms. */
  buckets: [number, number, number][];
}

/** One replacement of the code under load. Times are epoch ms. */
interface Round {
  way: Way;
  /** The command's start: the hotpatch CLI spawned, or `pm2 reload` spawned. */
  startAt: number;
  /** The command's exit. */
  endAt: number;
  /** hotpatch: the agent received the request (its Requested event's ts). */
  agentAt: number | undefined;
  /** The first v2 answer wrk received. */
  firstNewAt: number;
  /** From then on every answer was v2: the later of the last v1 answer and the first v2 one (NaN when refused). */
  allNewAt: number;
  /** hotpatch: why the apply was refused or rolled back (v1 kept serving); undefined when v2 serves. */
  refused: string | undefined;
  failed: number;
  wrk: WrkResult;
  /** Counter the probe saw just before the swap, and the lowest counter of any v2 answer. */
  counterBefore: number;
  lowestNewCounter: number;
  /** Undefined when no answer came from v2. */
  kept: boolean | undefined;
  throughput: number;
  swapThroughput: number;
  probeFailures: number;
  /** hotpatch: each event type's first publication (epoch ms, sub-ms) in the service. */
  events: Map<string, { at: number; ts: number; detail: JsonLine }>;
}

// --- processes: every child is killed by an exit hook should the run be interrupted ---

const live = new Set<ChildProcess>();
/** `<PM2_HOME>/pm2.pid` while our pm2 daemon may run. */
let pm2PidFile: string | undefined;
let exitHook = false;

/** Kills the pm2 daemon named by our PM2_HOME's pid file, if it still runs (its cluster workers exit when it goes). */
function killPm2Daemon(): void {
  if (pm2PidFile === undefined || !existsSync(pm2PidFile)) return;
  const pid = Number(readFileSync(pm2PidFile, 'utf8').trim());
  if (!Number.isSafeInteger(pid) || pid <= 1) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

function installExitHook(): void {
  if (exitHook) return;
  exitHook = true;
  process.on('exit', () => {
    for (const child of live) child.kill('SIGKILL');
    killPm2Daemon();
  });
}

function track(child: ChildProcess): ChildProcess {
  installExitHook();
  live.add(child);
  child.once('exit', () => live.delete(child));
  return child;
}

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((r) => child.once('exit', () => r()));
}

/** SIGTERM (or `signal`), then SIGKILL after `graceMs`; resolves once it has exited. */
async function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM', graceMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited(child);
  clearTimeout(timer);
}

interface Ran {
  status: number | null;
  stdout: string;
  stderr: string;
}

function runCommand(command: string, args: readonly string[], env: NodeJS.ProcessEnv, hangGuardMs = HANG_GUARD_MS): Promise<Ran> {
  return new Promise((resolvePromise, reject) => {
    const child = track(spawn(command, [...args], { env, stdio: ['ignore', 'pipe', 'pipe'] }));
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const guard = setTimeout(() => child.kill('SIGKILL'), hangGuardMs);
    child.once('error', (error) => {
      clearTimeout(guard);
      reject(new Error(`cannot run ${command}: ${error.message}`));
    });
    child.once('close', (status) => {
      clearTimeout(guard);
      resolvePromise({ status, stdout, stderr });
    });
  });
}

const tail = (text: string, lines = 6): string => text.trim().split('\n').slice(-lines).join(' | ');

// --- outside programs ---

const WRK_HOW = 'apt-get install -y --no-install-recommends wrk';

function findWrk(): string | undefined {
  const r = spawnSync('sh', ['-c', 'command -v wrk'], { encoding: 'utf8' });
  const path = r.status === 0 ? r.stdout.trim() : '';
  return path !== '' ? path : existsSync('/usr/bin/wrk') ? '/usr/bin/wrk' : undefined;
}

/** wrk's path; installs Debian's package when missing and running as root with apt-get, else throws saying how. */
function ensureWrk(): string {
  const found = findWrk();
  if (found !== undefined) return found;
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const hasApt = spawnSync('sh', ['-c', 'command -v apt-get'], { stdio: 'ignore' }).status === 0;
  if (!isRoot || !hasApt) {
    throw new Error(`peer-reload needs wrk (the Debian package wrk), which is not installed: install it as root with \`${WRK_HOW}\``);
  }
  console.log(`installing wrk: ${WRK_HOW}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  for (const args of [['update'], ['install', '-y', '--no-install-recommends', 'wrk']]) {
    const r = spawnSync('apt-get', args, { stdio: ['ignore', 'inherit', 'inherit'], env });
    if (r.status !== 0) throw new Error(`\`apt-get ${args.join(' ')}\` failed (exit ${r.status}) while installing wrk: install it by hand with \`${WRK_HOW}\``);
  }
  const installed = findWrk();
  if (installed === undefined) throw new Error(`wrk still missing after \`${WRK_HOW}\``);
  return installed;
}

/** pm2's command (from node_modules: a dev dependency). */
function pm2Bin(): string {
  try {
    const pkg = createRequire(import.meta.url).resolve('pm2/package.json');
    return join(pkg, '..', 'bin', 'pm2');
  } catch {
    throw new Error('peer-reload needs pm2 (a dev dependency of this package): run `npm ci` (or `npm install`) first');
  }
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => r());
  });
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  await new Promise((r) => server.close(r));
  if (port === 0) throw new Error('no free port on 127.0.0.1');
  return port;
}

// --- load: wrk and the probe ---

interface Answer {
  status: number;
  code: string;
  count: number;
  pid: number;
}

function get(port: number, path: string, agent: HttpAgent | false, timeoutMs = 2000): Promise<Answer> {
  return new Promise((resolvePromise, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent }, (res) => {
      res.resume();
      res.on('end', () =>
        resolvePromise({
          status: res.statusCode ?? 0,
          code: String(res.headers['x-code'] ?? ''),
          count: Number(res.headers['x-count'] ?? Number.NaN),
          pid: Number(res.headers['x-pid'] ?? Number.NaN),
        }),
      );
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

interface Probe {
  /** Answers in order, each with when it arrived. */
  readonly answers: (Answer & { at: number })[];
  failures: number;
  firstFailure: string | undefined;
  stop(): Promise<void>;
}

/** One request every PROBE_GAP_MS on its own keep-alive connection, every answer kept. */
function startProbe(port: number): Probe {
  const agent = new HttpAgent({ keepAlive: true, maxSockets: 1 });
  let running = true;
  const probe: Probe = {
    answers: [],
    failures: 0,
    firstFailure: undefined,
    stop: async () => {
      running = false;
      await loop;
      agent.destroy();
    },
  };
  const loop = (async () => {
    while (running) {
      try {
        const a = await get(port, `${PATH}?probe`, agent);
        if (a.status === 200) probe.answers.push({ ...a, at: nowMs() });
        else {
          probe.failures += 1;
          probe.firstFailure ??= `HTTP ${a.status}`;
        }
      } catch (error) {
        probe.failures += 1;
        probe.firstFailure ??= (error as Error).message;
      }
      await sleep(PROBE_GAP_MS);
    }
  })();
  return probe;
}

interface Wrk {
  readonly startedAt: number;
  /** SIGINT (wrk prints its results and runs done()), then the script's JSON. */
  finish(): Promise<WrkResult>;
}

function startWrk(wrkPath: string, script: string, port: number): Wrk {
  const startedAt = nowMs();
  const child = track(
    spawn(wrkPath, [`-t${THREADS}`, `-c${CONNECTIONS}`, `-d${WRK_CAP_S}s`, '-s', script, `http://127.0.0.1:${port}${PATH}`], { stdio: ['ignore', 'pipe', 'pipe'] }),
  );
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const closed = new Promise<number | null>((r) => child.once('close', (status) => r(status)));
  return {
    startedAt,
    async finish() {
      child.kill('SIGINT');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      const status = await closed;
      clearTimeout(timer);
      const line = stdout.split('\n').find((l) => l.startsWith('PEER_RESULT '));
      if (status !== 0 || line === undefined) throw new Error(`wrk exited with ${status} without its result: ${tail(stdout + stderr)}`);
      return JSON.parse(line.slice('PEER_RESULT '.length)) as WrkResult;
    },
  };
}

interface Setup {
  dir: string;
  wrk: string;
  script: string;
  pm2: string;
  pm2Env: NodeJS.ProcessEnv;
  repo: string;
  trust: string;
  tokenFile: string;
  v1: string;
  v2: string;
  timing: typeof QUICK;
  pm2Started: boolean;
}

/**
 * Runs the load around one swap: wrk and the probe start, `beforeMs` later `swap()` runs, then
 * the load goes on until every answer is v2 and at least `afterMs` more (and `minRunMs` in all).
 */
async function underLoad(
  s: Setup,
  port: number,
  way: Way,
  swap: () => Promise<{ startAt: number; endAt: number; refused?: string }>,
): Promise<Omit<Round, 'agentAt' | 'events'>> {
  const wrk = startWrk(s.wrk, s.script, port);
  const probe = startProbe(port);
  let startAt = 0;
  let endAt = 0;
  let refused: string | undefined;
  let counterBefore = Number.NaN;
  try {
    await sleep(s.timing.beforeMs);
    const before = probe.answers.at(-1);
    if (before === undefined || before.code !== 'v1') throw new Error(`${way}: the probe saw no v1 answer before the swap (${probe.firstFailure ?? 'no answer'})`);
    counterBefore = before.count;
    ({ startAt, endAt, refused } = await swap());
    const deadline = nowMs() + 30_000;
    while (refused === undefined && probe.answers.at(-1)?.code !== 'v2') {
      if (nowMs() > deadline) throw new Error(`${way}: the probe saw no v2 answer within 30 s of the command's end`);
      await sleep(20);
    }
    const stopAt = Math.max(wrk.startedAt + s.timing.minRunMs, nowMs() + s.timing.afterMs);
    await sleep(stopAt - nowMs());
  } catch (error) {
    // Stop the load, but report what went wrong first.
    await probe.stop();
    await wrk.finish().catch(() => undefined);
    throw error;
  }
  await probe.stop();
  const result = await wrk.finish();
  if (refused === undefined && result.new === 0) throw new Error(`${way}: wrk received no v2 answer`);
  const allNewAt = refused === undefined ? Math.max(result.firstNew, result.lastOld) : Number.NaN;
  const newCounters = [result.minNewCount, ...probe.answers.filter((a) => a.code === 'v2').map((a) => a.count)].filter((c) => c >= 0);
  const lowestNewCounter = newCounters.length === 0 ? Number.NaN : Math.min(...newCounters);
  const e = result.errors;
  const swapEnd = refused === undefined ? allNewAt : endAt;
  const inWindow = result.buckets.filter(([at]) => at + 100 > startAt && at < swapEnd);
  const windowMs = Math.max(100, inWindow.length * 100);
  return {
    way,
    startAt,
    endAt,
    firstNewAt: result.firstNew,
    allNewAt,
    refused,
    failed: e.connect + e.read + e.write + e.status + e.timeout,
    wrk: result,
    counterBefore,
    lowestNewCounter,
    kept: newCounters.length === 0 ? undefined : lowestNewCounter > counterBefore,
    throughput: result.requests / (result.durationUs / 1e6),
    swapThroughput: (inWindow.reduce((n, [, total]) => n + total, 0) / windowMs) * 1000,
    probeFailures: probe.failures,
  };
}

async function hotpatchRound(s: Setup, way: typeof HP1 | typeof HPD, label: string): Promise<Round> {
  const stateDir = join(s.dir, label, 'state');
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const child = track(
    spawn(process.execPath, [SERVICE], {
      cwd: PACKAGE_ROOT,
      env: {
        ...process.env,
        PEER_MODE: 'hotpatch',
        PEER_CODE: s.v1,
        PEER_PORT: '0',
        PEER_STATE_DIR: stateDir,
        PEER_REPO: s.repo,
        PEER_TRUST: s.trust,
        PEER_TOKEN_FILE: s.tokenFile,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
  const lines: JsonLine[] = [];
  let stderr = '';
  collectJsonLines(child.stdout!, lines);
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  try {
    const deadline = nowMs() + 30_000;
    let ready: JsonLine | undefined;
    while ((ready = lines.find((l) => l.event === 'ready')) === undefined) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${way}: the service exited before it was ready: ${tail(stderr)}`);
      if (nowMs() > deadline) throw new Error(`${way}: the service was not ready within 30 s: ${tail(stderr)}`);
      await sleep(20);
    }
    const port = Number(ready.port);
    const agentUrl = String(ready.agent);
    const args = [CLI_MAIN, 'apply', '--agent', agentUrl, '--token-file', s.tokenFile, '--target', TARGET, '--patch', PATCH_ID, '--json', ...(way === HP1 ? ['--steps', '1'] : [])];
    const r = await underLoad(s, port, way, async () => {
      const startAt = nowMs();
      const cli = await runNode(args, { cwd: PACKAGE_ROOT, hangGuardMs: HANG_GUARD_MS });
      const endAt = nowMs();
      if (cli.status === 0 && cli.json?.ok === true) return { startAt, endAt };
      // Exit 1: the patch was refused or rolled back (the canary's verdict): an outcome, reported.
      // Anything else (usage, an agent that cannot be reached, a crash) means the run is broken.
      const why = cli.json === undefined ? tail(cli.stderr) : `${String(cli.json.code)}: ${String(cli.json.message)}`;
      if (cli.status === 1 && cli.json !== undefined) return { startAt, endAt, refused: why };
      throw new Error(`${way}: hotpatch apply exited ${cli.status ?? cli.signal}: ${why}`);
    });
    const events = new Map<string, { at: number; ts: number; detail: JsonLine }>();
    for (const l of lines) {
      if (l.event === 'hotpatch' && !events.has(String(l.type))) events.set(String(l.type), { at: Number(l.at), ts: Date.parse(String(l.ts)), detail: l });
    }
    const requested = events.get('Requested');
    if (requested === undefined) throw new Error(`${way}: the service published no Requested event`);
    return { ...r, agentAt: requested.ts, events };
  } finally {
    await stopChild(child);
  }
}

async function pm2(s: Setup, args: readonly string[]): Promise<Ran> {
  const r = await runCommand(process.execPath, [s.pm2, ...args], s.pm2Env);
  if (r.status !== 0) throw new Error(`pm2 ${args.join(' ')} exited ${r.status}: ${tail(r.stdout + r.stderr)}`);
  return r;
}

async function pm2Round(s: Setup, way: Pm2Way, label: string): Promise<Round> {
  const dir = join(s.dir, label);
  await mkdir(dir, { recursive: true });
  const code = join(dir, 'page.mjs');
  await writeFile(code, codeSource('v1'));
  const port = await freePort();
  const ecosystem = join(dir, 'ecosystem.json');
  await writeFile(
    ecosystem,
    JSON.stringify({
      apps: [
        {
          name: PM2_APP,
          script: SERVICE,
          cwd: PACKAGE_ROOT,
          exec_mode: 'cluster',
          instances: 2,
          env: { PEER_MODE: 'plain', PEER_CODE: code, PEER_PORT: String(port), PEER_STOP: way === PM2 ? 'drain' : 'close' },
          out_file: join(dir, 'out.log'),
          error_file: join(dir, 'err.log'),
        },
      ],
    }),
  );
  s.pm2Started = true;
  await pm2(s, ['start', ecosystem]);
  try {
    // Both instances answering (v1) before the load starts.
    const pids = new Set<number>();
    const deadline = nowMs() + 30_000;
    while (pids.size < 2) {
      if (nowMs() > deadline) throw new Error(`${way}: the app did not answer from 2 instances within 30 s (saw ${pids.size}): ${tail(readFileSync(join(dir, 'err.log'), 'utf8'))}`);
      try {
        const a = await get(port, PATH, false, 1000);
        if (a.status === 200 && a.code === 'v1') pids.add(a.pid);
      } catch {
        // not listening yet
      }
      await sleep(50);
    }
    const r = await underLoad(s, port, way, async () => {
      // The new code on disk (atomically, as a deploy would), then the reload.
      const next = `${code}.next`;
      await writeFile(next, codeSource('v2'));
      await rename(next, code);
      const startAt = nowMs();
      await pm2(s, ['reload', PM2_APP]);
      return { startAt, endAt: nowMs() };
    });
    return { ...r, agentAt: undefined, events: new Map() };
  } finally {
    await runCommand(process.execPath, [s.pm2, 'delete', PM2_APP], s.pm2Env);
  }
}

// --- report ---

const ms = (x: number): string => (x >= 100 ? x.toFixed(0) : x.toFixed(1));
const int = (x: number): string => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : 'none');
/** Median and best (lowest) of what there is; NaN when nothing (every round refused). */
const med = (values: number[]): number => (values.length === 0 ? Number.NaN : median(values));
const lowest = (values: number[]): number => (values.length === 0 ? Number.NaN : Math.min(...values));

function counterText(r: Round): string {
  if (r.kept === undefined) return `no v2 answer (counter ${int(r.counterBefore)} before)`;
  return `counter ${r.kept ? 'kept' : 'RESET'} (lowest v2 counter ${int(r.lowestNewCounter)}, ${int(r.counterBefore)} just before)`;
}

function describe(r: Round): string {
  const t0 = r.agentAt ?? r.startAt;
  const e = r.wrk.errors;
  const errors = r.failed === 0 ? '0 failed' : `${r.failed} failed (connect ${e.connect}, read ${e.read}, write ${e.write}, non-2xx ${e.status}, timeout ${e.timeout})`;
  const serving =
    r.refused !== undefined
      ? `REFUSED, v1 kept serving (${r.refused}); ${r.wrk.new} v2 answers before that`
      : `every answer v2 ${ms(r.allNewAt - t0)} ms ${r.agentAt === undefined ? 'after `pm2 reload` started' : `after the agent got the request (${ms(r.allNewAt - r.startAt)} ms after CLI start)`}; ` +
        `first v2 answer +${ms(r.firstNewAt - t0)} ms`;
  return (
    `${serving}; command ${ms(r.endAt - r.startAt)} ms; ${errors}; ${counterText(r)}; ` +
    `${int(r.throughput)} req/s (${int(r.swapThroughput)} during the swap); p99 ${ms(r.wrk.p99Us / 1000)} ms` +
    (r.probeFailures > 0 ? `; probe: ${r.probeFailures} failed` : '')
  );
}

/** The service's events, as ms from the agent receiving the request. */
function eventLine(r: Round): string {
  const t0 = r.agentAt!;
  const parts = [`CLI start ${ms(r.startAt - t0)}`];
  for (const [type, e] of r.events) {
    if (type === 'Requested') parts.push(`Requested recorded +${ms(e.at - t0)}`);
    else parts.push(`${type} +${ms(e.at - t0)}${type === 'CanaryStep' ? ` (${String(e.detail.verdict)}, ${String(e.detail.calls)} calls)` : ''}`);
  }
  if (r.firstNewAt > 0) parts.push(`first v2 answer +${ms(r.firstNewAt - t0)}`);
  parts.push(`CLI exit +${ms(r.endAt - t0)}`);
  return `    ms from the agent getting the request: ${parts.join(', ')}`;
}

/** "; refused in 1 of 3 rounds (first: …)" when some were. */
function refusals(rounds: Round[]): string {
  const refused = rounds.filter((r) => r.refused !== undefined);
  return refused.length === 0 ? '' : `; REFUSED in ${refused.length} of ${rounds.length} rounds, left out of the times (first: ${refused[0]!.refused})`;
}

function timeRows(rounds: Round[], way: typeof HP1 | typeof HPD, pm2Median: number): Row[] {
  const mine = rounds.filter((r) => r.way === way);
  const served = mine.filter((r) => r.refused === undefined);
  const fromAgent = served.map((r) => r.allNewAt - r.agentAt!);
  const fromCli = served.map((r) => r.allNewAt - r.startAt);
  const m = med(fromAgent);
  const goal = way === HP1 ? GOAL : undefined;
  return [
    {
      benchmark: NAME,
      case: `${way}: new code serving, from the agent receiving the request`,
      unit: 'ms',
      median: m,
      best: lowest(fromAgent),
      rounds: served.length,
      ratio: pm2Median / m,
      baseline: PM2,
      ...(goal === undefined ? {} : { goal }),
      status: goal === undefined ? 'info' : judge(pm2Median / m, goal),
      note: `until every answer is v2; first v2 answer after ${ms(med(served.map((r) => r.firstNewAt - r.agentAt!)))} ms; ratio = ${PM2} time ÷ this${refusals(mine)}`,
    },
    {
      benchmark: NAME,
      case: `${way}: new code serving, from CLI start`,
      unit: 'ms',
      median: med(fromCli),
      best: lowest(fromCli),
      rounds: served.length,
      ratio: pm2Median / med(fromCli),
      baseline: PM2,
      status: 'info',
      note: `CLI start → agent receipt ${ms(med(mine.map((r) => r.agentAt! - r.startAt)))} ms; the CLI exits ${ms(med(served.map((r) => r.endAt - r.startAt)))} ms after its start (after promotion)`,
    },
  ];
}

function pm2TimeRow(rounds: Round[], way: Pm2Way, pm2Median: number): Row {
  const mine = rounds.filter((r) => r.way === way);
  const time = mine.map((r) => r.allNewAt - r.startAt);
  return {
    benchmark: NAME,
    case: `${way}: new code serving, from \`pm2 reload\` start`,
    unit: 'ms',
    median: med(time),
    best: lowest(time),
    rounds: mine.length,
    ...(way === PM2 ? { status: 'baseline' as const } : { ratio: med(time) / pm2Median, baseline: PM2, status: 'info' as const }),
    note: `until every answer is v2; first v2 answer after ${ms(med(mine.map((r) => r.firstNewAt - r.startAt)))} ms; pm2 reload exits after ${ms(med(mine.map((r) => r.endAt - r.startAt)))} ms`,
  };
}

function outcomeRows(rounds: Round[], way: Way, pm2Throughput: number): Row[] {
  const mine = rounds.filter((r) => r.way === way);
  const hot = way === HP1 || way === HPD;
  const failed = mine.map((r) => r.failed);
  const worst = Math.max(...failed);
  const judged = mine.filter((r) => r.kept !== undefined);
  const kept = judged.filter((r) => r.kept === true).length;
  const throughput = mine.map((r) => r.throughput);
  const e = mine.find((r) => r.failed === worst)!.wrk.errors;
  return [
    {
      benchmark: NAME,
      case: `${way}: failed requests`,
      unit: 'requests',
      median: median(failed),
      best: Math.min(...failed),
      rounds: mine.length,
      ...(hot ? { ratio: worst, baseline: 'failed (worst round)', goal: '<= 0', status: judge(worst, '<= 0') } : { status: 'info' as const }),
      note: `of ${int(median(mine.map((r) => r.wrk.requests)))} per run; worst round: connect ${e.connect}, read ${e.read}, write ${e.write}, non-2xx ${e.status}, timeout ${e.timeout}`,
    },
    {
      benchmark: NAME,
      case: `${way}: session counter kept`,
      unit: 'rounds',
      median: kept,
      best: kept,
      rounds: judged.length,
      ...(hot ? { ratio: kept / judged.length, baseline: 'rounds', goal: '>= 1', status: judge(kept / judged.length, '>= 1') } : { status: 'info' as const }),
      note: mine.map(counterText).join('; '),
    },
    {
      benchmark: NAME,
      case: `${way}: throughput`,
      unit: 'req/s',
      median: median(throughput),
      best: Math.max(...throughput),
      rounds: mine.length,
      ...(way === PM2 ? { status: 'baseline' as const } : { ratio: median(throughput) / pm2Throughput, baseline: PM2, status: 'info' as const }),
      note: `whole run (${ms(median(mine.map((r) => r.wrk.durationUs / 1e6)))} s); during the swap ${int(median(mine.map((r) => r.swapThroughput)))} req/s`,
    },
  ];
}

function breakdownRows(rounds: Round[]): Row[] {
  const mine = rounds.filter((r) => r.way === HP1 && r.refused === undefined);
  const at = (r: Round, type: string): number => r.events.get(type)?.at ?? Number.NaN;
  const spans: [string, (r: Round) => number][] = [
    ['CLI start → agent receives the request', (r) => r.agentAt! - r.startAt],
    ['agent receipt → canary started (v2 serving)', (r) => at(r, 'CanaryStarted') - r.agentAt!],
    ['canary started → promoted', (r) => at(r, 'Promoted') - at(r, 'CanaryStarted')],
    ['promoted → CLI exit', (r) => r.endAt - at(r, 'Promoted')],
  ];
  return spans.map(([what, f]) => {
    const values = mine.map(f);
    return { benchmark: NAME, case: `${HP1}: ${what}`, unit: 'ms', median: med(values), best: lowest(values), rounds: mine.length, status: 'info' as const };
  });
}

export async function run(options: { quick?: boolean } = {}): Promise<Row[]> {
  const timing = options.quick === true ? QUICK : FULL;
  const wrk = ensureWrk();
  const pm2Path = pm2Bin();
  if (!existsSync(SERVICE)) throw new Error(`${SERVICE} is missing: run \`npm run build\` first`);
  return withTempDir('xps-bench-peer-', async (dir) => {
    const pm2Home = join(dir, 'pm2');
    await mkdir(pm2Home);
    pm2PidFile = join(pm2Home, 'pm2.pid');
    const s: Setup = {
      dir,
      wrk,
      script: join(dir, 'peer.lua'),
      pm2: pm2Path,
      pm2Env: { ...process.env, PM2_HOME: pm2Home, PM2_DISABLE_VERSION_CHECK: 'true' },
      repo: join(dir, 'repo'),
      trust: join(dir, 'trust.json'),
      tokenFile: join(dir, 'agent.token'),
      v1: join(dir, 'page-v1.mjs'),
      v2: join(dir, 'page-v2.mjs'),
      timing,
      pm2Started: false,
    };
    await writeFile(s.script, WRK_SCRIPT);
    await writeFile(s.v1, codeSource('v1'));
    await writeFile(s.v2, codeSource('v2'));
    await writeFile(s.tokenFile, randomBytes(24).toString('hex'), { mode: 0o600 });
    // One Ed25519 key, threshold 1; v2 packed and signed as `hotpatch pack` + `hotpatch sign` do.
    const { privateKey, publicKey } = generateKeyPair('ed25519');
    await writeFile(s.trust, JSON.stringify({ keys: { 'bench-peer': { alg: 'ed25519', public_key: publicKey.toPem() } }, threshold: 1 }, null, 2));
    await packPatch(s.repo, { id: PATCH_ID, target: TARGET, version: '1.0.1', type: 'esm', payload: { fromFile: s.v2 }, signers: ['bench-peer'] });
    await signPatch(s.repo, PATCH_ID, privateKey, { keyid: 'bench-peer' });
    const expected = createHash('sha256').update(PATH).digest('hex');
    console.log(`service answers "<v1|v2> ${expected.slice(0, 12)}… <count>" for ${PATH}; wrk -t${THREADS} -c${CONNECTIONS}; ${timing.rounds} round(s) of each way`);

    const rounds: Round[] = [];
    const labels: Record<Way, string> = { [HP1]: 'hp1', [HPD]: 'hpd', [PM2]: 'pm2', [PM2C]: 'pm2c' };
    try {
      for (let i = 1; i <= timing.rounds; i++) {
        for (const way of [HP1, HPD, PM2, PM2C] as const) {
          const label = `${labels[way]}-${i}`;
          const r = way === PM2 || way === PM2C ? await pm2Round(s, way, label) : await hotpatchRound(s, way, label);
          rounds.push(r);
          console.log(`  ${way}, round ${i}: ${describe(r)}`);
          if (way === HP1) console.log(eventLine(r));
        }
      }
    } finally {
      if (s.pm2Started) {
        const killed = await runCommand(process.execPath, [s.pm2, 'kill'], s.pm2Env, 30_000).catch((error: unknown) => ({ status: null, stdout: '', stderr: (error as Error).message }));
        if (killed.status !== 0) {
          console.log(`pm2 kill exited ${killed.status}: ${tail(killed.stdout + killed.stderr)}; killing its daemon by pid`);
          killPm2Daemon();
        }
      }
      pm2PidFile = undefined;
    }

    const pm2Median = median(rounds.filter((r) => r.way === PM2).map((r) => r.allNewAt - r.startAt));
    const pm2Throughput = median(rounds.filter((r) => r.way === PM2).map((r) => r.throughput));
    return [
      ...timeRows(rounds, HP1, pm2Median),
      ...timeRows(rounds, HPD, pm2Median),
      pm2TimeRow(rounds, PM2, pm2Median),
      pm2TimeRow(rounds, PM2C, pm2Median),
      ...outcomeRows(rounds, HP1, pm2Throughput),
      ...outcomeRows(rounds, HPD, pm2Throughput),
      ...outcomeRows(rounds, PM2, pm2Throughput),
      ...outcomeRows(rounds, PM2C, pm2Throughput),
      ...breakdownRows(rounds),
    ];
  });
}

/*
 * The peer-reload benchmark's load generator: wrk (Debian's package), 2 threads and 32
 * keep-alive connections, with a Lua script that records which code answered and when; finding
 * (or installing) wrk, starting it, and reading what its script printed.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { track, tail } from './peer-processes.js';
import { PATH, nowMs } from './peer-round.js';

export const THREADS = 2;
export const CONNECTIONS = 32;
/** wrk is stopped (SIGINT) once the run has what it needs; this only bounds a run that hangs. */
const WRK_CAP_S = 120;

/**
 * wrk's script: per thread, which code answered (the x-code header), when the first v2 and the
 * last v1 answer arrived (epoch ms, gettimeofday through LuaJIT's ffi), the lowest counter of a
 * v2 answer, answers per 100 ms; done() merges the threads and prints one JSON line.
 */
export const WRK_SCRIPT = `
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
export interface WrkResult {
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

// --- finding wrk ---

const WRK_HOW = 'apt-get install -y --no-install-recommends wrk';

function findWrk(): string | undefined {
  const r = spawnSync('sh', ['-c', 'command -v wrk'], { encoding: 'utf8' });
  const path = r.status === 0 ? r.stdout.trim() : '';
  return path !== '' ? path : existsSync('/usr/bin/wrk') ? '/usr/bin/wrk' : undefined;
}

/** wrk's path; installs Debian's package when missing and running as root with apt-get, else throws saying how. */
export function ensureWrk(): string {
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

// --- running it ---

export interface Wrk {
  readonly startedAt: number;
  /** SIGINT (wrk prints its results and runs done()), then the script's JSON. */
  finish(): Promise<WrkResult>;
}

export function startWrk(wrkPath: string, script: string, port: number): Wrk {
  const startedAt = nowMs();
  const child = track(
    spawn(wrkPath, [`-t${THREADS}`, `-c${CONNECTIONS}`, `-d${WRK_CAP_S}s`, '-s', script, `http://127.0.0.1:${port}${PATH}`], {
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
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

/*
 * What one round of the peer-reload benchmark is, shared by its drivers: the four ways of
 * replacing the code, the service and the code it runs (v1, v2), the setup every round runs in,
 * and what a round measured. All times are epoch ms, on the clock wrk's script uses too.
 */
import { resolve } from 'node:path';
import { PACKAGE_ROOT } from './fixtures.js';
import type { JsonLine } from '../test/support/json-lines.js';
import type { WrkResult } from './peer-wrk.js';

/** The service under test (built: pm2 and the hotpatch round both run it as a separate process). */
export const SERVICE = resolve(PACKAGE_ROOT, 'dist', 'bench', 'peer-service.js');
/** The URL wrk and the probe request. */
export const PATH = '/session/peer-bench';

export const HP1 = 'hotpatch apply --steps 1';
export const HPD = 'hotpatch apply (default steps)';
export const PM2 = 'pm2 reload (2 instances)';
export const PM2C = 'pm2 reload, app stopping with server.close()';
export type Way = typeof HP1 | typeof HPD | typeof PM2 | typeof PM2C;
export type HotpatchWay = typeof HP1 | typeof HPD;
export type Pm2Way = typeof PM2 | typeof PM2C;

/**
 * Wall-clock epoch ms with sub-ms resolution: comparable with the times wrk's script
 * (gettimeofday) and the service (its `at`) record in other processes.
 */
export const nowMs = (): number => performance.timeOrigin + performance.now();
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The service's code, v1 or v2: what pm2 reloads from disk and what the signed patch carries. */
export function codeSource(marker: 'v1' | 'v2'): string {
  return `import { createHash } from 'node:crypto';
// ${marker} of the peer-reload benchmark's page: the marker, then the SHA-256 of the URL.
export const api = {
  page(url) {
    return '${marker} ' + createHash('sha256').update(url).digest('hex');
  },
};
`;
}

/** How long the load runs around a swap (see underLoad) and how many rounds of each way. */
export interface RoundTiming {
  rounds: number;
  minRunMs: number;
  beforeMs: number;
  afterMs: number;
}

/** Paths and programs every round uses, made once per run in its temp directory. */
export interface Setup {
  dir: string;
  wrk: string;
  /** wrk's Lua script. */
  script: string;
  /** pm2's command, and the environment giving it our own PM2_HOME. */
  pm2: string;
  pm2Env: NodeJS.ProcessEnv;
  /** The patch repository, trust store and agent token the hotpatch rounds use. */
  repo: string;
  trust: string;
  tokenFile: string;
  /** The code files: v1 (the hotpatch service's built-in version) and v2 (the signed patch's payload). */
  v1: string;
  v2: string;
  timing: RoundTiming;
  /** Set once a pm2 daemon may have been started, so the run kills it at the end. */
  pm2Started: boolean;
}

/** One replacement of the code under load. Times are epoch ms. */
export interface Round {
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
  events: Map<string, ServiceEvent>;
}

/** One event the hotpatch service published: when (`at`, its clock; `ts`, the event's own time) and the line itself. */
export interface ServiceEvent {
  at: number;
  ts: number;
  detail: JsonLine;
}

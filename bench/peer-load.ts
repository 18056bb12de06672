/*
 * The load around one swap in the peer-reload benchmark: wrk at full rate, and beside it a
 * probe (one request every 10 ms from this process) that gives the session counter just before
 * the swap and sees when v2 answers; then what the round measured, from wrk's script and the
 * probe.
 */
import { Agent as HttpAgent, request } from 'node:http';
import { startWrk } from './peer-wrk.js';
import { PATH, nowMs, sleep, type Round, type Setup, type Way } from './peer-round.js';

const PROBE_GAP_MS = 10;

export interface Answer {
  status: number;
  code: string;
  count: number;
  pid: number;
}

/** One GET on 127.0.0.1: the status and what the service's headers say (which code, its counter, its pid). */
export function get(port: number, path: string, agent: HttpAgent | false, timeoutMs = 2000): Promise<Answer> {
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

/**
 * Runs the load around one swap: wrk and the probe start, `beforeMs` later `swap()` runs, then
 * the load goes on until every answer is v2 and at least `afterMs` more (and `minRunMs` in all).
 */
export async function underLoad(
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
    if (before === undefined || before.code !== 'v1')
      throw new Error(`${way}: the probe saw no v1 answer before the swap (${probe.firstFailure ?? 'no answer'})`);
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

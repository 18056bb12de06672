/*
 * Benchmark 6 — isolated versions: what a call across the boundary costs, and whether a
 * retired isolate really goes.
 *
 * 1. Anchor: a bare postMessage round trip to a worker thread that echoes (an id → resolver
 *    map on the host, nothing else; the message has a call's shape, [id, index, [x]]), one
 *    message at a time, awaited. For context, the same over a child process's IPC channel
 *    (serialization 'advanced', as the isolates use).
 * 2. Round trip of one call at a time (each awaited) through `target.api` of a promoted patch
 *    version, in three targets alike but for their isolation — inline, worker, process — on
 *    inc (`x => x + 1`) and sha (SHA-256 of a 64-byte Buffer, returned as hex). The patches
 *    are applied by a real twoPhaseApply of really signed payloads. Goal: worker ≤ 1.2 × the
 *    bare postMessage round trip on inc (what the isolation layer adds: routing, the pending
 *    call's bookkeeping and deadline sweeper, the reply's timing). Process mode is reported
 *    against the same anchor, without a goal (its transport is a pipe, not shared memory).
 * 3. Throughput with 64 callers in flight (each awaiting its call, then making the next), in
 *    calls/s, for the anchor, worker and process (informational).
 * 4. True unload (isolation-unload.ts): 50 versions that each retain ~8 MB, promoted one after
 *    another; host RSS (and, in process mode, the live children's) after 2 versions against
 *    after 50. Goal: within 10 %.
 *
 * Round trips are timed in wall time (the host waits on another thread or process: CPU time
 * would not see it), each round calibrated to a fixed length, cases interleaved round by
 * round (A B C …, A B C …) after one warm-up round; figures are medians of rounds.
 *
 * --quick: 3 rounds of ~40 ms per round-trip case, 2 throughput windows of 150 ms per case,
 * 10 versions per mode in the unload part.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { availableParallelism, loadavg } from 'node:os';
import { Worker } from 'node:worker_threads';
import { EventBus } from '../src/index.js';
import { DynamicInstaller, HotPatchRuntime } from '../src/index-runtime.js';
import { judge, median, withTempDir, type Row } from './harness.js';
import { applyWhileCalling, measureUnload } from './isolation-unload.js';
import { patchSigner } from './runtime-calls.js';

const NAME = 'isolation-calls';
const FULL = { rounds: 9, roundMs: 50, windows: 5, windowMs: 400, versions: 50 };
const QUICK = { rounds: 3, roundMs: 20, windows: 2, windowMs: 150, versions: 10 };
const WORKER_GOAL = '<= 1.2';
const IN_FLIGHT = 64;

const BUF64 = Buffer.alloc(64, 0x5a);
const SHA_HEX = createHash('sha256').update(BUF64).digest('hex');

interface CallApi {
  inc(x: number): number;
  sha(b: Uint8Array): string;
}
/** target.api of any of the three targets: plain values inline, promises when isolated. */
interface AnyApi {
  inc(x: number): number | Promise<number>;
  sha(b: Uint8Array): string | Promise<string>;
}

const builtin: CallApi = {
  inc: (x) => x + 1,
  sha: (b) => createHash('sha256').update(b).digest('hex'),
};
const PATCH_SOURCE = `import { createHash } from 'node:crypto';
export const api = { inc: (x) => x + 1, sha: (b) => createHash('sha256').update(b).digest('hex') };
`;

// --- the anchors: the transport alone ---

/** A minimal echo client: one id → resolver map, the message shaped like a call request. */
interface Echo {
  call(x: number): Promise<unknown>;
  close(): Promise<void>;
}

function echoClient(send: (message: unknown) => void, close: () => Promise<void>): Echo & { receive(message: [number, number, number[]]): void } {
  const pending = new Map<number, (value: unknown) => void>();
  let next = 0;
  return {
    call: (x) =>
      new Promise((resolve) => {
        const id = ++next;
        pending.set(id, resolve);
        send([id, 0, [x]]);
      }),
    receive: ([id, , args]) => {
      const resolve = pending.get(id);
      pending.delete(id);
      resolve?.(args[0]);
    },
    close,
  };
}

async function workerEcho(): Promise<Echo> {
  const worker = new Worker("require('node:worker_threads').parentPort.on('message', (m) => require('node:worker_threads').parentPort.postMessage(m));", {
    eval: true,
  });
  await new Promise((resolve) => worker.once('online', resolve));
  const echo = echoClient(
    (m) => worker.postMessage(m),
    async () => void (await worker.terminate()),
  );
  worker.on('message', echo.receive);
  return echo;
}

async function processEcho(): Promise<Echo> {
  const child: ChildProcess = spawn(process.execPath, ['-e', "process.on('message', (m) => process.send(m)); process.send('ready');"], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    serialization: 'advanced',
  });
  await new Promise((resolve, reject) => {
    child.once('message', resolve);
    child.once('error', reject);
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const echo = echoClient(
    (m) => child.send(m as never),
    async () => {
      child.kill();
      await exited;
    },
  );
  child.on('message', echo.receive as (m: unknown) => void);
  return echo;
}

// --- timing ---

const now = (): number => Number(process.hrtime.bigint());
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A case: `n` calls one at a time, each awaited; returns how many answers were wrong. */
type Loop = (n: number) => Promise<number>;

function loop(call: (i: number) => unknown, right: (i: number, out: unknown) => boolean): Loop {
  return async (n) => {
    let wrong = 0;
    for (let i = 0; i < n; i++) if (!right(i, await call(i))) wrong += 1;
    return wrong;
  };
}

/** Iterations of `loop` that take about `ms` (warming it up on the way); adds wrong answers to `wrong`. */
async function calibrate(loop: Loop, ms: number, wrong: { count: number }): Promise<number> {
  for (let n = 50; ; n *= 2) {
    const t0 = now();
    wrong.count += await loop(n);
    const elapsedMs = (now() - t0) / 1e6;
    if (elapsedMs >= 20 || n >= 1e7) return Math.max(50, Math.round((n * ms) / elapsedMs));
  }
}

/**
 * µs per call of the anchor and of each case, and each case's ratio to the anchor paired round
 * by round: every round runs the anchor right next to each case (alternating which goes
 * first), so a burst of load from elsewhere hits both sides of a ratio alike.
 */
async function roundTrips<K extends string>(
  anchor: Loop,
  cases: Record<K, Loop>,
  rounds: number,
  roundMs: number,
): Promise<{ anchorUs: number[]; us: Record<K, number[]>; ratios: Record<K, number[]>; wrong: number }> {
  const names = Object.keys(cases) as K[];
  const wrong = { count: 0 };
  const anchorN = await calibrate(anchor, roundMs, wrong);
  const n = {} as Record<K, number>;
  for (const name of names) n[name] = await calibrate(cases[name], roundMs, wrong);
  const timeOne = async (loop: Loop, iterations: number): Promise<number> => {
    const t0 = now();
    wrong.count += await loop(iterations);
    return (now() - t0) / 1e3 / iterations;
  };
  const anchorUs: number[] = [];
  const us = Object.fromEntries(names.map((k) => [k, [] as number[]])) as Record<K, number[]>;
  const ratios = Object.fromEntries(names.map((k) => [k, [] as number[]])) as Record<K, number[]>;
  for (let r = -1; r < rounds; r++) {
    for (const name of names) {
      let a: number;
      let c: number;
      if (r % 2 === 0) {
        a = await timeOne(anchor, anchorN);
        c = await timeOne(cases[name], n[name]);
      } else {
        c = await timeOne(cases[name], n[name]);
        a = await timeOne(anchor, anchorN);
      }
      if (r < 0) continue;
      anchorUs.push(a);
      us[name].push(c);
      ratios[name].push(c / a);
    }
  }
  return { anchorUs, us, ratios, wrong: wrong.count };
}

/** calls/s with `IN_FLIGHT` callers for `ms`, each making its next call once its last is answered. */
async function throughput(call: (i: number) => Promise<unknown>, ms: number): Promise<number> {
  let running = true;
  let calls = 0;
  const t0 = now();
  const callers = Array.from({ length: IN_FLIGHT }, async () => {
    while (running) {
      await call(calls);
      calls += 1;
    }
  });
  await sleep(ms);
  running = false;
  await Promise.all(callers);
  return calls / ((now() - t0) / 1e9);
}

// --- the run ---

type Mode = 'inline' | 'worker' | 'process';
const MODES: readonly Mode[] = ['inline', 'worker', 'process'];
type CaseId = 'ipc' | `${Mode}-${'inc' | 'sha'}`;

export async function run(options: { quick?: boolean } = {}): Promise<Row[]> {
  const size = options.quick === true ? QUICK : FULL;
  const load0 = loadavg()[0]!;
  const measured = await withTempDir('xps-bench-isolation-', async (dir) => {
    const installer = new DynamicInstaller(dir);
    const runtime = new HotPatchRuntime({ stateDir: dir, bus: new EventBus(), installer });
    const signPatch = patchSigner();
    const apis = {} as Record<Mode, AnyApi>;
    const targets: { active: { isolate?: unknown; hooks: { dispose?: () => unknown } } }[] = [];
    const echoes: Echo[] = [];
    try {
      for (const mode of MODES) {
        const name = `bench.isolation.${mode}`;
        const target =
          mode === 'inline'
            ? runtime.target(name, { version: '1.0.0', impl: builtin })
            : runtime.target(name, { version: '1.0.0', impl: builtin, isolation: mode, isolationLimits: { callTimeoutMs: 10_000, memoryMb: 256 } });
        targets.push(target);
        apis[mode] = target.api as AnyApi;
        await applyWhileCalling(runtime, installer, signPatch(`bench-isolation-${mode}`, name, '1.0.1', PATCH_SOURCE), (i) => apis[mode].inc(i));
        if (target.active.patchId === null) throw new Error(`${name}: the patch is not active`);
      }
      const post = await workerEcho();
      echoes.push(post);
      const ipc = await processEcho();
      echoes.push(ipc);
      const same = (i: number, out: unknown): boolean => out === i;
      const incRight = (i: number, out: unknown): boolean => out === i + 1;
      const shaRight = (_: number, out: unknown): boolean => out === SHA_HEX;
      const cases: Record<CaseId, Loop> = {
        ipc: loop((i) => ipc.call(i), same),
        'inline-inc': loop((i) => apis.inline.inc(i), incRight),
        'worker-inc': loop((i) => apis.worker.inc(i), incRight),
        'process-inc': loop((i) => apis.process.inc(i), incRight),
        'inline-sha': loop(() => apis.inline.sha(BUF64), shaRight),
        'worker-sha': loop(() => apis.worker.sha(BUF64), shaRight),
        'process-sha': loop(() => apis.process.sha(BUF64), shaRight),
      };
      const trips = await roundTrips(
        loop((i) => post.call(i), same),
        cases,
        size.rounds,
        size.roundMs,
      );
      if (trips.wrong > 0) throw new Error(`${trips.wrong} round-trip calls answered wrong`);

      const flows = {
        postMessage: (i: number) => post.call(i),
        ipc: (i: number) => ipc.call(i),
        worker: (i: number) => apis.worker.inc(i) as Promise<number>,
        process: (i: number) => apis.process.inc(i) as Promise<number>,
      };
      const rates: Record<keyof typeof flows, number[]> = { postMessage: [], ipc: [], worker: [], process: [] };
      for (let w = -1; w < size.windows; w++) {
        for (const key of Object.keys(flows) as (keyof typeof flows)[]) {
          const rate = await throughput(flows[key], size.windowMs);
          if (w >= 0) rates[key].push(rate);
        }
      }
      return { trips, rates };
    } finally {
      for (const echo of echoes) await echo.close();
      runtime.close();
      // The promoted versions' isolates outlive close(): end them, as a retirement does.
      for (const t of targets) if (t.active.isolate !== undefined) await t.active.hooks.dispose?.();
    }
  });
  const load1 = loadavg()[0]!;
  const unload = await measureUnload(size.versions);

  const { trips, rates } = measured;
  const anchor = median(trips.anchorUs);
  const load = `1-min load average ${load0.toFixed(2)} → ${load1.toFixed(2)} on ${availableParallelism()} CPUs`;
  const anchorLabel = 'bare postMessage round trip (echo worker)';
  const tripRow = (id: CaseId, label: string, extra: Partial<Row> = {}): Row => ({
    benchmark: NAME,
    case: label,
    unit: 'µs/call',
    median: median(trips.us[id]),
    best: Math.min(...trips.us[id]),
    rounds: trips.us[id].length,
    status: 'info',
    ...extra,
  });
  const vsAnchor = (id: CaseId): Partial<Row> => ({ ratio: median(trips.ratios[id]), baseline: anchorLabel });
  const rows: Row[] = [
    {
      benchmark: NAME,
      case: anchorLabel,
      unit: 'µs/call',
      median: anchor,
      best: Math.min(...trips.anchorUs),
      rounds: trips.anchorUs.length,
      status: 'baseline',
      note:
        `one message at a time, awaited; ${size.rounds} rounds of ~${size.roundMs} ms (wall time) per case, each next to one of the anchor; ` +
        `ratios are medians of the paired ratios; ${load}`,
    },
    tripRow('ipc', 'bare IPC round trip (echo child, advanced serialization)', vsAnchor('ipc')),
  ];
  for (const op of ['inc', 'sha'] as const) {
    const label = op === 'inc' ? 'inc (x) => x + 1' : 'sha256(64 B) → hex';
    for (const mode of MODES) {
      const id = `${mode}-${op}` as const;
      const extra: Partial<Row> = mode === 'inline' ? { note: 'no isolation: the awaited call of a sync function, for reference' } : vsAnchor(id);
      const over = median(trips.us[id]) - anchor;
      if (mode === 'worker') extra.note = `${over >= 0 ? '+' : ''}${over.toFixed(2)} µs per call over the bare round trip (medians)`;
      if (mode === 'worker' && op === 'inc') {
        extra.goal = WORKER_GOAL;
        extra.status = judge(extra.ratio!, WORKER_GOAL);
      }
      if (mode === 'process') extra.note = `${(median(trips.us[id]) / median(trips.us.ipc)).toFixed(2)}× the bare IPC round trip (medians)`;
      rows.push(tripRow(id, `${label}: ${mode}, one call at a time`, extra));
    }
  }
  const rateRow = (key: keyof typeof rates, label: string, extra: Partial<Row>): Row => ({
    benchmark: NAME,
    case: label,
    unit: 'calls/s',
    median: median(rates[key]),
    best: Math.max(...rates[key]),
    rounds: rates[key].length,
    status: 'info',
    ...extra,
  });
  const oneAtATime = (us: number): string => `${(1e6 / us).toFixed(0)} calls/s one at a time`;
  const rateBase = `bare postMessage, ${IN_FLIGHT} in flight`;
  const vsRate = (key: keyof typeof rates): Partial<Row> => ({ ratio: median(rates[key]) / median(rates.postMessage), baseline: rateBase });
  rows.push(
    rateRow('postMessage', rateBase, { status: 'baseline', note: `${size.windows} interleaved windows of ${size.windowMs} ms per case; ${oneAtATime(anchor)}` }),
    rateRow('ipc', `bare IPC, ${IN_FLIGHT} in flight`, { ...vsRate('ipc'), note: oneAtATime(median(trips.us.ipc)) }),
    rateRow('worker', `inc: worker, ${IN_FLIGHT} in flight`, { ...vsRate('worker'), note: oneAtATime(median(trips.us['worker-inc'])) }),
    rateRow('process', `inc: process, ${IN_FLIGHT} in flight`, {
      ...vsRate('process'),
      note: `${(median(rates.process) / median(rates.ipc)).toFixed(2)}× the bare IPC's; ${oneAtATime(median(trips.us['process-inc']))}`,
    }),
  );
  return [...rows, ...unload];
}

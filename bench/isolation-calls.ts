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
 *    calls/s, for both anchors, worker and process (informational).
 * 4. True unload (isolation-unload.ts): 50 versions that each retain ~8 MB, promoted one after
 *    another; what the host (and, in process mode, the live children) hold after 2 versions
 *    against after 50. Goal: within 10 %.
 *
 * Where the threads run decides a round trip more than anything the library does: on a VM a
 * hop to a thread on another, idle vCPU costs tens of µs (a wake-up through the hypervisor),
 * on the same CPU a few; the scheduler places each worker as it likes and keeps it there for
 * seconds, so two workers measured side by side can differ 4× by placement alone. So 1 and 2
 * run in a child process pinned to one CPU (taskset; its threads and children with it): the
 * same placement for every case, and the figures are what the boundary costs in CPU. Unpinned,
 * in a second child, informational: the anchor and the isolated inc again, and 3 (where using
 * more than one CPU is the point).
 *
 * Round trips are timed in wall time (the host waits on another thread or process), each round
 * calibrated to a fixed length and run right next to a round of the anchor (alternating which
 * goes first); ratios are the medians of these paired ratios, after one warm-up round.
 *
 * --quick: 3 rounds of ~20 ms per round-trip case, 2 throughput windows of 150 ms per case,
 * 10 versions per mode in the unload part.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { availableParallelism, loadavg } from 'node:os';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { EventBus } from '../src/index.js';
import { DynamicInstaller, HotPatchRuntime } from '../src/index-runtime.js';
import { judge, median, withTempDir, type Row } from './harness.js';
import { applyWhileCalling, lastCpu, measureUnload } from './isolation-unload.js';
import { TASKSET, runJsonChild } from './json-child.js';
import { patchSigner } from './runtime-calls.js';
import { sharedMemoryEcho } from './isolation-shared-memory.js';

const NAME = 'isolation-calls';
const FULL = { rounds: 9, roundMs: 50, windows: 5, windowMs: 400, versions: 50 };
const QUICK = { rounds: 3, roundMs: 20, windows: 2, windowMs: 150, versions: 10 };
type Size = typeof FULL;
const WORKER_GOAL = '<= 1.2';
const IN_FLIGHT = 64;

const BUF64 = Buffer.alloc(64, 0x5a);
const SHA_HEX = createHash('sha256').update(BUF64).digest('hex');

/** target.api of any of the three targets: plain values inline, promises when isolated. */
interface AnyApi {
  inc(x: number): number | Promise<number>;
  sha(b: Uint8Array): string | Promise<string>;
}

const builtin = { inc: (x: number): number => x + 1, sha: (b: Uint8Array): string => createHash('sha256').update(b).digest('hex') };
const PATCH_SOURCE = `import { createHash } from 'node:crypto';
export const api = { inc: (x) => x + 1, sha: (b) => createHash('sha256').update(b).digest('hex') };
`;

// --- the anchors: the transport alone ---

interface Echo {
  call(x: number): Promise<unknown>;
  receive(message: [number, number, number[]]): void;
  close(): Promise<void>;
}

/** A minimal echo client: one id → resolver map, the message shaped like a call request. */
function echoClient(send: (message: unknown) => void, close: () => Promise<void>): Echo {
  const pending = new Map<number, (value: unknown) => void>();
  let next = 0;
  return {
    call: (x) =>
      new Promise((resolve) => {
        pending.set(++next, resolve);
        send([next, 0, [x]]);
      }),
    receive: ([id, , args]) => {
      pending.get(id)?.(args[0]);
      pending.delete(id);
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
      const anchorFirst = r % 2 === 0;
      const before = anchorFirst ? await timeOne(anchor, anchorN) : 0;
      const c = await timeOne(cases[name], n[name]);
      const a = anchorFirst ? before : await timeOne(anchor, anchorN);
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

// --- the two children ---

type Mode = 'inline' | 'worker' | 'process';
const MODES: readonly Mode[] = ['inline', 'worker', 'process'];
type CaseId = 'ipc' | 'shared' | `${Mode}-${'inc' | 'sha'}`;
const PINNED_CASES: readonly CaseId[] = ['ipc', 'shared', 'inline-inc', 'worker-inc', 'process-inc', 'inline-sha', 'worker-sha', 'process-sha'];
/** Unpinned, for reference: the isolated inc only (and the throughput). */
const FREE_CASES: readonly CaseId[] = ['worker-inc', 'process-inc'];
type Where = 'pinned' | 'free';
type Flow = 'postMessage' | 'ipc' | 'worker' | 'process';

interface CallsResult {
  anchorUs: number[];
  us: Partial<Record<CaseId, number[]>>;
  ratios: Partial<Record<CaseId, number[]>>;
  rates: Partial<Record<Flow, number[]>>;
  /** 1-min load average before and after. */
  load: [number, number];
}

/** Child entry: the three targets promoted, both anchors, then the cases of `where`. */
async function measureCalls(where: Where, size: Size): Promise<CallsResult> {
  const load0 = loadavg()[0]!;
  return withTempDir('xps-bench-isolation-', async (dir) => {
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
      const shared = await sharedMemoryEcho();
      echoes.push({ ...shared, receive: () => undefined });
      const same = (i: number, out: unknown): boolean => out === i;
      const incRight = (i: number, out: unknown): boolean => out === i + 1;
      const shaRight = (_: number, out: unknown): boolean => out === SHA_HEX;
      const all: Record<CaseId, Loop> = {
        ipc: loop((i) => ipc.call(i), same),
        shared: loop((i) => shared.call(i), same),
        'inline-inc': loop((i) => apis.inline.inc(i), incRight),
        'worker-inc': loop((i) => apis.worker.inc(i), incRight),
        'process-inc': loop((i) => apis.process.inc(i), incRight),
        'inline-sha': loop(() => apis.inline.sha(BUF64), shaRight),
        'worker-sha': loop(() => apis.worker.sha(BUF64), shaRight),
        'process-sha': loop(() => apis.process.sha(BUF64), shaRight),
      };
      const ids = where === 'pinned' ? PINNED_CASES : FREE_CASES;
      const cases = Object.fromEntries(ids.map((id) => [id, all[id]])) as Record<CaseId, Loop>;
      const trips = await roundTrips(
        loop((i) => post.call(i), same),
        cases,
        size.rounds,
        size.roundMs,
      );
      if (trips.wrong > 0) throw new Error(`${trips.wrong} round-trip calls answered wrong`);

      const rates: Partial<Record<Flow, number[]>> = {};
      if (where === 'free') {
        const flows: Record<Flow, (i: number) => Promise<unknown>> = {
          postMessage: (i) => post.call(i),
          ipc: (i) => ipc.call(i),
          worker: (i) => apis.worker.inc(i) as Promise<number>,
          process: (i) => apis.process.inc(i) as Promise<number>,
        };
        for (let w = -1; w < size.windows; w++) {
          for (const flow of Object.keys(flows) as Flow[]) {
            const rate = await throughput(flows[flow], size.windowMs);
            if (w >= 0) (rates[flow] ??= []).push(rate);
          }
        }
      }
      return { anchorUs: trips.anchorUs, us: trips.us, ratios: trips.ratios, rates, load: [load0, loadavg()[0]!] };
    } finally {
      for (const echo of echoes) await echo.close();
      runtime.close();
      // The promoted versions' isolates outlive close(): end them, as a retirement does.
      for (const t of targets) if (t.active.isolate !== undefined) await t.active.hooks.dispose?.();
    }
  });
}

// --- the rows ---

const ANCHOR = 'bare postMessage round trip (echo worker)';
const LABEL: Record<CaseId, string> = {
  ipc: 'bare IPC round trip (echo child, advanced serialization)',
  shared: 'shared-memory round trip (SharedArrayBuffer + Atomics.waitAsync, echo worker blocked in Atomics.wait)',
  'inline-inc': 'inc (x) => x + 1: inline',
  'worker-inc': 'inc (x) => x + 1: worker',
  'process-inc': 'inc (x) => x + 1: process',
  'inline-sha': 'sha256(64 B) → hex: inline',
  'worker-sha': 'sha256(64 B) → hex: worker',
  'process-sha': 'sha256(64 B) → hex: process',
};

function tripRows(r: CallsResult, where: Where, size: Size, pinnedTo: string): Row[] {
  const prefix = where === 'pinned' ? '' : 'unpinned: ';
  const anchor = median(r.anchorUs);
  const anchorCase = `${prefix}${ANCHOR}`;
  const load = `1-min load average ${r.load[0].toFixed(2)} → ${r.load[1].toFixed(2)} on ${availableParallelism()} CPUs`;
  const how =
    where === 'pinned'
      ? `${pinnedTo}; one message at a time, awaited; ${size.rounds} rounds of ~${size.roundMs} ms (wall time) per case, each next to one of the anchor; ratios are medians of the paired ratios`
      : 'the same, not pinned: where the scheduler puts each thread decides these (a hop to another, idle vCPU costs tens of µs)';
  const rows: Row[] = [
    {
      benchmark: NAME,
      case: anchorCase,
      unit: 'µs/call',
      median: anchor,
      best: Math.min(...r.anchorUs),
      rounds: r.anchorUs.length,
      status: 'baseline',
      note: `${how}; ${load}`,
    },
  ];
  for (const id of Object.keys(r.us) as CaseId[]) {
    const us = r.us[id]!;
    const ratio = median(r.ratios[id]!);
    const row: Row = {
      benchmark: NAME,
      case: `${prefix}${LABEL[id]}${id === 'ipc' || id === 'shared' ? '' : ', one call at a time'}`,
      unit: 'µs/call',
      median: median(us),
      best: Math.min(...us),
      rounds: us.length,
      status: 'info',
    };
    const over = median(us) - anchor;
    if (id.startsWith('inline')) rows.push({ ...row, note: 'no isolation: the awaited call of a sync function, for reference' });
    else if (id.startsWith('process') && r.us.ipc !== undefined)
      rows.push({ ...row, ratio, baseline: anchorCase, note: `${(median(us) / median(r.us.ipc)).toFixed(2)}× the bare IPC round trip (medians)` });
    else {
      const goal = where === 'pinned' && id === 'worker-inc' ? { goal: WORKER_GOAL, status: judge(ratio, WORKER_GOAL) } : {};
      const note =
        id === 'ipc'
          ? undefined
          : id === 'shared'
            ? `the fast path tried and not adopted: ${(-over).toFixed(2)} µs faster, but the isolate's event loop would never turn (no async patch code) and one slot serves one call at a time`
            : `${over >= 0 ? '+' : ''}${over.toFixed(2)} µs per call over the bare round trip (medians)`;
      rows.push({ ...row, ratio, baseline: anchorCase, ...goal, ...(note === undefined ? {} : { note }) });
    }
  }
  return rows;
}

function rateRows(r: CallsResult, pinned: CallsResult, size: Size): Row[] {
  const rates = r.rates as Record<Flow, number[]>;
  const base = `bare postMessage, ${IN_FLIGHT} in flight`;
  const row = (flow: Flow, label: string, extra: Partial<Row>): Row => ({
    benchmark: NAME,
    case: label,
    unit: 'calls/s',
    median: median(rates[flow]),
    best: Math.max(...rates[flow]),
    rounds: rates[flow].length,
    status: 'info',
    ...(flow === 'postMessage' ? {} : { ratio: median(rates[flow]) / median(rates.postMessage), baseline: base }),
    ...extra,
  });
  const oneAtATime = (us: number[]): string => `${(1e6 / median(us)).toFixed(0)} calls/s one at a time (one CPU)`;
  return [
    row('postMessage', base, {
      status: 'baseline',
      note: `not pinned; ${size.windows} interleaved windows of ${size.windowMs} ms per case; ${oneAtATime(pinned.anchorUs)}`,
    }),
    row('ipc', `bare IPC, ${IN_FLIGHT} in flight`, { note: oneAtATime(pinned.us.ipc!) }),
    row('worker', `inc: worker, ${IN_FLIGHT} in flight`, { note: oneAtATime(pinned.us['worker-inc']!) }),
    row('process', `inc: process, ${IN_FLIGHT} in flight`, {
      note: `${(median(rates.process) / median(rates.ipc)).toFixed(2)}× the bare IPC's; ${oneAtATime(pinned.us['process-inc']!)}`,
    }),
  ];
}

export async function run(options: { quick?: boolean } = {}): Promise<Row[]> {
  const quick = options.quick === true;
  const size = quick ? QUICK : FULL;
  const script = fileURLToPath(import.meta.url);
  const cpu = lastCpu();
  const pinnedTo = TASKSET === undefined ? 'not pinned (no taskset found)' : `pinned to CPU ${cpu} (taskset)`;
  const args = (where: Where): string[] => ['--child', where, quick ? 'quick' : 'full'];
  const pinned = await runJsonChild<CallsResult>(script, args('pinned'), { cpu });
  const free = await runJsonChild<CallsResult>(script, args('free'));
  const unload = await measureUnload(size.versions);
  return [...tripRows(pinned, 'pinned', size, pinnedTo), ...tripRows(free, 'free', size, pinnedTo), ...rateRows(free, pinned, size), ...unload];
}

const isMain = process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain && process.argv[2] === '--child') {
  const where = process.argv[3] as Where;
  if (where !== 'pinned' && where !== 'free') throw new Error(`unknown child ${where}`);
  const result = await measureCalls(where, process.argv[4] === 'quick' ? QUICK : FULL);
  process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
}

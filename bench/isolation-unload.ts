/*
 * Part of benchmark isolation-calls (see isolation-calls.ts): true unload of isolated versions.
 *
 * Per mode, 50 successive versions of a patch that each retain ~8 MB from init() (4 MB of JS
 * heap in an array, 4 MB of off-heap bytes in a Buffer, both filled so the pages are touched),
 * each promoted by a real twoPhaseApply (fast canary: one step at 100 %, 1 ms intervals, one
 * candidate call needed, no probation) while calls go on one at a time. Promoting version k
 * retires version k-2 (k-1 is kept warm as `previous`); every disposal is awaited
 * (`ApplyResult.drain`). Measured after the first 2 versions (both live) and after all 50
 * (2 live, 48 retired): the same number of live versions, so if a retired version really goes,
 * memory and all, the two readings agree.
 *   - RSS of the process hosting the runtime (goal: end within 10 % of the start);
 *   - its JS heap in use + ArrayBuffers, after gc (goal: within 10 %): what the host itself
 *     still holds, far more sensitive than RSS to a retired version kept reachable;
 *   - process mode: the RSS of the live children (/proc/<pid>/status VmRSS; goal: within
 *     10 %), and retired children still running (goal: none); worker mode: host threads.
 * For contrast (no goal): the same without isolation, where an ES module, once imported,
 * stays for the life of the process, with what it retains.
 *
 * Each mode runs in a fresh child process (the figures are not blurred by the rest of the
 * run's heap, and the inline contrast's leak ends with it), started with --expose-gc
 * (collected before each reading) and a fixed young generation (16 MB semi-spaces: V8 would
 * otherwise double it at some version of its choosing, a 16 MB step of RSS that says nothing
 * about unloading). 4 versions before the counted ones warm the host up (JIT, the young
 * generation's pages touched, allocator arenas): the first readings are not taken mid-ramp.
 *
 * --quick: 10 versions per mode (after the same 4 warm-up versions).
 */
import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EventBus } from '../src/index.js';
import { DynamicInstaller, HotPatchRuntime, twoPhaseApply, type ApplyOptions, type ApplyResult } from '../src/index-runtime.js';
import { judge, median, withTempDir, type Row } from './harness.js';
import { runJsonChild } from './json-child.js';
import { patchSigner, type BenchPatch } from './runtime-calls.js';

const NAME = 'isolation-calls';
const T = 'bench.isolation.unload';
const RSS_GOAL = '<= 1.1';
/** Versions applied before the counted ones, to warm the host up. */
const WARMUP_VERSIONS = 4;
/** Node flags of the child hosting each mode's runtime. */
const CHILD_FLAGS = ['--expose-gc', '--min-semi-space-size=16', '--max-semi-space-size=16'];
type Mode = 'inline' | 'worker' | 'process';
const MODES: readonly Mode[] = ['worker', 'process', 'inline'];

/**
 * Fast promotion: one canary step at 100 % judged every 1 ms, done after one candidate call
 * (the caller keeps calling meanwhile); no probation, whose watch and timer would outlive the
 * measurement.
 */
export const FAST_APPLY: ApplyOptions = {
  steps: [1],
  canaryInterval: 1,
  backoffFactor: 1,
  jitterRatio: 0,
  minCallsPerStep: 1,
  minCalls: 1,
  // On a loaded machine a candidate's first answer may take longer than a few 1 ms looks.
  maxInconclusiveExtensions: 2000,
  probationMs: 0,
};

/**
 * Applies `patch` while `call` is made one call at a time (the canary judges candidate calls
 * only, so a service must be calling); throws unless the patch was promoted.
 */
export async function applyWhileCalling(
  runtime: HotPatchRuntime,
  installer: DynamicInstaller,
  patch: BenchPatch,
  call: (i: number) => unknown,
): Promise<ApplyResult & { failedCalls: number }> {
  const apply = twoPhaseApply(installer, patch.verified, patch.payload, { ...FAST_APPLY, runtime });
  let done = false;
  void apply.finally(() => (done = true)).catch(() => undefined);
  let failedCalls = 0;
  for (let i = 0; !done; i++) {
    try {
      await call(i);
    } catch {
      failedCalls += 1;
    }
    // An inline call settles without leaving the microtask queue: yield, or the apply's I/O never runs.
    if (i % 20 === 0) await new Promise((r) => setImmediate(r));
  }
  const result = await apply;
  if (result.outcome !== 'promoted') throw new Error(`${patch.verified.manifest.id}: ${result.outcome}: ${result.reason}`);
  return { ...result, failedCalls };
}

/** A version that keeps ~8 MB for as long as its module lives: half JS heap, half off-heap bytes. */
const retainingSource = (k: number): string => `// version ${k}
const keep = [];
export function init() {
  keep.push(new Array(5e5).fill(${k}), Buffer.alloc(4 * 1024 * 1024, ${(k % 250) + 1}));
}
export const api = { inc: (x) => x + 1 + keep.length * 0 };
`;

interface UnloadResult {
  mode: Mode;
  versions: number;
  /** MB: host RSS, host heap in use + ArrayBuffers, and the live children's RSS (process mode), after 2 versions and after all. */
  hostStart: number;
  hostEnd: number;
  heapStart: number;
  heapEnd: number;
  hostSeries: number[];
  childrenStart?: number;
  childrenEnd?: number;
  /** Retired children still running at the end (process mode). */
  retiredAlive?: number;
  threadsStart: number;
  threadsEnd: number;
  applyMs: number[];
  failedCalls: number;
  gc: boolean;
}

const MB = 1024 * 1024;

/** A field of /proc/<pid>/status, or undefined when that process is gone. */
function procStatus(pid: number | 'self', field: string): string | undefined {
  try {
    const line = readFileSync(`/proc/${pid}/status`, 'utf8')
      .split('\n')
      .find((l) => l.startsWith(`${field}:`));
    return line?.slice(field.length + 1).trim();
  } catch {
    return undefined;
  }
}

const vmRssMb = (pid: number): number => Number.parseInt(procStatus(pid, 'VmRSS') ?? '0', 10) / 1024;

/** What the child is doing, named on stderr if it exits before it is done. */
let stage = 'starting';

/** Child process entry: one mode's 50 versions, in a process of its own. */
async function unloadChild(mode: Mode, versions: number): Promise<UnloadResult> {
  const gc = (globalThis as { gc?: () => void }).gc;
  return withTempDir('xps-bench-unload-', async (dir) => {
    // Inline, every version imported stays: the installer refuses a 17th per target by default
    // (maxLiveVersionsPerTarget, for exactly this growth); the contrast raises the cap.
    const installer = new DynamicInstaller(dir, mode === 'inline' ? { maxLiveVersionsPerTarget: WARMUP_VERSIONS + versions + 1 } : {});
    const runtime = new HotPatchRuntime({ stateDir: dir, bus: new EventBus(), installer });
    const impl = { inc: (x: number): number => x + 1 };
    const target =
      mode === 'inline'
        ? runtime.target(T, { version: '1.0.0', impl })
        : runtime.target(T, { version: '1.0.0', impl, isolation: mode, isolationLimits: { callTimeoutMs: 10_000, memoryMb: 256 } });
    const api = target.api as { inc(x: number): number | Promise<number> };
    const signPatch = patchSigner();
    const livePids = (): number[] => [target.active.isolate?.id, target.previous?.isolate?.id].filter((id): id is number => id !== undefined);
    const seenPids = new Set<number>();
    /** Readings once every retired version is disposed and the garbage collected. */
    const settle = async (): Promise<{ host: number; heap: number; children: number; threads: number }> => {
      await new Promise((r) => setTimeout(r, 50));
      gc?.();
      gc?.();
      await new Promise((r) => setTimeout(r, 50));
      const children = livePids().reduce((sum, pid) => sum + (mode === 'process' ? vmRssMb(pid) : 0), 0);
      const m = process.memoryUsage();
      return { host: m.rss / MB, heap: (m.heapUsed + m.arrayBuffers) / MB, children, threads: Number(procStatus('self', 'Threads')) };
    };
    const applyMs: number[] = [];
    let failedCalls = 0;
    /** Host RSS right after each apply (not settled). */
    const hostSeries: number[] = [];
    let start: Awaited<ReturnType<typeof settle>> | undefined;
    try {
      for (let v = 1; v <= WARMUP_VERSIONS + versions; v++) {
        /** The counted version this is (1 … versions), or ≤ 0 for a warm-up one. */
        const k = v - WARMUP_VERSIONS;
        const patch = signPatch(`bench-unload-${mode}-${v}`, T, `1.0.${v}`, retainingSource(v));
        stage = `applying version ${v}`;
        const t0 = performance.now();
        const result = await applyWhileCalling(runtime, installer, patch, (i) => api.inc(i));
        if (k >= 1) applyMs.push(performance.now() - t0);
        failedCalls += result.failedCalls;
        // The version two back is disposed (its isolate ended) once drained: wait for it.
        stage = `awaiting the disposal of version ${v - 2} (the drain of version ${v}'s apply)`;
        const drained = await result.drain;
        if (drained !== undefined && !drained.drained) throw new Error(`version ${drained.version} did not drain`);
        if (mode === 'process') for (const pid of livePids()) seenPids.add(pid);
        if (k >= 1) hostSeries.push(process.memoryUsage().rss / MB);
        stage = `settling after version ${v}`;
        if (k === 2) start = await settle();
      }
      const end = await settle();
      stage = 'done';
      if ((await api.inc(41)) !== 42) throw new Error('the last version answered wrong');
      const live = new Set(livePids());
      // A retired child that is still running (not merely a zombie awaiting its reaping) was not ended.
      const retiredAlive = [...seenPids].filter((pid) => !live.has(pid) && existsSync(`/proc/${pid}`) && procStatus(pid, 'State')?.startsWith('Z') !== true);
      return {
        mode,
        versions,
        hostStart: start!.host,
        hostEnd: end.host,
        heapStart: start!.heap,
        heapEnd: end.heap,
        hostSeries,
        ...(mode === 'process' ? { childrenStart: start!.children, childrenEnd: end.children, retiredAlive: retiredAlive.length } : {}),
        threadsStart: start!.threads,
        threadsEnd: end.threads,
        applyMs,
        failedCalls,
        gc: gc !== undefined,
      };
    } finally {
      runtime.close();
      // The two live versions' isolates are not ended by close(): end them, as a retirement does.
      for (const v of [target.active, target.previous]) if (v?.isolate !== undefined) await v.hooks.dispose?.();
    }
  });
}

/** Where taskset is, if anywhere: it pins a child (and its threads and children) to one CPU. */
/** The last CPU this process may run on (its affinity list), to pin a child to. */
export function lastCpu(): number {
  const m = /(\d+)\s*$/.exec(procStatus('self', 'Cpus_allowed_list') ?? '');
  return m === null ? availableParallelism() - 1 : Number(m[1]);
}

const fmt = (mb: number): string => `${mb.toFixed(1)} MB`;

function rowsFor(r: UnloadResult): Row[] {
  const n = r.versions;
  const isolated = r.mode !== 'inline';
  const label = (c: string): string => `unload, ${r.mode}: ${c}`;
  const row = (c: string, mb: number): Row => ({ benchmark: NAME, case: label(c), unit: 'MB', median: mb, best: mb, rounds: 1, status: 'info' });
  /** The end reading of a pair, against its start: a goal when isolated, for contrast inline. */
  const pair = (what: string, start: number, end: number, startNote: string, endNote: string): Row[] => {
    const ratio = end / start;
    const grown = `${end >= start ? '+' : ''}${(end - start).toFixed(1)} MB over ${n - 2} retired versions (${((1024 * (end - start)) / (n - 2)).toFixed(0)} KB each; each kept ~8 MB while live)`;
    const base = label(`${what} after 2 versions`);
    const last: Row = { ...row(`${what} after ${n} versions`, end), ratio, baseline: base, note: `${grown}; ${endNote}` };
    return [
      { ...row(`${what} after 2 versions`, start), status: 'baseline', note: startNote },
      isolated ? { ...last, goal: RSS_GOAL, status: judge(ratio, RSS_GOAL) } : last,
    ];
  };
  const contrast = isolated ? '' : '; no isolation: every imported module stays, with what it keeps (what isolation is for)';
  const rows: Row[] = [
    ...pair(
      'host RSS',
      r.hostStart,
      r.hostEnd,
      `both live (active and warm previous), after ${WARMUP_VERSIONS} warm-up versions${r.gc ? '; gc() before each reading' : '; no gc exposed'}`,
      `highest reading ${fmt(Math.max(...r.hostSeries))}; host threads ${r.threadsStart} → ${r.threadsEnd}${contrast}`,
    ),
    ...pair(
      'host JS heap + ArrayBuffers',
      r.heapStart,
      r.heapEnd,
      "process.memoryUsage() heapUsed + arrayBuffers after gc(): what the host's own objects hold",
      isolated
        ? 'a retired version the host keeps reachable shows here long before it shows in RSS'
        : 'no isolation: the inline payload keeps its memory in the host',
    ),
  ];
  if (r.childrenStart !== undefined && r.childrenEnd !== undefined) {
    rows.push(
      ...pair('RSS of the 2 live children', r.childrenStart, r.childrenEnd, "sum of VmRSS of the active and previous versions' child processes", 'same sum'),
    );
    const alive = r.retiredAlive ?? 0;
    rows.push({
      benchmark: NAME,
      case: label('retired children still running'),
      unit: 'processes',
      median: alive,
      best: alive,
      rounds: 1,
      ratio: alive / (n - 2),
      baseline: 'children retired',
      goal: '<= 0',
      status: judge(alive / (n - 2), '<= 0'),
      note: `${alive} of ${n - 2} retired children still running (a zombie awaiting its reaping counts as gone)`,
    });
  }
  const sorted = [...r.applyMs].sort((a, b) => a - b);
  rows.push({
    benchmark: NAME,
    case: label('one apply (load, init, canary, promote), calls going on'),
    unit: 'ms',
    median: median(r.applyMs),
    best: sorted[0]!,
    rounds: r.applyMs.length,
    status: 'info',
    note: `max ${sorted[sorted.length - 1]!.toFixed(1)} ms; failed calls during the ${n} applies: ${r.failedCalls}`,
  });
  return rows;
}

/** The unload rows of every mode (each mode in a child process of its own, one after another). */
export async function measureUnload(versions: number): Promise<Row[]> {
  const rows: Row[] = [];
  for (const mode of MODES) {
    rows.push(...rowsFor(await runJsonChild<UnloadResult>(fileURLToPath(import.meta.url), ['--child', mode, String(versions)], { nodeFlags: CHILD_FLAGS })));
  }
  return rows;
}

const isMain = process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain && process.argv[2] === '--child') {
  const mode = process.argv[3] as Mode;
  if (!MODES.includes(mode)) throw new Error(`unknown mode ${mode}`);
  process.on('exit', (code) => {
    if (stage !== 'done') process.stderr.write(`exit code ${code} while ${stage}\n`);
  });
  const result = await unloadChild(mode, Number(process.argv[4] ?? 50));
  process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
}

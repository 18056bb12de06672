/*
 * Benchmark 4 — cost of a routed call.
 *
 * ns per call of `target.api.f(x)` against calling `f(x)` directly, for two functions:
 *   - inc: a trivial sync function `(x) => x + 1`;
 *   - sha: a 64-byte SHA-256, `createHash('sha256').update(buf64).digest()`.
 * Each on: a direct call (baseline); a steady target (no canary: one field read, then the
 * version's function); a canarying target (a real CanaryRoute at ratio 0.5, started by
 * twoPhaseApply with a 60 s interval and an unreachable minCallsPerStep, aborted after the
 * measurement; the target is not deterministic, so each call runs once, on one side); and,
 * informational, a deterministic target's canary, which also runs the baseline on every
 * candidate call and compares the outputs (differentialSampleRate 1, the default).
 *
 * Micro-benchmarks of ~1 ns operations are at V8's mercy, so the figures come two ways:
 *   - isolated: a child process per routed case (fresh JIT, only that case's code runs: the
 *     best case, where the call site and the routed wrapper are monomorphic and inlined),
 *     paired round by round with a direct loop measured in the same child, interleaved;
 *   - shared: every case in this process, interleaved. The routed wrappers of all targets
 *     are closures of one function literal and share its type feedback, as in a service
 *     with several targets; this is the figure a real process with more than one target pays.
 * Every case is its own loop function (no shared call site between cases), is calibrated to
 * a fixed time per round, warmed up, and reported as the median of its rounds. Rounds are
 * timed in process CPU time (process.cpuUsage), not wall time, so that other processes on a
 * shared machine do not inflate them at random; for these CPU-bound loops the two agree on an
 * idle machine.
 *
 * Goals: steady <= direct + 2 ns on inc; steady <= 1.01 × direct on sha; canarying <=
 * direct + 15 ns. The +N ns goals are turned into a ratio limit against the direct call
 * measured in the same mode of the same run.
 *
 * --quick: one child per routed case, 3 rounds of ~30 ms each in the children and 3 shared
 * rounds of ~30 ms (the same code paths, noisier figures).
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runJsonChild } from './json-child.js';
import { DefaultVerifier, EventBus, HotPatchError, MANIFEST_PAYLOAD_TYPE, encodeEnvelope, hashBytes, pae, sign, type VerifiedManifest } from '../src/index.js';
import { DynamicInstaller, HotPatchRuntime, twoPhaseApply, type ApplyResult, type Target } from '../src/index-runtime.js';
import { makeSigners, makeTrustStore } from './fixtures.js';
import { judge, median, type Row } from './harness.js';

const NAME = 'runtime-calls';
interface Sizes {
  sharedRoundMs: number;
  sharedRounds: number;
  childRoundMs: number;
  childProcesses: number;
  childRounds: number;
}
const FULL: Sizes = { sharedRoundMs: 100, sharedRounds: 7, childRoundMs: 100, childProcesses: 3, childRounds: 6 };
const QUICK: Sizes = { sharedRoundMs: 30, sharedRounds: 3, childRoundMs: 30, childProcesses: 1, childRounds: 3 };
const STEADY_INC_BUDGET_NS = 2;
const STEADY_SHA_GOAL = '<= 1.01';
const CANARY_BUDGET_NS = 15;

// --- signed patches (shared with runtime-swaps.ts) ---

export interface BenchPatch {
  verified: VerifiedManifest;
  payload: Uint8Array;
}

/** Signs esm payloads with a fresh Ed25519 key, verified by a 1-of-1 trust store: real bytes, real checks. */
export function patchSigner(): (id: string, target: string, version: string, source: string) => BenchPatch {
  const signers = makeSigners('ed25519', 1);
  const signer = signers[0]!;
  const verifier = new DefaultVerifier(makeTrustStore(signers, 1).store);
  return (id, target, version, source) => {
    const payload = new TextEncoder().encode(source);
    const manifest = {
      id,
      target,
      version,
      created_at: new Date(Date.now() - 60_000).toISOString(),
      expires: new Date(Date.now() + 86_400_000).toISOString(),
      signers: [signer.keyid],
      payload_hash: `sha256:${Buffer.from(hashBytes('sha256', payload)).toString('hex')}`,
      payload_size: payload.length,
      payload_type: 'esm',
    };
    const body = new TextEncoder().encode(JSON.stringify(manifest));
    const envelope = encodeEnvelope({
      payloadType: MANIFEST_PAYLOAD_TYPE,
      payload: body,
      signatures: [{ keyid: signer.keyid, sig: sign(signer.privateKey, pae(MANIFEST_PAYLOAD_TYPE, body)) }],
    });
    return { verified: verifier.verifyEnvelope(new TextEncoder().encode(envelope)), payload };
  };
}

// --- the cases ---

type Op = 'inc' | 'sha';
type Mode = 'direct' | 'steady' | 'canary' | 'canary-det';
type CaseId = `${Mode}-${Op}`;
const MODES: readonly Mode[] = ['direct', 'steady', 'canary', 'canary-det'];
const OPS: readonly Op[] = ['inc', 'sha'];
const CASE_IDS: readonly CaseId[] = OPS.flatMap((op) => MODES.map((mode) => `${mode}-${op}` as CaseId));
const opOf = (id: CaseId): Op => id.slice(id.lastIndexOf('-') + 1) as Op;
const modeOf = (id: CaseId): Mode => id.slice(0, id.lastIndexOf('-')) as Mode;

const BUF64 = Buffer.alloc(64, 0x5a);
const inc = (x: number): number => x + 1;
const sha = (b: Buffer): Buffer => createHash('sha256').update(b).digest();

const SOURCES: Record<Op, string> = {
  inc: 'export const api = { inc: (x) => x + 1 };\n',
  sha: "import { createHash } from 'node:crypto';\nexport const api = { sha: (b) => createHash('sha256').update(b).digest() };\n",
};

interface IncApi {
  inc(x: number): number;
}
interface ShaApi {
  sha(b: Buffer): Buffer;
}

interface Apis {
  steadyInc?: IncApi;
  canaryInc?: IncApi;
  canaryDetInc?: IncApi;
  steadySha?: ShaApi;
  canarySha?: ShaApi;
  canaryDetSha?: ShaApi;
}

type Loop = (n: number) => number;

/**
 * One loop function per case, each its own function literal calling through its own
 * variable: no case shares a call site (or its type feedback) with another.
 */
function loopsFor(a: Apis): Record<CaseId, Loop> {
  const steadyInc = a.steadyInc;
  const canaryInc = a.canaryInc;
  const canaryDetInc = a.canaryDetInc;
  const steadySha = a.steadySha;
  const canarySha = a.canarySha;
  const canaryDetSha = a.canaryDetSha;
  return {
    'direct-inc': (n) => {
      let acc = 0;
      for (let i = 0; i < n; i++) acc += inc(i);
      return acc;
    },
    'steady-inc': (n) => {
      let acc = 0;
      for (let i = 0; i < n; i++) acc += steadyInc!.inc(i);
      return acc;
    },
    'canary-inc': (n) => {
      let acc = 0;
      for (let i = 0; i < n; i++) acc += canaryInc!.inc(i);
      return acc;
    },
    'canary-det-inc': (n) => {
      let acc = 0;
      for (let i = 0; i < n; i++) acc += canaryDetInc!.inc(i);
      return acc;
    },
    'direct-sha': (n) => {
      let acc = 0;
      for (let i = 0; i < n; i++) acc += sha(BUF64)[i & 31]!;
      return acc;
    },
    'steady-sha': (n) => {
      let acc = 0;
      for (let i = 0; i < n; i++) acc += steadySha!.sha(BUF64)[i & 31]!;
      return acc;
    },
    'canary-sha': (n) => {
      let acc = 0;
      for (let i = 0; i < n; i++) acc += canarySha!.sha(BUF64)[i & 31]!;
      return acc;
    },
    'canary-det-sha': (n) => {
      let acc = 0;
      for (let i = 0; i < n; i++) acc += canaryDetSha!.sha(BUF64)[i & 31]!;
      return acc;
    },
  };
}

interface Setup {
  loops: Record<CaseId, Loop>;
  /** Share of calls the candidate took, per canary case (sanity check of the 0.5 ratio). */
  candidateShare(id: CaseId): number | undefined;
  close(): Promise<void>;
}

/** Declares the targets the given cases need and starts their canaries (held at ratio 0.5). */
async function setUp(ids: readonly CaseId[]): Promise<Setup> {
  const dir = await mkdtemp(join(tmpdir(), 'xps-bench-calls-'));
  const runtime = new HotPatchRuntime({ bus: new EventBus() });
  const installer = new DynamicInstaller(dir);
  const signPatch = patchSigner();
  const apis: Apis = {};
  const canaries = new Map<CaseId, { target: Target<object>; controller: AbortController; apply: Promise<ApplyResult> }>();
  try {
    for (const id of ids) {
      const mode = modeOf(id);
      const op = opOf(id);
      if (mode === 'direct') continue;
      const name = `bench.calls.${mode.replace('-', '')}.${op}`;
      const impl = op === 'inc' ? { inc } : { sha };
      const target = runtime.target<object>(name, { version: '1.0.0', impl, deterministic: mode === 'canary-det' });
      const key = `${mode === 'steady' ? 'steady' : mode === 'canary' ? 'canary' : 'canaryDet'}${op === 'inc' ? 'Inc' : 'Sha'}` as keyof Apis;
      (apis as Record<string, unknown>)[key] = target.api;
      if (mode === 'steady') continue;
      const patch = signPatch(`bench-${mode}-${op}`, name, '1.0.1', SOURCES[op]);
      const controller = new AbortController();
      const apply = twoPhaseApply(installer, patch.verified, patch.payload, {
        runtime,
        steps: [0.5, 1],
        canaryInterval: 60_000,
        jitterRatio: 0,
        minCallsPerStep: Number.MAX_SAFE_INTEGER,
        signal: controller.signal,
      });
      apply.catch(() => undefined);
      canaries.set(id, { target, controller, apply });
      const deadline = Date.now() + 10_000;
      while (target.canary === null) {
        await Promise.race([apply, new Promise((r) => setTimeout(r, 1))]);
        if (Date.now() > deadline) throw new Error(`the canary of ${name} did not start`);
      }
    }
  } catch (error) {
    for (const { controller, apply } of canaries.values()) {
      controller.abort(new Error('benchmark set-up failed'));
      await apply.catch(() => undefined);
    }
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    loops: loopsFor(apis),
    candidateShare: (id) => {
      const route = canaries.get(id)?.target.canary;
      if (route === null || route === undefined) return undefined;
      const c = route.candidateStats.calls;
      return c / (c + route.baselineStats.calls);
    },
    close: async () => {
      for (const { controller, apply } of canaries.values()) {
        controller.abort(new Error('benchmark done'));
        await apply.then(
          () => {
            throw new Error('a benchmark canary was promoted');
          },
          (error: unknown) => {
            if (!(error instanceof HotPatchError && error.code === 'ABORTED')) throw error;
          },
        );
      }
      runtime.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

let sink = 0;

/**
 * CPU time of this process in ns (user + system). Per-call figures are CPU time, not wall
 * time: on a shared machine the scheduler hands the CPU to other processes mid-round, which
 * inflates wall-clock rounds at random while the CPU time of a CPU-bound loop stays put.
 */
function cpuNs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) * 1000;
}

/** ns of CPU per iteration of one run of `loop(n)`. */
function perCall(loop: Loop, n: number): number {
  const t0 = cpuNs();
  sink ^= loop(n);
  return (cpuNs() - t0) / n;
}

/** Iterations of `loop` that take about `ms` milliseconds of CPU (warming it up on the way). */
function calibrate(loop: Loop, ms: number): number {
  let n = 1000;
  for (;;) {
    const elapsedMs = (perCall(loop, n) * n) / 1e6;
    if (elapsedMs >= 20) return Math.max(1000, Math.round((n * ms) / elapsedMs));
    n *= 2;
  }
}

/**
 * Child process entry: one routed case and its direct baseline, alone in a fresh V8 (no other
 * target, no other call site). The two are interleaved round by round (alternating which
 * goes first), so a burst of outside load hits both; each round's ratio is paired.
 */
async function child(id: CaseId, rounds: number, roundMs: number): Promise<void> {
  const direct: CaseId = `direct-${opOf(id)}`;
  const setup = await setUp([id]);
  try {
    const loops = [setup.loops[direct], setup.loops[id]] as const;
    const n = loops.map((loop) => calibrate(loop, roundMs));
    for (let w = 0; w < 2; w++) loops.forEach((loop, i) => (sink ^= loop(n[i]!)));
    const ns: [number[], number[]] = [[], []];
    for (let r = 0; r < rounds; r++) {
      for (const i of r % 2 === 0 ? [0, 1] : [1, 0]) {
        ns[i]!.push(perCall(loops[i]!, n[i]!));
      }
    }
    const result: ChildResult = { direct: ns[0], routed: ns[1], share: setup.candidateShare(id) ?? null };
    process.stdout.write(`RESULT ${JSON.stringify({ ...result, sink })}\n`);
  } finally {
    await setup.close();
  }
}

interface ChildResult {
  direct: number[];
  routed: number[];
  share: number | null;
}

function runChild(id: CaseId, sizes: Sizes): Promise<ChildResult> {
  return runJsonChild<ChildResult>(fileURLToPath(import.meta.url), ['--child', id, String(sizes.childRounds), String(sizes.childRoundMs)]);
}

interface Figures {
  medianNs: number;
  bestNs: number;
  rounds: number;
  share: number | undefined;
  /** Median over rounds of routed / direct and routed - direct, each round paired with its own direct loop. */
  pairedRatio?: number;
  pairedOverNs?: number;
}

async function measureIsolated(sizes: Sizes): Promise<Record<CaseId, Figures>> {
  const routedIds = CASE_IDS.filter((id) => modeOf(id) !== 'direct');
  const samples = new Map<CaseId, { ns: number[]; ratios: number[]; over: number[]; share: number | undefined }>(
    CASE_IDS.map((id) => [id, { ns: [], ratios: [], over: [], share: undefined }]),
  );
  // One child per routed case per pass, cases in turn, so slow drifts of the machine hit every case alike.
  for (let pass = 0; pass < sizes.childProcesses; pass++) {
    for (const id of routedIds) {
      const r = await runChild(id, sizes);
      const mine = samples.get(id)!;
      const direct = samples.get(`direct-${opOf(id)}`)!;
      direct.ns.push(...r.direct);
      mine.ns.push(...r.routed);
      r.routed.forEach((ns, i) => {
        mine.ratios.push(ns / r.direct[i]!);
        mine.over.push(ns - r.direct[i]!);
      });
      if (r.share !== null) mine.share = r.share;
    }
  }
  const out = {} as Record<CaseId, Figures>;
  for (const [id, e] of samples) {
    out[id] = {
      medianNs: median(e.ns),
      bestNs: Math.min(...e.ns),
      rounds: e.ns.length,
      share: e.share,
      ...(e.ratios.length === 0 ? {} : { pairedRatio: median(e.ratios), pairedOverNs: median(e.over) }),
    };
  }
  return out;
}

async function measureShared(sizes: Sizes): Promise<Record<CaseId, Figures>> {
  const setup = await setUp(CASE_IDS);
  try {
    const iterations = {} as Record<CaseId, number>;
    for (const id of CASE_IDS) iterations[id] = calibrate(setup.loops[id], sizes.sharedRoundMs);
    // Interleaved rounds (A B C …, A B C …), as the harness does, timed in CPU time.
    const samples = new Map<CaseId, number[]>(CASE_IDS.map((id) => [id, []]));
    for (let r = -2; r < sizes.sharedRounds; r++) {
      for (const id of CASE_IDS) {
        const ns = perCall(setup.loops[id], iterations[id]);
        if (r >= 0) samples.get(id)!.push(ns);
      }
    }
    const out = {} as Record<CaseId, Figures>;
    for (const id of CASE_IDS) {
      const ns = samples.get(id)!;
      out[id] = { medianNs: median(ns), bestNs: Math.min(...ns), rounds: ns.length, share: setup.candidateShare(id) };
    }
    return out;
  } finally {
    await setup.close();
  }
}

const OP_LABEL: Record<Op, string> = { inc: 'inc (x) => x + 1', sha: 'sha256(64 B)' };
const MODE_LABEL: Record<Mode, string> = {
  direct: 'direct call',
  steady: 'steady target',
  canary: 'canary at 0.5',
  'canary-det': 'deterministic canary at 0.5 (both sides)',
};

function rowsFor(where: 'isolated' | 'shared', f: Record<CaseId, Figures>, loadNote: string, sizes: Sizes): Row[] {
  const rows: Row[] = [];
  const how =
    where === 'isolated'
      ? `a child process per routed case (${sizes.childProcesses} pass(es) × ${sizes.childRounds} rounds of ~${sizes.childRoundMs} ms of CPU), each paired round by round with a direct loop in the same child; ratios are medians of the paired ratios`
      : `every case in one process, ${sizes.sharedRounds} interleaved rounds of ~${sizes.sharedRoundMs} ms of CPU; the routed wrappers of the 6 targets share type feedback`;
  for (const op of OPS) {
    const direct = f[`direct-${op}`];
    const baseline = `${OP_LABEL[op]}: direct, ${where}`;
    for (const mode of MODES) {
      const x = f[`${mode}-${op}`];
      const label = `${OP_LABEL[op]}: ${MODE_LABEL[mode]}, ${where}`;
      const row: Row = { benchmark: NAME, case: label, unit: 'ns/call', median: x.medianNs, best: x.bestNs, rounds: x.rounds, status: 'info' };
      if (mode === 'direct') {
        rows.push({ ...row, status: 'baseline', ...(op === 'inc' ? { note: how + loadNote } : {}) });
        continue;
      }
      const ratio = x.pairedRatio ?? x.medianNs / direct.medianNs;
      const over = x.pairedOverNs ?? x.medianNs - direct.medianNs;
      const share = x.share === undefined ? '' : `; candidate took ${(100 * x.share).toFixed(1)}% of calls`;
      let goal: string | undefined;
      let wanted = '';
      if (mode === 'steady' && op === 'inc') {
        goal = `<= ${((direct.medianNs + STEADY_INC_BUDGET_NS) / direct.medianNs).toFixed(3)}`;
        wanted = ` (goal <= +${STEADY_INC_BUDGET_NS} ns)`;
      } else if (mode === 'steady') {
        goal = STEADY_SHA_GOAL;
        wanted = ' (goal <= +1 %)';
      } else if (mode === 'canary') {
        goal = `<= ${((direct.medianNs + CANARY_BUDGET_NS) / direct.medianNs).toFixed(3)}`;
        wanted = ` (goal <= +${CANARY_BUDGET_NS} ns)`;
      }
      // The routing overhead does not depend on the function's body; measured on inc it is
      // precise, while a 1 µs call's own noise (allocation, GC) is larger than 1 %.
      const incOver = f[`${mode}-inc`].pairedOverNs ?? f[`${mode}-inc`].medianNs - f['direct-inc'].medianNs;
      const derived =
        op === 'sha' ? `; the overhead measured on inc (+${incOver.toFixed(2)} ns) is ${((100 * incOver) / direct.medianNs).toFixed(2)}% of this call` : '';
      rows.push({
        ...row,
        ratio,
        baseline,
        ...(goal === undefined ? {} : { goal, status: judge(ratio, goal) }),
        note: `${over >= 0 ? '+' : ''}${over.toFixed(2)} ns/call over direct, ${((ratio - 1) * 100).toFixed(2)}%${wanted}${share}${derived}`,
      });
    }
  }
  return rows;
}

export async function run(options: { quick?: boolean } = {}): Promise<Row[]> {
  const sizes = options.quick === true ? QUICK : FULL;
  const load0 = loadavg()[0]!;
  const isolated = await measureIsolated(sizes);
  const load1 = loadavg()[0]!;
  const shared = await measureShared(sizes);
  const load2 = loadavg()[0]!;
  const load = (a: number, b: number): string => `; 1-min load average ${a.toFixed(2)} → ${b.toFixed(2)} on ${availableParallelism()} CPUs`;
  const rows = [...rowsFor('isolated', isolated, load(load0, load1), sizes), ...rowsFor('shared', shared, load(load1, load2), sizes)];
  return rows;
}

const isMain = process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain && process.argv[2] === '--child') {
  const id = process.argv[3] as CaseId;
  if (!CASE_IDS.includes(id)) throw new Error(`unknown case ${id}`);
  await child(id, Number(process.argv[4] ?? FULL.childRounds), Number(process.argv[5] ?? FULL.childRoundMs));
}

/*
 * canary-judge, part 0: calibration, so that "15 % slower" is 15 % slower on this machine.
 *
 * 1. `calibrate`: process CPU time per call (process.cpuUsage: other processes on a busy
 *    machine do not inflate it the way they inflate wall time) of the sync cores — SHA-256 of a
 *    short string, the salted HMAC token — and of one spin iteration (from spin(2000) calls),
 *    measured round-robin, median of 9 rounds, so a burst of load hits every case alike; and
 *    one Buffer.alloc(64 KiB) (best wall time of 9 rounds: its own cost, not the GC it causes).
 * 2. `refineCalibration`: the real payload modules of identical, faster-15, slower-15,
 *    alloc-heavy, slow-1.5x and slow-3x are written, imported and timed against the built-in
 *    the way the judge's latency effect size reads them (median ratio over thousands of pairs
 *    of calls on the same input, each timed with performance.now()). Code in a separately
 *    loaded module does not cost exactly what the bench's own copy costs, so the built-in's
 *    extra (dropping it must save ~15 %) and the slow-downs' spin (each must cost its nominal
 *    share over `identical`) are corrected from what was measured, and measured again, until
 *    within 10 % (at most 3 corrections). The first and last checks are printed.
 * The async target needs none of this: its costs are timer lengths (canary-judge-patches.ts).
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  BUILTIN_EXTRA,
  HASH,
  SIGN,
  SLOWDOWN,
  builtinHash,
  builtinSign,
  hashCore,
  kindSlug,
  patchSource,
  signCore,
  spin,
  type Calibration,
  type Kind,
} from './canary-judge-patches.js';

type Fn = (s: string) => unknown;

const cpuUs = (): number => {
  const u = process.cpuUsage();
  return u.user + u.system;
};

function medianOf(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

/**
 * CPU ns per call of each function: batches sized to take `roundUs` of CPU (the sizing runs
 * are the warm-up), then `rounds` rounds, each running every function once in turn; medians.
 */
function interleaved(fns: Record<string, Fn>, rounds = 9, roundUs = 8_000): Record<string, number> {
  const names = Object.keys(fns);
  const batch = new Map<string, number>();
  let n = 0;
  for (const name of names) {
    const fn = fns[name]!;
    let b = 64;
    for (;;) {
      const t0 = cpuUs();
      for (let j = 0; j < b; j++) fn(`calib-${n++}`);
      if (cpuUs() - t0 >= roundUs) break;
      b *= 2;
    }
    batch.set(name, b);
  }
  const samples = new Map<string, number[]>(names.map((name) => [name, []]));
  for (let r = 0; r < rounds; r++) {
    for (const name of names) {
      const fn = fns[name]!;
      const b = batch.get(name)!;
      const t0 = cpuUs();
      for (let j = 0; j < b; j++) fn(`req-${n++}`);
      samples.get(name)!.push(((cpuUs() - t0) * 1000) / b);
    }
  }
  return Object.fromEntries(names.map((name) => [name, medianOf(samples.get(name)!)]));
}

/**
 * One Buffer.alloc(64 KiB, fill) in wall time, the best of 9 rounds of 200: its own cost, without
 * the garbage collection it causes later (which CPU time would charge to whatever runs then).
 */
function allocNs(): number {
  const kept: Buffer[] = [];
  let best = Infinity;
  for (let r = 0; r < 9; r++) {
    const t0 = process.hrtime.bigint();
    for (let k = 0; k < 200; k++) kept[k & 7] = Buffer.alloc(65_536, k & 255);
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / 200);
  }
  return best;
}

/** First measurement: the cores, one spin iteration, one 64 KiB allocation. */
export function calibrate(): Calibration {
  const PROBE = 2_000;
  const m = interleaved({
    hash: (s) => hashCore(s),
    spin: () => spin(PROBE),
    sign: (s) => signCore(s),
  });
  const spinNs = m.spin! / PROBE;
  return {
    spinNs,
    coreNs: { hash: m.hash!, sign: m.sign! },
    extraIters: { hash: Math.round((BUILTIN_EXTRA * m.hash!) / spinNs), sign: Math.round((BUILTIN_EXTRA * m.sign!) / spinNs) },
    slowScale: { hash: 1, sign: 1 },
    allocNs: allocNs(),
  };
}

/**
 * Cost of each function over `base`, as the judge's latency effect size reads it: many pairs
 * of calls on the same input, each call timed with performance.now(), the order inside a pair
 * alternating (so neither side always runs second, on warm caches); the median of the pairs'
 * ratios. Robust to a busy machine: a preempted pair is one outlier among thousands.
 */
function pairedRatios(base: Fn, fns: Record<string, Fn>, pairs = 20_000): Record<string, number> {
  const out: Record<string, number> = {};
  let n = 0;
  for (const [name, fn] of Object.entries(fns)) {
    for (let i = 0; i < 2_000; i++) {
      base(`warm-${n}`);
      fn(`warm-${n++}`);
    }
    const ratios = new Float64Array(pairs);
    for (let i = 0; i < pairs; i++) {
      const s = `req-${n++}`;
      let tb: number;
      let tf: number;
      if ((i & 1) === 0) {
        const t0 = performance.now();
        base(s);
        const t1 = performance.now();
        fn(s);
        const t2 = performance.now();
        tb = t1 - t0;
        tf = t2 - t1;
      } else {
        const t0 = performance.now();
        fn(s);
        const t1 = performance.now();
        base(s);
        const t2 = performance.now();
        tf = t1 - t0;
        tb = t2 - t1;
      }
      ratios[i] = tf / Math.max(tb, 1e-6);
    }
    out[name] = medianOf([...ratios]);
  }
  return out;
}

const CHECKED: readonly Kind[] = ['identical', 'faster-15', 'slower-15', 'alloc-heavy', 'slow-1.5x', 'slow-3x'];
export type CheckRatios = Record<'hash' | 'sign', Partial<Record<Kind, number>>>;

/** The real payload modules' cost over the built-in's (pairedRatios), per sync target and kind. */
async function measurePayloads(cal: Calibration, dir: string, tag: string): Promise<CheckRatios> {
  const out: CheckRatios = { hash: {}, sign: {} };
  for (const key of ['hash', 'sign'] as const) {
    const target = key === 'hash' ? HASH : SIGN;
    const method = key === 'hash' ? 'digest' : 'sign';
    const impl = (key === 'hash' ? builtinHash(cal).impl : builtinSign(cal).impl) as unknown as Record<string, Fn>;
    const builtin = impl[method]!;
    const fns: Record<string, Fn> = {};
    for (const kind of CHECKED) {
      const uniqueId = `calibration-${tag}-${key}-${kindSlug(kind)}-${process.pid}`;
      const file = join(dir, `${uniqueId}.mjs`);
      await writeFile(file, patchSource({ kind, target, uniqueId, seed: 1, failAfter: 2 ** 31, cal }));
      const mod = (await import(pathToFileURL(file).href)) as { api: Record<string, Fn> };
      fns[kind] = mod.api[method]!;
    }
    const ratios = pairedRatios((s) => builtin(s), fns, key === 'hash' ? 20_000 : 8_000);
    for (const kind of CHECKED) out[key][kind] = ratios[kind]!;
  }
  return out;
}

/** Within this of nominal, a check needs no further correction. */
const TOLERANCE = 0.1;
const MAX_CORRECTIONS = 3;

/**
 * Measures the real payloads and corrects the built-in's extra and the slow-downs' spin from
 * what was measured, until the check is within 10 % of nominal (at most 3 corrections).
 */
export async function refineCalibration(
  initial: Calibration,
  dir: string,
): Promise<{ cal: Calibration; first: CheckRatios; last: CheckRatios; corrections: number }> {
  let cal = initial;
  const first = await measurePayloads(cal, dir, 'c0');
  let last = first;
  let corrections = 0;
  while (corrections < MAX_CORRECTIONS) {
    const next: Calibration = structuredClone(cal);
    let off = false;
    for (const key of ['hash', 'sign'] as const) {
      const r = last[key];
      const identical = r.identical!;
      // faster-15 over identical = core / (core + extra): the extra's real share of the core.
      const extraShare = identical / r['faster-15']! - 1;
      if (Math.abs(extraShare / BUILTIN_EXTRA - 1) > TOLERANCE) {
        off = true;
        const factor = extraShare > 0.01 ? BUILTIN_EXTRA / extraShare : 4;
        next.extraIters[key] = Math.max(1, Math.round(cal.extraIters[key] * Math.min(4, Math.max(0.25, factor))));
      }
      // Each slow-down's real cost over identical, as a share of its nominal one.
      const portion = medianOf((['slower-15', 'slow-1.5x', 'slow-3x'] as const).map((k) => (r[k]! - identical) / SLOWDOWN[k]!));
      if (Math.abs(portion - 1) > TOLERANCE) {
        off = true;
        next.slowScale[key] = cal.slowScale[key] / Math.min(4, Math.max(0.25, portion));
      }
    }
    if (!off) break;
    cal = next;
    corrections += 1;
    last = await measurePayloads(cal, dir, `c${corrections}`);
  }
  return { cal, first, last, corrections };
}

export function describeCheck(check: CheckRatios): string {
  const line = (r: Partial<Record<Kind, number>>): string => CHECKED.map((k) => `${k} ×${r[k]!.toFixed(2)}`).join(', ');
  return `SHA-256: ${line(check.hash)}; HMAC token: ${line(check.sign)}`;
}

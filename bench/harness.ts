/*
 * A small timing harness for the benchmarks: process.hrtime.bigint(), warm-up runs that are
 * thrown away, several measured rounds, median and min. Ratios are always taken between
 * medians measured in the same run (never against hard-coded numbers).
 *
 * Cases that are compared with each other are run interleaved (A B C, A B C, ...), so that a
 * burst of load from elsewhere on the machine hits every case alike instead of one of them.
 */
import { rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** One measured figure; every benchmark returns a list of these. */
export interface Row {
  /** Benchmark name (the file name): payload-hash, manifest-verify, cli-verify. */
  benchmark: string;
  /** What was measured. */
  case: string;
  /** Unit of `median` and `best`: "MB/s" (10^6 bytes per second), "µs/op", "ms". */
  unit: string;
  /** Median over the measured rounds (ratios use this). */
  median: number;
  /** Best round: the minimum time, or the maximum throughput. */
  best: number;
  /** Number of measured rounds (each possibly of many iterations). */
  rounds: number;
  /** Ratio of this case to its baseline on medians, in the direction the goal is stated. */
  ratio?: number;
  /** The case the ratio is taken against. */
  baseline?: string;
  /** The goal for `ratio`, e.g. ">= 0.9" or "<= 1.3"; undefined for informational rows. */
  goal?: string;
  /** "goal met" / "goal missed" for rows with a goal, "info" otherwise. */
  status: 'goal met' | 'goal missed' | 'info' | 'baseline';
  note?: string;
}

export interface Timing {
  /** Time of one operation in each measured round, in milliseconds. */
  samplesMs: number[];
  medianMs: number;
  minMs: number;
}

export interface TimeOptions {
  /** Unmeasured runs of the whole round before measuring (default 1). */
  warmup?: number;
  /** Measured rounds (default 5). */
  rounds?: number;
  /** Operations per round; a round's time is divided by this (default 1). */
  iterations?: number;
}

export type Operation = () => unknown;

export function median(values: readonly number[]): number {
  if (values.length === 0) throw new Error('median of no values');
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return typeof value === 'object' && value !== null && typeof (value as { then?: unknown }).then === 'function';
}

/** Runs `op` `iterations` times and returns the time per operation in ms. */
async function round(op: Operation, iterations: number): Promise<number> {
  const start = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) {
    // Synchronous operations are not awaited (an await per call would dominate a
    // microsecond-scale operation); asynchronous ones are.
    const result = op();
    if (isPromiseLike(result)) await result;
  }
  const elapsedNs = process.hrtime.bigint() - start;
  return Number(elapsedNs) / 1e6 / iterations;
}

function summarize(samplesMs: number[]): Timing {
  return { samplesMs, medianMs: median(samplesMs), minMs: Math.min(...samplesMs) };
}

/** Times one operation: `warmup` unmeasured rounds, then `rounds` measured ones. */
export async function time(op: Operation, options: TimeOptions = {}): Promise<Timing> {
  const result = await timeInterleaved({ op }, options);
  return result.op!;
}

/**
 * Times several operations round-robin: every warm-up round and every measured round runs
 * each case once, in the given order, before the next round starts.
 */
export async function timeInterleaved<K extends string>(cases: Record<K, Operation>, options: TimeOptions = {}): Promise<Record<K, Timing>> {
  const warmup = options.warmup ?? 1;
  const rounds = options.rounds ?? 5;
  const iterations = options.iterations ?? 1;
  const names = Object.keys(cases) as K[];
  for (let w = 0; w < warmup; w++) {
    for (const name of names) await round(cases[name], iterations);
  }
  const samples = new Map<K, number[]>(names.map((n) => [n, []]));
  for (let r = 0; r < rounds; r++) {
    for (const name of names) samples.get(name)!.push(await round(cases[name], iterations));
  }
  const out = {} as Record<K, Timing>;
  for (const name of names) out[name] = summarize(samples.get(name)!);
  return out;
}

/** Milliseconds one run of `op` took (wall time). */
export async function elapsedMs(op: () => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint();
  await op();
  return Number(process.hrtime.bigint() - start) / 1e6;
}

/** Status word for a ratio against a goal such as ">= 0.9" or "<= 1.3". */
export function judge(ratio: number, goal: string): 'goal met' | 'goal missed' {
  const m = /^(>=|<=)\s*([0-9.]+)$/.exec(goal.trim());
  if (m === null) throw new Error(`bad goal ${goal}`);
  const limit = Number(m[2]);
  return (m[1] === '>=' ? ratio >= limit : ratio <= limit) ? 'goal met' : 'goal missed';
}

/**
 * Runs `fn` with a fresh temporary directory under os.tmpdir() and removes it afterwards,
 * whether `fn` succeeds or throws, and also when the process is interrupted (Ctrl-C).
 */
export async function withTempDir<T>(prefix: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  const onSignal = (signal: NodeJS.Signals): void => {
    try {
      rmSync(dir, { recursive: true, force: true });
    } finally {
      process.exit(signal === 'SIGINT' ? 130 : 143);
    }
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    return await fn(dir);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await rm(dir, { recursive: true, force: true });
  }
}

// --- output ---

function formatNumber(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  const abs = Math.abs(value);
  if (abs >= 1000) return value.toFixed(0);
  if (abs >= 100) return value.toFixed(1);
  if (abs >= 10) return value.toFixed(2);
  return value.toFixed(3);
}

export function formatRatio(ratio: number | undefined): string {
  return ratio === undefined ? '' : `${ratio.toFixed(2)}×`;
}

/** The rows as an aligned plain-text table. */
export function formatTable(rows: readonly Row[]): string {
  const header = ['benchmark', 'case', 'median', 'best', 'unit', 'ratio', 'vs', 'goal', 'status'];
  const body = rows.map((r) => [
    r.benchmark,
    r.case,
    formatNumber(r.median),
    formatNumber(r.best),
    r.unit,
    formatRatio(r.ratio),
    r.baseline ?? '',
    r.goal === undefined ? '' : `${r.goal}×`,
    r.status,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((line) => line[i]!.length)));
  const numeric = new Set([2, 3, 5]);
  const fmt = (cells: string[]): string =>
    cells
      .map((c, i) => (numeric.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  const lines = [fmt(header), widths.map((w) => '-'.repeat(w)).join('  ')];
  for (const line of body) lines.push(fmt(line));
  const notes = rows.filter((r) => r.note !== undefined);
  if (notes.length > 0) {
    lines.push('');
    for (const r of notes) lines.push(`  ${r.benchmark} / ${r.case}: ${r.note}`);
  }
  return lines.join('\n');
}

/** Rounds figures for the JSON line (3 significant decimals are plenty). */
export function roundFigure(value: number): number {
  return Number(value.toPrecision(6));
}

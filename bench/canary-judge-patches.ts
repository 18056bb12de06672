/*
 * canary-judge, part 1: the three targets and the synthetic patches applied to them.
 *
 * Targets (built-in version 1.0.0, all declared idempotent so `retryOnBaseline` is allowed):
 *   bench.hash.sha256  deterministic, sync   digest(s) = SHA-256 hex of s (shadowed by the judge)
 *   bench.sign.token   sync                  sign(s) = salt.HMAC-SHA-256(salt ‖ s), a fresh random
 *                                            salt per call: outputs differ between calls
 *   bench.io.lookup    async                 lookup(key) = a 13 ms timer (the "I/O"), then
 *                                            SHA-256(key) hex + "." + a per-call nonce
 *
 * Why a timer for the async target (and not `await setImmediate`): with a fixed number of
 * calls in flight, a setImmediate wait is a wait for the rest of the event-loop turn, the same
 * for every call whichever version runs it; a candidate 3× slower in its own work is then not
 * 3× slower as a caller sees it. A timer models a lookup whose duration belongs to the call,
 * so "1.5× slower" means 1.5× the wait.
 *
 * Every sync built-in does its core work plus a little extra (a calibrated spin standing for
 * legacy bookkeeping, 18 % of the core's cost) that the `faster-15` patch drops; every other
 * patch keeps it. Slow-downs are a calibrated spin proportional to the built-in's own cost
 * (canary-judge-calibrate.ts: measured at bench start, then checked on the real payloads).
 * Each payload counts its calls in `globalThis.__canaryBench.candidateCalls` (the built-ins
 * count theirs in `builtinCalls`, at the same cost) and embeds the run's unique id, so no two
 * payloads share bytes or a module.
 */
import { createHash, createHmac, randomBytes } from 'node:crypto';
import type { TargetDeclaration } from '../src/index-runtime.js';

export const HASH = 'bench.hash.sha256';
export const SIGN = 'bench.sign.token';
export const LOOKUP = 'bench.io.lookup';
export const TARGETS = [HASH, SIGN, LOOKUP] as const;
export type TargetName = (typeof TARGETS)[number];

/** The HMAC key of bench.sign.token (the client checks every token with it). */
export const SIGN_KEY = 'canary-judge-bench-key';
/** The async built-in's wait, and the patches' waits (ms; timers are whole milliseconds). */
const LOOKUP_MS = { builtin: 13, faster: 11, slower: 15, slow15: 20, slow3: 39 } as const;

export interface HashApi {
  digest(s: string): string;
}
export interface SignApi {
  sign(s: string): string;
}
export interface LookupApi {
  lookup(key: string): Promise<string>;
}

export interface BenchCounters {
  candidateCalls: number;
  builtinCalls: number;
}

export function counters(): BenchCounters {
  const g = globalThis as { __canaryBench?: BenchCounters };
  return (g.__canaryBench ??= { candidateCalls: 0, builtinCalls: 0 });
}

// --- kinds ---

export type Kind =
  | 'identical'
  | 'slower-15'
  | 'faster-15'
  | 'alloc-heavy'
  | 'throws-0.1%'
  | 'throws-1%'
  | 'throws-10%'
  | 'wrong-0.1%'
  | 'wrong-1%'
  | 'slow-1.5x'
  | 'slow-3x'
  | 'fails-after-N'
  | 'never-settles-1%';

export interface KindInfo {
  kind: Kind;
  good: boolean;
  targets: readonly TargetName[];
}

export const KINDS: readonly KindInfo[] = [
  { kind: 'identical', good: true, targets: TARGETS },
  { kind: 'slower-15', good: true, targets: TARGETS },
  { kind: 'faster-15', good: true, targets: TARGETS },
  { kind: 'alloc-heavy', good: true, targets: TARGETS },
  { kind: 'throws-0.1%', good: false, targets: TARGETS },
  { kind: 'throws-1%', good: false, targets: TARGETS },
  { kind: 'throws-10%', good: false, targets: TARGETS },
  { kind: 'wrong-0.1%', good: false, targets: [HASH] },
  { kind: 'wrong-1%', good: false, targets: [HASH] },
  { kind: 'slow-1.5x', good: false, targets: TARGETS },
  { kind: 'slow-3x', good: false, targets: TARGETS },
  { kind: 'fails-after-N', good: false, targets: TARGETS },
  { kind: 'never-settles-1%', good: false, targets: [LOOKUP] },
];

/**
 * fails-after-N: N is drawn uniformly in [200, FAIL_AFTER_MAX[target]], about twice the
 * candidate calls a canary of that target sees on a 2-core machine, so the failure starts
 * mid-canary in about half the runs and after promotion (inside the probation) in the others.
 */
export const FAIL_AFTER_MIN = 200;
export const FAIL_AFTER_MAX: Record<TargetName, number> = { [HASH]: 250_000, [SIGN]: 80_000, [LOOKUP]: 30_000 };

/** A patch id fragment for a kind ([A-Za-z0-9._-] only). */
export function kindSlug(kind: Kind): string {
  return kind.replace('%', 'pct').replace(/[^A-Za-z0-9._-]/g, '-');
}

// --- the work every version is made of (the payloads carry the same code) ---

let spinSink = 1;
/** The calibrated busy loop: the built-ins' extra work and the patches' slow-downs. */
export function spin(n: number): void {
  let x = spinSink | 1;
  for (let i = 0; i < n; i++) x = (Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) + i) | 0;
  spinSink = x;
}

export const hashCore = (s: string): string => createHash('sha256').update(s).digest('hex');
export const signCore = (s: string): string => {
  const salt = randomBytes(12).toString('hex');
  return `${salt}.${createHmac('sha256', SIGN_KEY).update(salt).update(s).digest('hex')}`;
};

/** Measured at bench start by canary-judge-calibrate.ts. */
export interface Calibration {
  /** ns per spin iteration, inside a call. */
  spinNs: number;
  /** ns per call of the core work (without the built-in's extra), per sync target. */
  coreNs: { hash: number; sign: number };
  /** Spin iterations of the built-in's extra work (18 % of the core), per sync target. */
  extraIters: { hash: number; sign: number };
  /** Correction of the slow-downs' spin, from measuring the real payloads against the built-in (1: none). */
  slowScale: { hash: number; sign: number };
  /** ns of one Buffer.alloc(64 KiB). */
  allocNs: number;
}

/** Share of the core's cost the sync built-ins spend on extra work (dropped by faster-15). */
export const BUILTIN_EXTRA = 0.18;
/** What each sync kind's cost is meant to be, as a multiple of the built-in's. */
export const SLOWDOWN: Partial<Record<Kind, number>> = { 'slower-15': 0.15, 'slow-1.5x': 0.5, 'slow-3x': 2 };

// --- built-ins ---

export function builtinHash(cal: Calibration): TargetDeclaration<HashApi> {
  const c = counters();
  const extra = cal.extraIters.hash;
  return {
    version: '1.0.0',
    deterministic: true,
    idempotent: true,
    impl: {
      digest(s: string): string {
        c.builtinCalls++;
        const out = hashCore(s);
        spin(extra);
        return out;
      },
    },
  };
}

export function builtinSign(cal: Calibration): TargetDeclaration<SignApi> {
  const c = counters();
  const extra = cal.extraIters.sign;
  return {
    version: '1.0.0',
    idempotent: true,
    impl: {
      sign(s: string): string {
        c.builtinCalls++;
        const out = signCore(s);
        spin(extra);
        return out;
      },
    },
  };
}

let builtinNonce = 0;
export function builtinLookup(): TargetDeclaration<LookupApi> {
  const c = counters();
  return {
    version: '1.0.0',
    idempotent: true,
    impl: {
      async lookup(key: string): Promise<string> {
        c.builtinCalls++;
        await new Promise((resolve) => setTimeout(resolve, LOOKUP_MS.builtin));
        return `${hashCore(key)}.b${(++builtinNonce).toString(36)}`;
      },
    },
  };
}

// --- payload sources ---

export interface PatchParams {
  kind: Kind;
  target: TargetName;
  /** Unique per run: embedded in the payload so its bytes (and module) are its own. */
  uniqueId: string;
  /** Seed of the payload's own PRNG (which calls throw / never settle). */
  seed: number;
  /** fails-after-N: the N. */
  failAfter: number;
  cal: Calibration;
}

const share = (kind: Kind): number =>
  ({ 'throws-0.1%': 0.001, 'throws-1%': 0.01, 'throws-10%': 0.1, 'wrong-0.1%': 0.001, 'wrong-1%': 0.01, 'never-settles-1%': 0.01 })[kind as string] ?? 0;

/** Spin iterations a sync patch runs per call: the built-in's extra (unless dropped) plus its slow-down. */
function syncSpin(p: PatchParams, core: number, extraIters: number, scale: number): number {
  const full = core + extraIters * p.cal.spinNs;
  const slowdown = SLOWDOWN[p.kind] ?? 0;
  return (p.kind === 'faster-15' ? 0 : extraIters) + Math.round((slowdown * full * scale) / p.cal.spinNs);
}

/**
 * alloc-heavy, sync targets: one 64 KiB buffer (zero-filled, kept in a ring of 16 so it outlives
 * a scavenge) every this many calls, which keeps the allocation at ~10 % of the call's mean cost
 * (several buffers on every call would make it several times slower, i.e. not a good patch).
 * The async target's calls are long enough for three buffers on every call.
 */
function allocEvery(p: PatchParams, core: number): number {
  return Math.max(1, Math.ceil(p.cal.allocNs / (0.1 * core)));
}

function faultLines(p: PatchParams, indent: string): string {
  const lines: string[] = [];
  if (p.kind.startsWith('throws-')) lines.push(`if (rand() < ${share(p.kind)}) throw new Error('injected fault (${p.kind}) in call ' + calls);`);
  if (p.kind === 'fails-after-N')
    lines.push(`if (calls > ${p.failAfter}) throw new Error('failing since call ${p.failAfter} (fails-after-N), this is call ' + calls);`);
  return lines.map((l) => `${indent}${l}\n`).join('');
}

function allocLine(p: PatchParams, every: number, perCall: number, indent: string): string {
  if (p.kind !== 'alloc-heavy') return '';
  const body = Array.from({ length: perCall }, (_, i) => `kept[(k++) & 15] = Buffer.alloc(65536, (calls + ${i}) & 255);`).join(' ');
  return every <= 1 ? `${indent}${body}\n` : `${indent}if (++tick >= ${every}) { tick = 0; ${body} }\n`;
}

/** The ES module source of one synthetic patch. */
export function patchSource(p: PatchParams): string {
  const prelude = `import { createHash, createHmac, randomBytes } from 'node:crypto';
// canary-judge synthetic patch: kind ${p.kind}, target ${p.target}, run ${p.uniqueId}
const UNIQUE = ${JSON.stringify(p.uniqueId)};
const B = globalThis.__canaryBench;
let seed = ${p.seed >>> 0 || 1};
const rand = () => { seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5; return (seed >>> 0) / 4294967296; };
let sink = 1;
const spin = (n) => { let x = sink | 1; for (let i = 0; i < n; i++) x = (Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) + i) | 0; sink = x; };
let calls = 0;
let tick = 0;
let k = 0;
let nonce = 0;
const kept = [];
export const info = { unique: UNIQUE, kind: ${JSON.stringify(p.kind)} };
`;
  const I = '    ';
  if (p.target === HASH) {
    const wrong =
      p.kind === 'wrong-0.1%' || p.kind === 'wrong-1%'
        ? `${I}if (parseInt(out.slice(0, 8), 16) < ${Math.floor(share(p.kind) * 2 ** 32)}) out = (out[0] === '0' ? '1' : '0') + out.slice(1);\n`
        : '';
    return `${prelude}export const api = {
  digest(s) {
    B.candidateCalls++;
    calls++;
    let out = createHash('sha256').update(s).digest('hex');
    spin(${syncSpin(p, p.cal.coreNs.hash, p.cal.extraIters.hash, p.cal.slowScale.hash)});
${allocLine(p, allocEvery(p, p.cal.coreNs.hash), 1, I)}${faultLines(p, I)}${wrong}    return out;
  },
};
`;
  }
  if (p.target === SIGN) {
    return `${prelude}const KEY = ${JSON.stringify(SIGN_KEY)};
export const api = {
  sign(s) {
    B.candidateCalls++;
    calls++;
    const salt = randomBytes(12).toString('hex');
    const out = salt + '.' + createHmac('sha256', KEY).update(salt).update(s).digest('hex');
    spin(${syncSpin(p, p.cal.coreNs.sign, p.cal.extraIters.sign, p.cal.slowScale.sign)});
${allocLine(p, allocEvery(p, p.cal.coreNs.sign), 1, I)}${faultLines(p, I)}    return out;
  },
};
`;
  }
  const ms =
    p.kind === 'faster-15'
      ? LOOKUP_MS.faster
      : p.kind === 'slower-15'
        ? LOOKUP_MS.slower
        : p.kind === 'slow-1.5x'
          ? LOOKUP_MS.slow15
          : p.kind === 'slow-3x'
            ? LOOKUP_MS.slow3
            : LOOKUP_MS.builtin;
  const never = p.kind === 'never-settles-1%' ? `${I}if (rand() < ${share(p.kind)}) return new Promise(() => {});\n` : '';
  return `${prelude}export const api = {
  async lookup(key) {
    B.candidateCalls++;
    calls++;
${never}    await new Promise((resolve) => setTimeout(resolve, ${ms}));
${allocLine(p, 1, 3, I)}${faultLines(p, I)}    return createHash('sha256').update(key).digest('hex') + '.c' + (++nonce).toString(36);
  },
};
`;
}

/** What the client checks an answer against, per target (false: a wrong answer). */
export function checker(target: TargetName): (input: string, output: unknown) => boolean {
  if (target === HASH) return (input, output) => output === hashCore(input);
  if (target === SIGN) {
    return (input, output) => {
      if (typeof output !== 'string') return false;
      const dot = output.indexOf('.');
      if (dot < 0) return false;
      const salt = output.slice(0, dot);
      return output.slice(dot + 1) === createHmac('sha256', SIGN_KEY).update(salt).update(input).digest('hex');
    };
  }
  return (input, output) => typeof output === 'string' && output.length > 65 && output.startsWith(`${hashCore(input)}.`);
}

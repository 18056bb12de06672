import { HotPatchError, describe, type IsolationLimits, type IsolationSettings } from '../../core/index.js';

/** Every limit of an isolated load, defaults filled in. */
export type ResolvedIsolation = Required<Omit<IsolationSettings, 'stackMb'>> & { stackMb: number | undefined };

export const DEFAULT_ISOLATION: Readonly<Required<Omit<IsolationLimits, 'stackMb'>>> = Object.freeze({
  callTimeoutMs: 30_000,
  loadTimeoutMs: 30_000,
  memoryMb: 512,
  maxRestartsPerMinute: 3,
  maxPendingCalls: 10_000,
});

/** A child's own runtime (code, libuv, V8 outside its heap) needs about this much writable memory. */
export const PROCESS_RUNTIME_MB = 96;
const MAX_TIMER_MS = 2 ** 31 - 1;
const KNOWN_KEYS = new Set(['mode', 'callTimeoutMs', 'loadTimeoutMs', 'memoryMb', 'stackMb', 'maxRestartsPerMinute', 'maxPendingCalls']);

function checkNumber(value: unknown, field: string, min: number, max: number, integer = false): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max || (integer && !Number.isInteger(value))) {
    throw new HotPatchError('INVALID', `${field} must be ${integer ? 'an integer' : 'a number'} between ${min} and ${max}, got ${describe(value)}`);
  }
  return value;
}

/** The limits of `value` checked (INVALID naming the field), defaults filled in. */
export function resolveIsolation(value: unknown, field = 'isolation'): ResolvedIsolation {
  if (typeof value !== 'object' || value === null) throw new HotPatchError('INVALID', `${field} must be an object, got ${describe(value)}`);
  const o = value as Partial<IsolationSettings>;
  // A misspelt limit (callTimeoutMS) would otherwise leave its default in place, silently.
  const unknown = Object.keys(o).filter((k) => !KNOWN_KEYS.has(k));
  if (unknown.length > 0) {
    throw new HotPatchError(
      'INVALID',
      `${field} has unknown field${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => JSON.stringify(k.slice(0, 40))).join(', ')} (known: ${[...KNOWN_KEYS].filter((k) => k !== 'mode').join(', ')})`,
    );
  }
  if (o.mode !== 'worker' && o.mode !== 'process') {
    throw new HotPatchError('INVALID', `${field}.mode must be 'worker' or 'process', got ${describe(o.mode)}`);
  }
  const memoryMin = o.mode === 'process' ? PROCESS_RUNTIME_MB + 64 : 16;
  const resolved: ResolvedIsolation = {
    mode: o.mode,
    callTimeoutMs: checkNumber(o.callTimeoutMs ?? DEFAULT_ISOLATION.callTimeoutMs, `${field}.callTimeoutMs`, 1, MAX_TIMER_MS),
    loadTimeoutMs: checkNumber(o.loadTimeoutMs ?? DEFAULT_ISOLATION.loadTimeoutMs, `${field}.loadTimeoutMs`, 1, MAX_TIMER_MS),
    memoryMb: checkNumber(o.memoryMb ?? DEFAULT_ISOLATION.memoryMb, `${field}.memoryMb`, memoryMin, 1024 * 1024, true),
    stackMb: o.stackMb === undefined ? undefined : checkNumber(o.stackMb, `${field}.stackMb`, 1, 1024),
    maxRestartsPerMinute: checkNumber(o.maxRestartsPerMinute ?? DEFAULT_ISOLATION.maxRestartsPerMinute, `${field}.maxRestartsPerMinute`, 0, 1000, true),
    maxPendingCalls: checkNumber(o.maxPendingCalls ?? DEFAULT_ISOLATION.maxPendingCalls, `${field}.maxPendingCalls`, 1, 10_000_000, true),
  };
  // In a child the OS stack of every thread takes stackMb (ulimit -s), all counted in RLIMIT_DATA.
  if (resolved.mode === 'process' && resolved.stackMb !== undefined && resolved.stackMb > resolved.memoryMb / 16) {
    throw new HotPatchError(
      'INVALID',
      `${field}.stackMb ${resolved.stackMb} is over memoryMb / 16 (${resolved.memoryMb / 16}): in a child process every thread gets a stack that size, counted against memoryMb`,
    );
  }
  return resolved;
}

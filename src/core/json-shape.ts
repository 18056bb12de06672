import { HotPatchError } from './errors.js';

/**
 * The two checks every strict JSON parser of the project starts with (manifest, trust store,
 * state file, journal, approvers, policy): a plain object, and no field it does not define.
 */
export function asObject(value: unknown, field: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new HotPatchError('INVALID', `${field} must be a JSON object, got ${describe(value)}`);
  }
  return value as Record<string, unknown>;
}

export function rejectUnknownFields(obj: Record<string, unknown>, known: ReadonlySet<string>, field: string): void {
  for (const key of Object.keys(obj)) {
    if (!known.has(key)) throw new HotPatchError('INVALID', `${field} has unknown field ${JSON.stringify(key)}`);
  }
}

/** A short description of a value for error messages (strings quoted and cut at 80 characters). */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value);
  if (typeof value === 'object') return 'an object';
  return `${typeof value} ${String(value)}`;
}

/** A positive safe integer (a count, a limit), or INVALID naming `name`. */
export function positiveInteger(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new HotPatchError('INVALID', `${name} must be a positive integer, got ${describe(value)}`);
  }
  return value;
}

import semver from 'semver';
import { HotPatchError } from './errors.js';
import { parseRfc3339 } from './rfc3339.js';

/*
 * The strict-JSON kit: the checks every strict parser of the project is built from (manifest,
 * envelope, trust store, state file, journal, approvers, policies, fleet documents, agent
 * request bodies). Each check takes the value and the name to report, returns the value typed,
 * or throws INVALID (PARSE for text that is not JSON) with a bounded message naming the field
 * and describing what it got. Internal to the package: reached through core/index.ts, never
 * exported from the public entry points.
 */

/** The default bound of a string field (a reason, a version, an id): far above any real one. */
export const MAX_JSON_STRING = 4096;

/** Bytes (strict UTF-8) or text → a JSON value; PARSE naming `what` when it is not. */
export function decodeJson(input: Uint8Array | string, what: string): unknown {
  let text: string;
  if (typeof input === 'string') {
    text = input;
  } else {
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(input);
    } catch (cause) {
      throw new HotPatchError('PARSE', `${what} is not valid UTF-8`, { cause });
    }
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (cause) {
    throw new HotPatchError('PARSE', `${what} is not valid JSON: ${(cause as Error).message}`, { cause });
  }
}

/** `decodeJson` then `asObject`: a document whose top level must be an object. */
export function decodeJsonObject(input: Uint8Array | string, what: string): Record<string, unknown> {
  return asObject(decodeJson(input, what), what);
}

/**
 * A plain object: what JSON.parse makes (its prototype is a realm's Object.prototype, or null).
 * Arrays, class instances, Maps and Dates are not: their fields would be read as nothing.
 */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value) as object | null;
  return proto === null || Object.getPrototypeOf(proto) === null;
}

/** A plain object (see isPlainObject), or INVALID naming `field`. */
export function asObject(value: unknown, field: string): Record<string, unknown> {
  if (!isPlainObject(value)) {
    throw new HotPatchError('INVALID', `${field} must be a JSON object, got ${describe(value)}`);
  }
  return value;
}

/** Refuses the first field of `obj` not in `known`, so a typo is never silently ignored. */
export function rejectUnknownFields(obj: Record<string, unknown>, known: ReadonlySet<string> | readonly string[], field: string): void {
  const allowed: ReadonlySet<string> = known instanceof Set ? known : new Set(known as readonly string[]);
  for (const key of Object.keys(obj)) {
    if (!allowed.has(key)) {
      const list = allowed.size === 0 ? 'none' : [...allowed].join(', ');
      throw new HotPatchError('INVALID', `${field} has unknown field ${describe(key)} (allowed: ${list})`);
    }
  }
}

/**
 * A short description of a value for error messages: strings quoted and cut at 80 characters,
 * an instance named by its class (`an instance of Map`), never a dump of its content.
 */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value);
  if (typeof value === 'function') return 'a function';
  if (typeof value === 'object') {
    const name = isPlainObject(value) ? undefined : className(value);
    return name === undefined ? 'an object' : `an instance of ${name}`;
  }
  return `${typeof value} ${String(value)}`;
}

/** The name of an instance's class, read without running a getter; undefined when there is no usable one. */
function className(value: object): string | undefined {
  const proto = Object.getPrototypeOf(value) as object | null;
  const ctor = proto === null ? undefined : (Object.getOwnPropertyDescriptor(proto, 'constructor')?.value as unknown);
  if (typeof ctor !== 'function') return undefined;
  const name = Object.getOwnPropertyDescriptor(ctor, 'name')?.value as unknown;
  return typeof name === 'string' && /^[A-Za-z_$][\w$]{0,39}$/.test(name) ? name : undefined;
}

/** A positive safe integer (a count, a limit), or INVALID naming `name`. */
export function positiveInteger(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new HotPatchError('INVALID', `${name} must be a positive integer, got ${describe(value)}`);
  }
  return value;
}

/** A safe integer from `min` to `max` (both included; no upper bound when `max` is left out). */
export function integerInRange(value: unknown, name: string, min: number, max?: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || (max !== undefined && value > max)) {
    const range = max === undefined ? `>= ${min}` : `from ${min} to ${max}`;
    throw new HotPatchError('INVALID', `${name} must be an integer ${range}, got ${describe(value)}`);
  }
  return value;
}

/** A non-empty string of at most `max` characters. */
export function boundedString(value: unknown, name: string, max: number = MAX_JSON_STRING): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > max) {
    throw new HotPatchError('INVALID', `${name} must be a non-empty string of at most ${max} characters, got ${describe(value)}`);
  }
  return value;
}

export interface StringFieldOptions {
  /** Absent (undefined) is allowed and returns undefined. */
  optional?: boolean;
  /** Longest accepted value, in characters (default MAX_JSON_STRING). */
  max?: number;
}

/** `obj[key]` as a bounded string (see boundedString), reported as `${where}.${key}`. */
export function stringField(obj: Record<string, unknown>, key: string, where: string, options: StringFieldOptions & { optional: true }): string | undefined;
export function stringField(obj: Record<string, unknown>, key: string, where: string, options?: StringFieldOptions & { optional?: false }): string;
export function stringField(obj: Record<string, unknown>, key: string, where: string, options?: StringFieldOptions): string | undefined;
export function stringField(obj: Record<string, unknown>, key: string, where: string, options: StringFieldOptions = {}): string | undefined {
  const value = obj[key];
  if (value === undefined && options.optional === true) return undefined;
  return boundedString(value, `${where}.${key}`, options.max);
}

/** One of `allowed` (a closed list of names). */
export function oneOf<T extends string>(value: unknown, allowed: readonly T[], name: string): T {
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    throw new HotPatchError('INVALID', `${name} must be one of ${allowed.join(', ')}, got ${describe(value)}`);
  }
  return value as T;
}

const PAYLOAD_HASH = /^[a-z0-9-]{2,16}:[0-9a-fA-F]{32,128}$/;

/**
 * A payload hash as a document names the one it expects (`<alg>:<hex>`, as a manifest's
 * `payload_hash`): a fleet rollout, a plan's pin. Returned as written.
 */
export function payloadHashText(value: string, name: string): string {
  if (!PAYLOAD_HASH.test(value)) throw new HotPatchError('INVALID', `${name} must look like sha256:<hex>, got ${describe(value)}`);
  return value;
}

/** A canonical semver version: what semver.valid gives back unchanged (no "v", no blanks). */
export function canonicalVersion(value: unknown, name: string): string {
  if (typeof value !== 'string' || value.length > 256 || semver.valid(value) !== value) {
    throw new HotPatchError('INVALID', `${name} must be a canonical semver version (no "v", no blanks), got ${describe(value)}`);
  }
  return value;
}

const UTC_TIMESTAMP = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$/;

/** An RFC 3339 time in UTC as Date#toISOString writes it (`…T…Z`), naming a real date. */
export function utcTimestamp(value: unknown, name: string): string {
  if (typeof value !== 'string' || !UTC_TIMESTAMP.test(value)) {
    throw new HotPatchError('INVALID', `${name} must be an RFC 3339 UTC time, got ${describe(value)}`);
  }
  parseRfc3339(value, name);
  return value;
}

/** undefined for an absent value, else what `parse` makes of it. */
export function optional<T>(value: unknown, parse: (value: unknown) => T): T | undefined {
  return value === undefined ? undefined : parse(value);
}

import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from './cli-error.js';

type Options = NonNullable<ParseArgsConfig['options']>;

export interface ParsedCommand<T> {
  values: T;
  json: boolean;
  help: boolean;
  /** Arguments that are not flags (only when `allowPositionals`; empty otherwise). */
  positionals: string[];
}

/**
 * util.parseArgs, strict, with --json/--help on every command and usage errors typed. A word
 * that is not a flag is refused unless `allowPositionals` (`hotpatch trust set-threshold … N`).
 */
export function parseCommandArgs(
  argv: string[],
  options: Options,
  allowPositionals = false,
): ParsedCommand<Record<string, string | string[] | boolean | undefined>> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: { ...options, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals,
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const values = parsed.values as Record<string, string | string[] | boolean | undefined>;
  return { values, json: values.json === true, help: values.help === true, positionals: parsed.positionals };
}

export function requireString(values: Record<string, unknown>, name: string): string {
  const v = values[name];
  if (typeof v !== 'string' || v.length === 0) throw new UsageError(`--${name} is required`);
  return v;
}

export function optionalString(values: Record<string, unknown>, name: string): string | undefined {
  const v = values[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v.length === 0) throw new UsageError(`--${name} needs a value`);
  return v;
}

/** A whole number flag (`--rings 3`) of at least `min`. */
export function integerFlag(values: Record<string, unknown>, name: string, min: number): number {
  const text = requireString(values, name);
  if (!/^\d+$/.test(text)) throw new UsageError(`--${name} must be a whole number, got ${JSON.stringify(text)}`);
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < min) throw new UsageError(`--${name} must be at least ${min}, got ${text}`);
  return n;
}

export function stringList(values: Record<string, unknown>, name: string): string[] {
  const v = values[name];
  if (v === undefined) return [];
  return Array.isArray(v) ? (v as string[]) : [v as string];
}

/** `key=value` pairs (for --meta, --requires); the key must be non-empty and unique. */
export function keyValuePairs(values: Record<string, unknown>, name: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of stringList(values, name)) {
    const at = item.indexOf('=');
    if (at <= 0) throw new UsageError(`--${name} takes key=value, got ${JSON.stringify(item)}`);
    const key = item.slice(0, at);
    if (Object.prototype.hasOwnProperty.call(out, key)) throw new UsageError(`--${name} sets ${JSON.stringify(key)} twice`);
    out[key] = item.slice(at + 1);
  }
  return out;
}

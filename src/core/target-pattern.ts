import { HotPatchError } from './errors.js';

/**
 * A target pattern is an exact name or a glob anchored at both ends,
 * case-sensitive, where `*` (the only wildcard) matches any run of characters, dots
 * included. Matching is done on literal segments (no regex built from user input), so
 * `xps.crypto.*` covers `xps.crypto.hash.sha256` but never `xps.cryptography.x`.
 */
export function matchesTargetPattern(pattern: string, name: string): boolean {
  const parts = pattern.split('*');
  if (parts.length === 1) return pattern === name;
  const first = parts[0]!;
  const last = parts[parts.length - 1]!;
  if (name.length < first.length + last.length) return false;
  if (!name.startsWith(first) || !name.endsWith(last)) return false;
  let at = first.length;
  const end = name.length - last.length;
  for (let i = 1; i < parts.length - 1; i++) {
    const part = parts[i]!;
    const found = name.indexOf(part, at);
    if (found === -1 || found + part.length > end) return false;
    at = found + part.length;
  }
  return true;
}

const PATTERN_SYNTAX = /^[A-Za-z0-9_.*-]{1,256}$/;

export function parseTargetPattern(value: unknown, field: string): string {
  if (typeof value !== 'string' || !PATTERN_SYNTAX.test(value)) {
    throw new HotPatchError('INVALID', `${field} must be a target name or glob of [A-Za-z0-9_.-] and "*", got ${JSON.stringify(value)}`);
  }
  return value;
}

export function matchesAnyTargetPattern(patterns: readonly string[], name: string): boolean {
  return patterns.some((p) => matchesTargetPattern(p, name));
}

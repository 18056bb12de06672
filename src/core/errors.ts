/**
 * The one error type of the project. Every failure carries a stable string `code`
 * (docs/ARCHITECTURE.md "Error codes"), so callers, the CLI and `--json` output can branch on it
 * without parsing messages.
 */

import { redactSecrets } from './secrets.js';

export const REPOSITORY_ERROR_CODES = ['IO', 'PARSE', 'NOT_FOUND', 'INVALID', 'TOO_LARGE'] as const;
export const VERIFICATION_ERROR_CODES = [
  'BAD_SIGNATURE',
  'UNTRUSTED_KEY',
  'THRESHOLD_NOT_MET',
  'HASH_MISMATCH',
  'SIZE_MISMATCH',
  'EXPIRED',
  'NOT_YET_VALID',
  'ALGORITHM_DISALLOWED',
  'DOWNGRADE',
  'KEY_REVOKED',
  'DECRYPT_FAILED',
] as const;
/** `UNAUTHENTICATED`: the agent refused who the caller is (a wrong or missing bearer token, HTTP 401). */
export const POLICY_ERROR_CODES = ['POLICY_DENIED', 'REQUIREMENT_UNSATISFIED', 'PLATFORM_MISMATCH', 'UNAUTHENTICATED'] as const;
export const ROLLOUT_ERROR_CODES = ['APPROVAL_MISSING', 'SELF_TEST_FAILED', 'CANARY_FAILED', 'ABORTED', 'LOAD_FAILED', 'CRASHED', 'TIMEOUT'] as const;

export const ERROR_CODES = [...REPOSITORY_ERROR_CODES, ...VERIFICATION_ERROR_CODES, ...POLICY_ERROR_CODES, ...ROLLOUT_ERROR_CODES] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

/** Which stage of the pipeline a code belongs to; the CLI maps "operational" to exit 3. */
export type ErrorCategory = 'repository' | 'verification' | 'policy' | 'rollout';

export function errorCategory(code: ErrorCode): ErrorCategory {
  if ((REPOSITORY_ERROR_CODES as readonly string[]).includes(code)) return 'repository';
  if ((VERIFICATION_ERROR_CODES as readonly string[]).includes(code)) return 'verification';
  if ((POLICY_ERROR_CODES as readonly string[]).includes(code)) return 'policy';
  return 'rollout';
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && (ERROR_CODES as readonly string[]).includes(value);
}

export interface HotPatchErrorOptions {
  cause?: unknown;
  /** Machine-readable figures (e.g. `{ valid: 1, required: 2 }`) for `--json` and events. */
  detail?: Record<string, unknown>;
}

export class HotPatchError extends Error {
  readonly code: ErrorCode;
  readonly detail: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: HotPatchErrorOptions = {}) {
    super(boundMessage(message), options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'HotPatchError';
    this.code = code;
    this.detail = options.detail;
  }

  toJSON(): { code: ErrorCode; message: string; detail?: Record<string, unknown> } {
    return this.detail === undefined ? { code: this.code, message: this.message } : { code: this.code, message: this.message, detail: this.detail };
  }
}

/** Longest error message kept (characters): messages built from untrusted input stay bounded. */
export const MAX_ERROR_MESSAGE = 2048;

/**
 * Bounds a message in one place: a longer one keeps its beginning and says how much was cut,
 * so no record built from an error (journal, audit log, API answer) can grow without bound.
 */
export function boundMessage(text: string, max = MAX_ERROR_MESSAGE): string {
  // Secrets go first (a bound could cut one in two and leave a fragment to find); see secrets.ts.
  const message = redactSecrets(text);
  if (message.length <= max) return message;
  const suffix = ` … (${message.length - max} characters cut)`;
  return message.slice(0, max - suffix.length) + suffix;
}

export function isHotPatchError(value: unknown, code?: ErrorCode): value is HotPatchError {
  return value instanceof HotPatchError && (code === undefined || value.code === code);
}

/** The message of anything thrown (an Error's message, else its string form). */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The errno code of a Node system error (`ENOENT`, `EEXIST`…), or undefined. */
export function errnoOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

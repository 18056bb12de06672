import { HotPatchError, type ErrorCode } from '../core/index.js';

/** Exit status contract (docs/ARCHITECTURE.md "Command line contract"). */
export const EXIT_OK = 0;
export const EXIT_REJECTED = 1;
export const EXIT_USAGE = 2;
export const EXIT_OPERATIONAL = 3;

/** Bad flags or arguments: exit 2, nothing touched. */
export class UsageError extends Error {
  readonly code: ErrorCode;
  constructor(message: string, code: ErrorCode = 'INVALID', options: { cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'UsageError';
    this.code = code;
  }
}

/**
 * A library refusal of a value the flags gave (INVALID naming it in `detail.option`) as the
 * usage error it is (exit 2), its message after `prefix(option)`; any other error as it is.
 */
export function asFlagError(error: unknown, prefix: (option: string) => string = () => ''): unknown {
  const option = error instanceof HotPatchError && error.code === 'INVALID' ? error.detail?.option : undefined;
  return typeof option === 'string' ? new UsageError(`${prefix(option)}${(error as Error).message}`, 'INVALID', { cause: error }) : error;
}

/**
 * Codes that mean "the system could not do its job" rather than "the patch was refused":
 * I/O, something missing, and an agent that refused who the caller is (UNAUTHENTICATED: a
 * wrong or missing token is an operational fault to fix, not a verdict on the patch).
 */
const OPERATIONAL_CODES: ReadonlySet<ErrorCode> = new Set(['IO', 'NOT_FOUND', 'UNAUTHENTICATED']);

export function exitCodeFor(error: unknown): number {
  if (error instanceof UsageError) return EXIT_USAGE;
  if (error instanceof HotPatchError) return OPERATIONAL_CODES.has(error.code) ? EXIT_OPERATIONAL : EXIT_REJECTED;
  return EXIT_OPERATIONAL;
}

import { describe, errnoOf, HotPatchError, messageOf } from '../core/index.js';

/*
 * The checks and error mapping every file primitive of this module shares (see atomic-file.ts
 * for the mapping rules): argument checks, errno → error code, abort, cleanup failures.
 */

/** Default read granularity: one chunk of a payload stream, one read(2) of a manifest. */
export const DEFAULT_CHUNK_SIZE = 64 * 1024;

/** Largest chunk size accepted; beyond this a single allocation would be unreasonable. */
export const MAX_CHUNK_SIZE = 16 * 1024 * 1024;

export function checkPath(value: unknown, name: string): string {
  if (typeof value !== 'string' || value.length === 0) {
    throw new HotPatchError('INVALID', `${name} must be a non-empty string, got ${describe(value)}`);
  }
  if (value.includes('\0')) {
    throw new HotPatchError('INVALID', `${name} must not contain a NUL character`);
  }
  return value;
}

/** A byte count: a non-negative safe integer. */
export function checkByteLimit(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new HotPatchError('INVALID', `${name} must be a non-negative safe integer, got ${describe(value)}`);
  }
  return value;
}

export function checkChunkSize(value: unknown, name = 'chunkSize'): number {
  if (value === undefined) return DEFAULT_CHUNK_SIZE;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1 || value > MAX_CHUNK_SIZE) {
    throw new HotPatchError('INVALID', `${name} must be an integer from 1 to ${MAX_CHUNK_SIZE}, got ${describe(value)}`);
  }
  return value;
}

export function checkMode(value: unknown): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 0o7777) {
    throw new HotPatchError('INVALID', `mode must be an integer from 0 to 0o7777, got ${describe(value)}`);
  }
  return value;
}

// --- error helpers ---

/** Throws `ABORTED` when the signal has fired; the signal's reason becomes the cause. */
export function throwIfAborted(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted === true) {
    throw new HotPatchError('ABORTED', `${what} was aborted`, { cause: signal.reason });
  }
}

/**
 * `promise`, or ABORTED as soon as `signal` fires (the work itself goes on: the caller bounds
 * it otherwise). What a wait that must end on an abort uses.
 */
export function raceAbort<T>(promise: Promise<T>, signal: AbortSignal, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => {
      reject(new HotPatchError('ABORTED', `${what} was aborted`, { cause: signal.reason }));
    };
    if (signal.aborted) {
      onAbort();
    } else {
      signal.addEventListener('abort', onAbort, { once: true });
    }
    // A rejection that arrives after the abort lands on an already-settled promise: it is
    // handled here (no unhandled rejection) and superseded by ABORTED.
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}

/** Maps a failed open/read/stat of `file` onto the repository error codes. */
export function fileError(error: unknown, action: string, file: string, what = 'file', noFollow = true): HotPatchError {
  if (error instanceof HotPatchError) return error;
  const errno = errnoOf(error);
  if (errno === 'ENOENT') {
    return new HotPatchError('NOT_FOUND', `${what} ${file} does not exist`, { cause: error });
  }
  // Linux reports ELOOP for O_NOFOLLOW on a link; FreeBSD reports EMLINK.
  if (noFollow && (errno === 'ELOOP' || errno === 'EMLINK')) {
    return new HotPatchError('INVALID', `${what} ${file} is a symbolic link, which is never followed`, { cause: error });
  }
  return new HotPatchError('IO', `cannot ${action} ${what} ${file}: ${messageOf(error)}`, {
    cause: error,
    ...(errno === undefined ? {} : { detail: { errno } }),
  });
}

/**
 * A cleanup step (close, unlink) failed after a primary error: keep the primary's code and
 * message in front, and carry both errors in an AggregateError cause, so neither is lost.
 */
export function withCleanupFailure(primary: unknown, cleanup: unknown, step: string): HotPatchError {
  const cause = new AggregateError([primary, cleanup], `${messageOf(primary)}; then ${step} failed: ${messageOf(cleanup)}`);
  const suffix = ` (then ${step} also failed: ${messageOf(cleanup)})`;
  if (primary instanceof HotPatchError) {
    return new HotPatchError(primary.code, `${primary.message}${suffix}`, {
      cause,
      ...(primary.detail === undefined ? {} : { detail: primary.detail }),
    });
  }
  return new HotPatchError('IO', `${messageOf(primary)}${suffix}`, { cause });
}

export { errnoOf, messageOf } from '../core/index.js';

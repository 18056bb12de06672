/*
 * Assertions on HotPatchError codes, shared by every test directory: a predicate for
 * `assert.throws` / `assert.rejects` (`isCode`), an asserting validator that says what it got
 * (`assertCode`), and direct checks that return the error for further asserts (`throwsCode`,
 * `rejectsWith`).
 */
import assert from 'node:assert/strict';
import { HotPatchError, type ErrorCode } from '../../src/core/index.js';

/** `(e) => e is a HotPatchError of code (and its message matches)`: a plain predicate, it never throws. */
export function isCode(code: string, message?: RegExp): (error: unknown) => boolean {
  return (error: unknown) => error instanceof HotPatchError && error.code === code && (message === undefined || message.test(error.message));
}

/**
 * A validator for `assert.throws` / `assert.rejects`: asserts the error's `code` (and message),
 * so a mismatch fails saying what was thrown instead of "the validation function is expected to return true".
 */
export function assertCode(code: string, message?: RegExp): (error: unknown) => boolean {
  return (error: unknown) => {
    assert.equal((error as HotPatchError).code, code, `expected ${code}, got ${String((error as Error).message)}`);
    if (message !== undefined) assert.match((error as Error).message, message);
    return true;
  };
}

function checked(caught: unknown, code: ErrorCode, message: RegExp | undefined): HotPatchError {
  assert.ok(caught instanceof HotPatchError, `expected a HotPatchError ${code}, got ${String(caught)}`);
  assert.equal(caught.code, code, `expected ${code}, got ${caught.code}: ${caught.message}`);
  if (message !== undefined) assert.match(caught.message, message);
  return caught;
}

/** Asserts that `fn` throws a HotPatchError with `code` (and a message matching `message`); returns it. */
export function throwsCode(fn: () => unknown, code: ErrorCode, message?: RegExp): HotPatchError {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  return checked(caught, code, message);
}

/** Asserts that `promise` rejects with a HotPatchError of `code` (and a message matching `message`); returns it. */
export async function rejectsWith(promise: Promise<unknown>, code: ErrorCode, message?: RegExp): Promise<HotPatchError> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  return checked(caught, code, message);
}

export type Outcome<T> = { ok: true; value: T } | { ok: false; error: HotPatchError };

/**
 * What `fn` did: the value it returned, or the HotPatchError it threw. Anything else thrown
 * fails the test, so a property can state "returns X, or refuses with code C" for every input.
 */
export function outcomeOf<T>(fn: () => T): Outcome<T> {
  try {
    return { ok: true, value: fn() };
  } catch (error) {
    assert.ok(error instanceof HotPatchError, `expected a value or a HotPatchError, got ${String(error)}`);
    return { ok: false, error };
  }
}

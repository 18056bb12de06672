import { HotPatchError } from './errors.js';

/**
 * 1–128 of [A-Za-z0-9._-], first a letter or digit, never ".." (docs/ARCHITECTURE.md
 * "Repository layout").
 */
const PATCH_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export type PatchId = string & { readonly __brand: 'PatchId' };

export function isPatchId(value: unknown): value is PatchId {
  return typeof value === 'string' && PATCH_ID_PATTERN.test(value) && !value.includes('..');
}

/**
 * Checked before any file is touched: the id becomes a file name under a repository root,
 * so anything that could name another directory is refused here.
 */
export function parsePatchId(value: unknown, what = 'patch id'): PatchId {
  if (typeof value !== 'string') {
    throw new HotPatchError('INVALID', `${what} must be a string, got ${typeof value}`);
  }
  if (!isPatchId(value)) {
    throw new HotPatchError(
      'INVALID',
      `${what} ${JSON.stringify(value.length > 140 ? `${value.slice(0, 140)}…` : value)} is not a valid patch id ` +
        '(1-128 characters of [A-Za-z0-9._-], starting with a letter or digit, without "..")',
    );
  }
  return value;
}

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { HotPatchError, isPatchId, parsePatchId } from '../../src/core/index.js';

test('ids of the patch id grammar are accepted', () => {
  for (const id of ['a', 'hotfix-2025-10-27', 'A.b_c-d', '9'.repeat(128), 'v1.2.3']) assert.equal(parsePatchId(id), id);
});

test('path tricks, NUL, unicode, empty and over-long ids are INVALID', () => {
  for (const id of ['', '../x', 'a/b', 'a\\b', 'a\0b', 'ünï', '.hidden', '-x', 'a..b', 'x'.repeat(129), ' a', 'a ']) {
    assert.throws(
      () => parsePatchId(id),
      (e: unknown) => e instanceof HotPatchError && e.code === 'INVALID',
      JSON.stringify(id),
    );
  }
  assert.throws(
    () => parsePatchId(42),
    (e: unknown) => e instanceof HotPatchError && e.code === 'INVALID',
  );
});

test('property: an accepted id never contains a path separator or ".."', () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 140 }), (s) => !isPatchId(s) || (!s.includes('/') && !s.includes('..') && !s.includes('\0') && s.length <= 128)),
    { numRuns: 2000 },
  );
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { matchesTargetPattern } from '../../src/core/index.js';

test('a star covers dotted suffixes but not a longer segment name', () => {
  assert.equal(matchesTargetPattern('xps.crypto.*', 'xps.crypto.hash.sha256'), true);
  assert.equal(matchesTargetPattern('xps.crypto.*', 'xps.cryptography.x'), false);
});

test('patterns are anchored at both ends and case-sensitive', () => {
  assert.equal(matchesTargetPattern('xps.crypto', 'xps.crypto.hash'), false);
  assert.equal(matchesTargetPattern('*.sha256', 'xps.crypto.hash.sha256'), true);
  assert.equal(matchesTargetPattern('*.sha256', 'xps.crypto.hash.sha256x'), false);
  assert.equal(matchesTargetPattern('XPS.*', 'xps.crypto'), false);
  assert.equal(matchesTargetPattern('a*b*c', 'abc'), true);
  assert.equal(matchesTargetPattern('a*b*b', 'ab'), false);
});

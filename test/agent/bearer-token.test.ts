import assert from 'node:assert/strict';
import { test } from 'node:test';
import { bearerMatches } from '../../src/agent/token.js';

const TOKEN = 't0ken-0123456789abcdef';

test('the bearer scheme is matched case-insensitively, the token exactly', () => {
  for (const scheme of ['Bearer', 'bearer', 'BEARER', 'bEaReR']) assert.equal(bearerMatches(`${scheme} ${TOKEN}`, TOKEN), true, scheme);
  assert.equal(bearerMatches(`Bearer\t${TOKEN}`, TOKEN), true);
  assert.equal(bearerMatches(`Bearer ${TOKEN.toUpperCase()}`, TOKEN), false);
  assert.equal(bearerMatches(`Basic ${TOKEN}`, TOKEN), false);
  assert.equal(bearerMatches(`Bearer${TOKEN}`, TOKEN), false);
  assert.equal(bearerMatches(undefined, TOKEN), false);
});

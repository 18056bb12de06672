import assert from 'node:assert/strict';
import { test } from 'node:test';
import { bearerMatches, roleOf } from '../../src/agent/token.js';

const TOKEN = 't0ken-0123456789abcdef';

test('the bearer scheme is matched case-insensitively, the token exactly', () => {
  for (const scheme of ['Bearer', 'bearer', 'BEARER', 'bEaReR']) assert.equal(bearerMatches(`${scheme} ${TOKEN}`, TOKEN), true, scheme);
  assert.equal(bearerMatches(`Bearer\t${TOKEN}`, TOKEN), true);
  assert.equal(bearerMatches(`Bearer ${TOKEN.toUpperCase()}`, TOKEN), false);
  assert.equal(bearerMatches(`Basic ${TOKEN}`, TOKEN), false);
  assert.equal(bearerMatches(`Bearer${TOKEN}`, TOKEN), false);
  assert.equal(bearerMatches(undefined, TOKEN), false);
});

test('roleOf grants operate to the operator token, read to the read-only one, and nothing to any other', () => {
  const READ = 'r34d-only-0123456789abcdef';
  const tokens = { operator: TOKEN, read: READ };
  assert.equal(roleOf(`Bearer ${TOKEN}`, tokens), 'operate');
  assert.equal(roleOf(`bearer ${READ}`, tokens), 'read');
  for (const header of [undefined, `Bearer ${READ}x`, `Bearer ${TOKEN.slice(1)}`, `Basic ${READ}`, 'Bearer '])
    assert.equal(roleOf(header, tokens), undefined, String(header));
  // Without a read-only token, only the operator's is known.
  assert.equal(roleOf(`Bearer ${READ}`, { operator: TOKEN }), undefined);
  assert.equal(roleOf(`Bearer ${TOKEN}`, { operator: TOKEN }), 'operate');
});

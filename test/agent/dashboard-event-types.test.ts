/*
 * The dashboard listens to each event type by name (an EventSource needs a listener per type):
 * its list is the bus's own, so a new event type cannot go unseen in the page.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { EVENT_TYPES } from '../../src/core/index.js';

test("the dashboard's list of event types is the bus's own", async () => {
  const source = await readFile('ui/api.ts', 'utf8');
  const list = /export const EVENT_TYPES = \[([^\]]*)\]/.exec(source);
  assert.ok(list !== null, 'ui/api.ts declares EVENT_TYPES');
  assert.deepEqual(
    [...list[1]!.matchAll(/'([A-Za-z]+)'/g)].map((m) => m[1]),
    [...EVENT_TYPES],
  );
});

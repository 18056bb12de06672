import assert from 'node:assert/strict';
import diagnosticsChannel from 'node:diagnostics_channel';
import { test } from 'node:test';
import { EVENT_CHANNEL, EventBus, HotPatchError, type HotPatchEvent } from '../../src/core/index.js';

const init = { type: 'Verified' as const, id: 'p1', target: 'xps.a', version: '1.0.0' };

test('subscribers receive published events with a timestamp, filtered by type and target', () => {
  const bus = new EventBus();
  const all: HotPatchEvent[] = [];
  const onlyStaged: HotPatchEvent[] = [];
  bus.subscribe((e) => all.push(e));
  bus.subscribe((e) => onlyStaged.push(e), { types: ['Staged'] });
  bus.publish(init);
  bus.publish({ ...init, type: 'Staged', target: 'xps.b' });
  assert.equal(all.length, 2);
  assert.equal(onlyStaged.length, 1);
  assert.match(all[0]!.ts, /^\d{4}-\d{2}-\d{2}T/);
});

test('events also go out on the diagnostics channel', () => {
  const seen: unknown[] = [];
  const fn = (m: unknown): void => void seen.push(m);
  diagnosticsChannel.subscribe(EVENT_CHANNEL, fn);
  try {
    new EventBus().publish(init);
  } finally {
    diagnosticsChannel.unsubscribe(EVENT_CHANNEL, fn);
  }
  assert.equal((seen[0] as HotPatchEvent).type, 'Verified');
});

test('a throwing listener is reported and does not stop the others', () => {
  const errors: unknown[] = [];
  const bus = new EventBus({ onListenerError: (e) => errors.push(e) });
  let reached = false;
  bus.subscribe(() => {
    throw new Error('boom');
  });
  bus.subscribe(() => {
    reached = true;
  });
  bus.publish(init);
  assert.equal(reached, true);
  assert.equal((errors[0] as Error).message, 'boom');
});

test('unsubscribe stops delivery and an unknown event type is refused', () => {
  const bus = new EventBus();
  let n = 0;
  const off = bus.subscribe(() => n++);
  off();
  bus.publish(init);
  assert.equal(n, 0);
  assert.throws(
    () => bus.publish({ ...init, type: 'Exploded' as never }),
    (e: unknown) => e instanceof HotPatchError && e.code === 'INVALID',
  );
});

import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { createHash, randomUUID } from 'node:crypto';
import { test } from 'node:test';
import { RealmSnapshot } from '../../src/installer/index.js';

test('a property added to Object.prototype, a replaced globalThis.fetch and a patched JSON.stringify are each named and undone', () => {
  const realm = RealmSnapshot.capture();
  const fetchBefore = globalThis.fetch;
  const stringifyBefore = JSON.stringify;
  (Object.prototype as Record<string, unknown>).polluted = 'yes';
  globalThis.fetch = (async () => new Response('stolen')) as typeof fetch;
  JSON.stringify = () => 'nope';
  const check = realm.check();
  assert.deepEqual(check.changes.sort(), ['JSON.stringify replaced', 'Object.prototype.polluted added', 'globalThis.fetch replaced']);
  assert.deepEqual(check.permanent, []);
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
  assert.equal(globalThis.fetch, fetchBefore);
  assert.equal(JSON.stringify, stringifyBefore);
  assert.deepEqual(realm.check(), { changes: [], permanent: [] }, 'nothing left to undo');
});

test('a deleted built-in method comes back', () => {
  const realm = RealmSnapshot.capture();
  const includes = Array.prototype.includes;
  delete (Array.prototype as unknown as Record<string, unknown>).includes;
  assert.deepEqual(realm.check().changes, ['Array.prototype.includes deleted']);
  assert.equal(Array.prototype.includes, includes);
});

test('ordinary work between capture and check (HTTP, fetch, crypto, timers, JSON, Buffer, dynamic import) changes nothing the guard watches', async () => {
  const realm = RealmSnapshot.capture();
  const server = createServer((_req, res) => res.end(JSON.stringify({ ok: true, id: randomUUID() })));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const { port } = server.address() as { port: number };
    const body = (await (await fetch(`http://127.0.0.1:${port}/`)).json()) as { ok: boolean };
    assert.equal(body.ok, true);
    createHash('sha256').update(Buffer.from('abc')).digest('hex');
    await new Promise((r) => setTimeout(r, 1));
    await new Promise((r) => setImmediate(r));
    structuredClone({ a: [1, 2, new Map([[1, 2]])] });
    new TextDecoder().decode(new TextEncoder().encode('x'));
    await import('node:zlib');
    void globalThis.crypto.getRandomValues(new Uint8Array(4));
    void performance.now();
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
  }
  assert.deepEqual(realm.check(), { changes: [], permanent: [] });
});

test('a payload cannot blind the guard by replacing Reflect.ownKeys, and Date.now, the array iterator and EventEmitter.prototype.emit are watched too', async () => {
  const { EventEmitter } = await import('node:events');
  const realm = RealmSnapshot.capture();
  const ownKeys = Reflect.ownKeys;
  const dateNow = Date.now;
  const arrayIterator = Object.getPrototypeOf([][Symbol.iterator]()) as { next: unknown };
  const next = arrayIterator.next;
  const emit = EventEmitter.prototype.emit;
  (Object.prototype as Record<string, unknown>).hidden = 1;
  Reflect.ownKeys = ((o: object) => ownKeys(o).filter((k) => k !== 'hidden')) as typeof Reflect.ownKeys;
  Date.now = () => 0;
  arrayIterator.next = function patched(this: unknown) {
    return (next as () => unknown).call(this);
  };
  EventEmitter.prototype.emit = function patched(this: unknown, ...args: unknown[]) {
    return (emit as (...a: unknown[]) => boolean).apply(this, args);
  } as typeof emit;
  const { changes, permanent } = realm.check();
  assert.deepEqual([...changes].sort(), [
    '%ArrayIteratorPrototype%.next replaced',
    'Date.now replaced',
    'EventEmitter.prototype.emit replaced',
    'Object.prototype.hidden added',
    'Reflect.ownKeys replaced',
  ]);
  assert.deepEqual(permanent, []);
  assert.equal(Reflect.ownKeys, ownKeys);
  assert.equal(Date.now, dateNow);
  assert.equal(arrayIterator.next, next);
  assert.equal(EventEmitter.prototype.emit, emit);
  assert.equal(({} as Record<string, unknown>).hidden, undefined);
});

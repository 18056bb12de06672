import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { readAhead } from '../../src/repo/index.js';
import { turns, until } from '../support/wait.js';

interface Probe {
  events: string[];
  source: AsyncIterable<number>;
}

/**
 * A source of `count` items that logs every request, item and close; it fails at item `failAt`
 * (when given) and takes a macrotask per item, like a read in the thread pool.
 */
function probe(count: number, failAt?: number): Probe {
  const events: string[] = [];
  async function* gen(): AsyncGenerator<number, void, undefined> {
    try {
      for (let i = 0; i < count; i++) {
        events.push(`read ${i}`);
        await new Promise((resolve) => setImmediate(resolve));
        if (i === failAt) throw new Error(`source failed at ${i}`);
        yield i;
      }
    } finally {
      events.push('closed');
    }
  }
  return { events, source: gen() };
}

test('readAhead hands on every item in order, each time having asked the source for the next one', async () => {
  const { events, source } = probe(3);
  for await (const item of readAhead(source)) events.push(`got ${item}`);
  // The request after item 2 finds the source at its end, before item 2 is handed on.
  assert.deepEqual(events, ['read 0', 'read 1', 'got 0', 'read 2', 'got 1', 'closed', 'got 2']);
});

test('readAhead asks the source for nothing until it is iterated', async () => {
  const { events, source } = probe(3);
  const ahead = readAhead(source);
  await turns(3);
  assert.deepEqual(events, []);
  await ahead.return();
  // Never started, so there is no request in flight and nothing of the source to close.
  assert.deepEqual(events, []);
});

test('readAhead lets the request in flight settle, then closes the source, when the consumer stops early', async () => {
  const { events, source } = probe(5);
  for await (const item of readAhead(source)) {
    events.push(`got ${item}`);
    if (item === 1) break;
  }
  assert.deepEqual(events, ['read 0', 'read 1', 'got 0', 'read 2', 'got 1', 'closed']);
});

test('readAhead passes an error of the source on, and a failed source is not closed twice', async () => {
  const { events, source } = probe(5, 2);
  const got: number[] = [];
  await assert.rejects(
    (async () => {
      for await (const item of readAhead(source)) got.push(item);
    })(),
    /source failed at 2/,
  );
  assert.deepEqual(got, [0, 1]);
  assert.equal(events.filter((e) => e === 'closed').length, 1);
});

test('a source failing while the consumer still holds an item is not an unhandled rejection', async () => {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => {
    unhandled.push(reason);
  };
  process.on('unhandledRejection', onUnhandled);
  try {
    const { events, source } = probe(5, 1);
    await assert.rejects(
      (async () => {
        for await (const item of readAhead(source)) {
          assert.equal(item, 0);
          // Hold the item until the read ahead has failed, and some turns more: an unhandled
          // rejection is reported at the end of the turn it happened in.
          await until(() => events.includes('closed'), 15_000, 'the read ahead to fail');
          await turns(3);
        }
      })(),
      /source failed at 1/,
    );
    await turns(3);
    assert.deepEqual(unhandled, []);
  } finally {
    process.off('unhandledRejection', onUnhandled);
  }
});

test('for any source length, failure point and point where the consumer stops, readAhead delivers what a plain loop would and closes the source once', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 0, max: 8 }),
      fc.option(fc.integer({ min: 0, max: 8 }), { nil: undefined }),
      fc.option(fc.integer({ min: 0, max: 8 }), { nil: undefined }),
      async (count, failAt, stopAfter) => {
        const consume = async (items: AsyncIterable<number>): Promise<{ got: number[]; error: string | undefined }> => {
          const got: number[] = [];
          try {
            for await (const item of items) {
              got.push(item);
              if (stopAfter !== undefined && got.length > stopAfter) break;
            }
            return { got, error: undefined };
          } catch (error) {
            return { got, error: (error as Error).message };
          }
        };
        const plain = probe(count, failAt);
        const ahead = probe(count, failAt);
        const expected = await consume(plain.source);
        const actual = await consume(readAhead(ahead.source));
        assert.deepEqual(actual.got, expected.got);
        // The consumer stops before a failure the read ahead already met: no error reaches it.
        assert.equal(actual.error, expected.error);
        assert.equal(ahead.events.filter((e) => e === 'closed').length, 1);
        // At most one request more than the plain loop made.
        const reads = (p: Probe): number => p.events.filter((e) => e.startsWith('read')).length;
        assert.ok(reads(ahead) - reads(plain) <= 1, `${reads(ahead)} reads against ${reads(plain)}`);
      },
    ),
    { numRuns: 200 },
  );
});

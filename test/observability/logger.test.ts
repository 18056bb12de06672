import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { EventBus, HotPatchError } from '../../src/core/index.js';
import { createLogger, logEvents } from '../../src/observability/index.js';
import { event } from './helpers.js';

function sink(): { stream: Writable; lines: () => Record<string, unknown>[] } {
  let text = '';
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      text += chunk.toString('utf8');
      done();
    },
  });
  return {
    stream,
    lines: () =>
      text
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

test('each bus event becomes one JSON log line with its fields, warn for a patch that did not go through', () => {
  const out = sink();
  const bus = new EventBus();
  const stop = logEvents(bus, createLogger({ destination: out.stream, base: { service: 'payments' } }));
  bus.publish(event('Staged', 'patch-1', { reason: 'staged as /x', detail: { sha256: 'ab' } }));
  bus.publish(event('RolledBack', 'patch-1', { reason: 'canary failed: error rate 5%' }));
  bus.publish(event('Activated', 'patch-2', { reason: '' }));
  stop();
  bus.publish(event('Failed', 'patch-3'));
  const lines = out.lines();
  assert.equal(lines.length, 3);
  assert.equal(lines[0]!.msg, 'Staged: staged as /x');
  assert.equal(lines[0]!.level, 30);
  assert.equal(lines[0]!.eventType, 'Staged');
  assert.equal(lines[0]!.patchId, 'patch-1');
  assert.equal(lines[0]!.target, 'xps.crypto.hash.sha256');
  assert.equal(lines[0]!.version, '1.2.3');
  assert.deepEqual(lines[0]!.detail, { sha256: 'ab' });
  assert.equal(lines[0]!.service, 'payments');
  assert.match(String(lines[0]!.time), /^\d{4}-\d{2}-\d{2}T/);
  assert.match(String(lines[0]!.eventTs), /^\d{4}-\d{2}-\d{2}T/);
  assert.equal(lines[1]!.level, 40);
  assert.equal(lines[1]!.msg, 'RolledBack: canary failed: error rate 5%');
  assert.equal(lines[2]!.msg, 'Activated');
  assert.equal('detail' in lines[2]!, false);
});

test('the logger honours its level and refuses bad options', () => {
  const out = sink();
  const logger = createLogger({ destination: out.stream, level: 'warn' });
  logger.info('hidden');
  logger.warn({ a: 1 }, 'shown');
  assert.deepEqual(
    out.lines().map((l) => l.msg),
    ['shown'],
  );
  assert.throws(
    () => createLogger({ level: 'loud' }),
    (e) => e instanceof HotPatchError && e.code === 'INVALID' && /level/.test(e.message),
  );
  assert.throws(
    () => createLogger({ destination: -1 }),
    (e) => e instanceof HotPatchError && /destination/.test(e.message),
  );
  assert.throws(
    () => logEvents({} as never, logger),
    (e) => e instanceof HotPatchError && /bus/.test(e.message),
  );
});

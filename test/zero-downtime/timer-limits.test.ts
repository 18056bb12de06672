import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HotPatchError } from '../../src/core/index.js';
import { HotPatchRuntime, MAX_TIMER_MS, canaryIntervalMs, resolveZdtOptions } from '../../src/zero-downtime/index.js';

// A Node timer longer than 2^31 − 1 ms fires after 1 ms: a 30-day probation would end at once.
const THIRTY_DAYS = 2_592_000_000;
const invalid = (e: unknown): boolean => e instanceof HotPatchError && e.code === 'INVALID';

test('timer options beyond 2^31 − 1 ms are refused with INVALID rather than firing after 1 ms', () => {
  for (const name of ['probationMs', 'canaryInterval', 'drainTimeoutMs', 'canaryCallTimeoutMs']) {
    assert.throws(
      () => resolveZdtOptions({ [name]: THIRTY_DAYS }),
      (e: unknown) => invalid(e) && new RegExp(`^${name} must be at most ${MAX_TIMER_MS}`).test((e as Error).message),
      name,
    );
    assert.doesNotThrow(() => resolveZdtOptions({ [name]: MAX_TIMER_MS }), name);
  }
  assert.throws(() => new HotPatchRuntime({ durationProbeMs: THIRTY_DAYS }), invalid);
});

test('growing canary intervals are capped at the longest delay a timer keeps', () => {
  const opts = { canaryInterval: 150, backoffFactor: 1.5, jitterRatio: 0 };
  assert.equal(
    canaryIntervalMs(80, opts, () => 0.5),
    MAX_TIMER_MS,
  );
  assert.equal(
    canaryIntervalMs(0, opts, () => 0.5),
    150,
  );
});

test('an operator rollback refuses a drain timeout a timer cannot keep', async () => {
  const runtime = new HotPatchRuntime({ durationProbeMs: 0 });
  runtime.target('xps.test.timers', { version: '1.0.0', impl: { f: () => 1 } });
  await assert.rejects(runtime.rollback('xps.test.timers', 'r', { drainTimeoutMs: THIRTY_DAYS }), invalid);
  runtime.close();
});

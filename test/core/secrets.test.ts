import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { HotPatchError, createEvent, emitRedactedWarning, redactSecrets, registerSecret } from '../../src/core/index.js';

const TOKEN = 'tok-9f86d081884c7d659a2feaa0c55ad015';

test('a registered secret, whole or as any 6-character fragment, is cut from messages, errors and event reasons', () => {
  const unregister = registerSecret(TOKEN);
  try {
    assert.equal(redactSecrets(`token=${TOKEN}!`), 'token=[redacted]!');
    assert.equal(redactSecrets('leaked 081884 here'), 'leaked [redacted] here');
    assert.equal(redactSecrets('two: 9f86d0 and a2feaa0c'), 'two: [redacted] and [redacted]');
    assert.equal(redactSecrets('too short: 9f86d'), 'too short: 9f86d', 'five characters are not a leak');
    const error = new HotPatchError('SELF_TEST_FAILED', `self-test failed: expected ${TOKEN.slice(3, 20)}`);
    assert.equal(error.message, 'self-test failed: expected [redacted]');
    const event = createEvent({ type: 'Failed', id: 'p', target: 'xps.a', version: '1.0.0', reason: `boom ${TOKEN}` });
    assert.equal(event.reason, 'boom [redacted]');
  } finally {
    unregister();
  }
  assert.equal(redactSecrets(`token=${TOKEN}`), `token=${TOKEN}`, 'unregistered: left alone');
});

test('registrations are counted, and secrets under 8 characters are refused', () => {
  const a = registerSecret(TOKEN);
  const b = registerSecret(TOKEN);
  a();
  a(); // idempotent
  assert.equal(redactSecrets(TOKEN), '[redacted]', 'still held by b');
  b();
  assert.equal(redactSecrets(TOKEN), TOKEN);
  assert.throws(() => registerSecret('short'), TypeError);
});

test('property: after redaction no 6-character fragment of the secret remains, and text without one is unchanged', () => {
  const unregister = registerSecret(TOKEN);
  try {
    const piece = fc.tuple(fc.nat(TOKEN.length - 1), fc.integer({ min: 1, max: TOKEN.length })).map(([i, n]) => TOKEN.slice(i, i + n));
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.string({ maxLength: 12 }), piece), { maxLength: 12 }), (parts) => {
        const text = parts.join('');
        const out = redactSecrets(text);
        for (let i = 0; i + 6 <= out.length; i++) assert.ok(!TOKEN.includes(out.slice(i, i + 6)), `fragment left in ${JSON.stringify(out)}`);
        let leaks = false;
        for (let i = 0; i + 6 <= text.length; i++) if (TOKEN.includes(text.slice(i, i + 6))) leaks = true;
        if (!leaks) assert.equal(out, text);
      }),
      { numRuns: 500 },
    );
  } finally {
    unregister();
  }
});

test("process warnings that quote other code's errors are bounded and redacted too", async () => {
  const unregister = registerSecret(TOKEN);
  const seen: string[] = [];
  const onWarning = (w: Error & { code?: string }): void => void (w.code === 'HOTPATCH_TEST_LEAK' && seen.push(w.message));
  process.on('warning', onWarning);
  try {
    emitRedactedWarning(`dispose() threw: leak via dispose: ${TOKEN}`, { code: 'HOTPATCH_TEST_LEAK' });
    emitRedactedWarning(new Error(`stack leak ${TOKEN}`), { code: 'HOTPATCH_TEST_LEAK' });
    await new Promise((r) => setImmediate(r));
    assert.equal(seen.length, 2);
    assert.equal(seen[0], 'dispose() threw: leak via dispose: [redacted]');
    assert.match(seen[1]!, /^Error: stack leak \[redacted\]\n/);
  } finally {
    process.off('warning', onWarning);
    unregister();
  }
});

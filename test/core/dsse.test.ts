import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { HotPatchError, decodeBase64, decodeEnvelope, encodeEnvelope, pae } from '../../src/core/index.js';

const text = (b: Uint8Array): string => Buffer.from(b).toString('latin1');

test('PAE matches the DSSE specification example', () => {
  // DSSE protocol.md: PAE("http://example.com/HelloWorld", "hello world")
  const out = pae('http://example.com/HelloWorld', new TextEncoder().encode('hello world'));
  assert.equal(text(out), 'DSSEv1 29 http://example.com/HelloWorld 11 hello world');
});

test('PAE counts bytes, not characters', () => {
  assert.equal(text(pae('é', new TextEncoder().encode('ü'))), `DSSEv1 2 ${Buffer.from('é').toString('latin1')} 2 ${Buffer.from('ü').toString('latin1')}`);
});

test('property: PAE is injective over (type, body) pairs', () => {
  fc.assert(
    fc.property(fc.string(), fc.uint8Array(), fc.string(), fc.uint8Array(), (t1, b1, t2, b2) => {
      const same = t1 === t2 && Buffer.compare(Buffer.from(b1), Buffer.from(b2)) === 0;
      return same === (Buffer.compare(Buffer.from(pae(t1, b1)), Buffer.from(pae(t2, b2))) === 0);
    }),
    { numRuns: 1000 },
  );
});

test('property: PAE embeds the body at the end with its decimal length', () => {
  fc.assert(
    fc.property(fc.string(), fc.uint8Array(), (t, b) => {
      const out = pae(t, b);
      const tail = out.subarray(out.length - b.length);
      const header = text(out.subarray(0, out.length - b.length));
      return Buffer.compare(Buffer.from(tail), Buffer.from(b)) === 0 && header.endsWith(` ${b.length} `) && header.startsWith('DSSEv1 ');
    }),
  );
});

test('an envelope round-trips through encode and decode', () => {
  const env = { payloadType: 'x/y', payload: new Uint8Array([1, 2, 3]), signatures: [{ keyid: 'k', sig: new Uint8Array([9, 9]) }] };
  assert.deepEqual(decodeEnvelope(encodeEnvelope(env)), env);
});

test('base64 garbage, bad shapes and unknown fields in an envelope are INVALID', () => {
  const bad = [
    { payloadType: 'x', payload: '!!!', signatures: [] },
    { payloadType: 'x', payload: 'AAAAA', signatures: [] },
    { payloadType: 'x', payload: 'AQ==', signatures: [{ keyid: 'k', sig: 'a b' }] },
    { payloadType: 'x', payload: 'AQ==', signatures: [{ keyid: '', sig: 'AQ==' }] },
    { payloadType: 'x', payload: 'AQ==', signatures: [{ keyid: 'k', sig: 'AQ==', extra: 1 }] },
    { payloadType: 'x', payload: 'AQ==', signatures: {} },
    { payloadType: '', payload: 'AQ==', signatures: [] },
    { payloadType: 'x', payload: 'AQ==', signatures: [], more: true },
    { payloadType: 'x', payload: 'AR==', signatures: [] },
  ];
  for (const b of bad) {
    assert.throws(
      () => decodeEnvelope(JSON.stringify(b)),
      (e: unknown) => e instanceof HotPatchError && e.code === 'INVALID',
      JSON.stringify(b),
    );
  }
  assert.throws(
    () => decodeEnvelope('{"payloadType":'),
    (e: unknown) => e instanceof HotPatchError && e.code === 'PARSE',
  );
});

test('URL-safe base64 is accepted as DSSE allows', () => {
  assert.deepEqual([...decodeBase64('-_8', 'x')], [0xfb, 0xff]);
});

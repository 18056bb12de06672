import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { MANIFEST_PAYLOAD_TYPE, pae, paeFor } from '../../src/core/index.js';
import { DefaultVerifier } from '../../src/verification/index.js';
import { assertCode, envelopeBytes, makeKey, manifestFor, trust } from './fixtures.js';

test('for any payload type and body, paeFor(type)(body) is byte for byte pae(type, body)', () => {
  fc.assert(
    fc.property(
      // Full Unicode, lone surrogates included ("binary" units): both must encode them alike.
      fc.string({ unit: 'binary', maxLength: 80 }),
      fc.array(fc.uint8Array({ maxLength: 300 }), { minLength: 1, maxLength: 4 }),
      (type, bodies) => {
        const build = paeFor(type);
        for (const body of bodies) assert.deepEqual(new Uint8Array(build(body)), pae(type, body));
      },
    ),
    { numRuns: 500 },
  );
});

test('the manifest PAE spells out the type and both lengths in ASCII', () => {
  const body = new TextEncoder().encode('{"a":1}');
  assert.equal(Buffer.from(paeFor(MANIFEST_PAYLOAD_TYPE)(body)).toString('utf8'), `DSSEv1 ${MANIFEST_PAYLOAD_TYPE.length} ${MANIFEST_PAYLOAD_TYPE} 7 {"a":1}`);
  assert.equal(Buffer.from(paeFor('é')(new Uint8Array(0))).toString('utf8'), 'DSSEv1 2 é 0 ');
});

test('one PAE builder serves many bodies: an earlier message is not altered by a later one', () => {
  const build = paeFor(MANIFEST_PAYLOAD_TYPE);
  const first = build(new Uint8Array([1, 2, 3]));
  const copy = Uint8Array.from(first);
  build(new Uint8Array(2000).fill(9));
  assert.deepEqual(Uint8Array.from(first), copy);
});

test('the verifier accepts a signature over pae(type, body) and refuses one over the PAE of another type', () => {
  const a = makeKey('team-key-1');
  const verifier = new DefaultVerifier(trust([a], 1));
  assert.deepEqual(verifier.verifyEnvelope(envelopeBytes(manifestFor(), [a])).signers, ['team-key-1']);
  // Signed over another payloadType (same body): the PAE differs, the signature does not count.
  assert.throws(() => verifier.verifyEnvelope(envelopeBytes(manifestFor(), [a], { signedType: `${MANIFEST_PAYLOAD_TYPE} ` })), assertCode('BAD_SIGNATURE'));
});

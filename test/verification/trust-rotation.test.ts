import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TRUST_STORE_PAYLOAD_TYPE, parseTrustStore, rotateTrustStore, type TrustStoreDocument } from '../../src/verification/index.js';
import { signEnvelope, signerOf } from '../support/patches.js';
import { assertCode, makeKey, trustDoc, type TestKey } from './fixtures.js';

const old1 = makeKey('old-1');
const old2 = makeKey('old-2', 'ecdsa-p256-sha256');
const new1 = makeKey('new-1', 'ml-dsa-65');
const new2 = makeKey('new-2');
const current = parseTrustStore(trustDoc([old1, old2], 2));

function signedStore(doc: TrustStoreDocument, signers: TestKey[], payloadType = TRUST_STORE_PAYLOAD_TYPE): Uint8Array {
  const body = new TextEncoder().encode(JSON.stringify(doc));
  return new TextEncoder().encode(
    signEnvelope(
      payloadType,
      body,
      signers.map((k) => signerOf(k.keyid, k.privateKey)),
    ),
  );
}

// The new store keeps old-1 (so old-2 can retire) and adds two new keys.
const next = trustDoc([old1, new1, new2], 2, { version: 2 });

test('a new trust store signed by a threshold of the old root keys and of its own is accepted', () => {
  const rotated = rotateTrustStore(current, signedStore(next, [old1, old2, new1]));
  assert.equal(rotated.version, 2);
  assert.deepEqual([...rotated.keys.keys()], ['old-1', 'new-1', 'new-2']);
});

test('signatures by the old keys alone do not rotate the store', () => {
  assert.throws(
    () => rotateTrustStore(current, signedStore(trustDoc([new1, new2], 2, { version: 2 }), [old1, old2])),
    (e: unknown) => assertCode('THRESHOLD_NOT_MET')(e) && /of the new store/.test((e as Error).message),
  );
});

test('signatures by the new keys alone do not rotate the store', () => {
  assert.throws(
    () => rotateTrustStore(current, signedStore(trustDoc([new1, new2], 2, { version: 2 }), [new1, new2])),
    (e: unknown) => assertCode('THRESHOLD_NOT_MET')(e) && /of the current store/.test((e as Error).message),
  );
});

test('a store whose version is not higher is DOWNGRADE, and another payloadType is INVALID', () => {
  assert.throws(() => rotateTrustStore(current, signedStore(trustDoc([old1, old2], 2, { version: 1 }), [old1, old2])), assertCode('DOWNGRADE'));
  assert.throws(() => rotateTrustStore(current, signedStore(next, [old1, old2, new1], 'application/vnd.xps.hotpatch.manifest+json')), assertCode('INVALID'));
});

test('an explicit root section limits which keys may sign the next store', () => {
  const withRoot = parseTrustStore(trustDoc([old1, old2], 1, { root: { keys: ['old-2'], threshold: 1 } }));
  assert.throws(() => rotateTrustStore(withRoot, signedStore(next, [old1, new1, new2])), assertCode('THRESHOLD_NOT_MET'));
  assert.equal(rotateTrustStore(withRoot, signedStore(next, [old2, new1, new2])).version, 2);
});

test('under the default root, signatures by fleet or controllers keys alone do not rotate the store', () => {
  const op = makeKey('op-1');
  const ctl = makeKey('ctl-1');
  const roles = { fleet: { keys: ['op-1'], threshold: 1 }, controllers: { keys: ['ctl-1'] } };
  const withRoles = parseTrustStore(trustDoc([old1, old2, op, ctl], 2, roles));
  assert.deepEqual(withRoles.root.keys, ['old-1', 'old-2']);
  const rolled = trustDoc([old1, old2, op, ctl, new1], 2, { ...roles, version: 2 });
  assert.throws(() => rotateTrustStore(withRoles, signedStore(rolled, [op, ctl, new1])), assertCode('THRESHOLD_NOT_MET'));
  assert.equal(rotateTrustStore(withRoles, signedStore(rolled, [old1, old2, new1])).version, 2);
});

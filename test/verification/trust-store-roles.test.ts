import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { parseTrustStore, type TrustStoreDocument } from '../../src/verification/index.js';
import { assertCode, makeKey, trustDoc } from './fixtures.js';

// Five distinct keys, and "a-alias": a's public key under a second id (thresholds count it once).
const pool = ['a', 'b', 'c', 'd', 'e'].map((id) => makeKey(id));
const alias = { ...pool[0]!, keyid: 'a-alias' };
const base = trustDoc([...pool, alias], 1);

test('the fleet and controllers roles load; stopThreshold defaults to the threshold', () => {
  const store = parseTrustStore({ ...base, fleet: { keys: ['a', 'b', 'c'], threshold: 2 }, controllers: { keys: ['d', 'e'] } });
  assert.deepEqual(store.fleet, { keys: ['a', 'b', 'c'], threshold: 2, stopThreshold: 2 });
  assert.deepEqual(store.controllers, { keys: ['d', 'e'] });
  const stop = parseTrustStore({ ...base, fleet: { keys: ['a', 'b'], threshold: 2, stopThreshold: 1 } });
  assert.equal(stop.fleet?.stopThreshold, 1);
  assert.equal(stop.controllers, undefined);
  assert.equal(parseTrustStore(base).fleet, undefined, 'a store without the roles has none');
});

test('a role naming an unknown key, a key twice, or an unknown field is INVALID', () => {
  const refused: [Partial<TrustStoreDocument> | Record<string, unknown>, RegExp][] = [
    [{ fleet: { keys: ['a', 'zz'], threshold: 1 } }, /fleet\.keys\[1\] "zz" is not a key of this trust store/],
    [{ fleet: { keys: ['a', 'a'], threshold: 1 } }, /fleet\.keys lists a key id twice/],
    [{ fleet: { keys: [], threshold: 1 } }, /fleet\.keys must be a non-empty array/],
    [{ fleet: { keys: ['a'], threshold: 1, quorum: 2 } }, /fleet has unknown field "quorum"/],
    [{ fleet: ['a'] }, /fleet must be a JSON object/],
    [{ controllers: { keys: ['a', 'nobody'] } }, /controllers\.keys\[1\] "nobody"/],
    [{ controllers: { keys: ['d', 'd'] } }, /controllers\.keys lists a key id twice/],
    [{ controllers: { keys: ['d'], threshold: 1 } }, /controllers has unknown field "threshold"/],
  ];
  for (const [extra, message] of refused) assert.throws(() => parseTrustStore({ ...base, ...extra }), assertCode('INVALID', message), JSON.stringify(extra));
});

test('impossible fleet thresholds are INVALID: below 1, above the distinct keys, fractional, or a stopThreshold above the threshold', () => {
  const refused: [Record<string, unknown>, RegExp][] = [
    [{ keys: ['a', 'b'], threshold: 0 }, /fleet\.threshold is 0/],
    [{ keys: ['a', 'b'], threshold: 3 }, /fleet\.threshold is 3 but only 2 distinct keys/],
    // a and a-alias are one public key: two ids, one signer.
    [{ keys: ['a', 'a-alias'], threshold: 2 }, /only 1 distinct keys/],
    [{ keys: ['a', 'b'], threshold: 1.5 }, /fleet\.threshold must be an integer/],
    [{ keys: ['a', 'b'], threshold: 2, stopThreshold: 0 }, /fleet\.stopThreshold is 0/],
    [{ keys: ['a', 'b'], threshold: 1, stopThreshold: 2 }, /stopThreshold 2 is above fleet\.threshold 1/],
    [{ keys: ['a', 'b'], threshold: 2, stopThreshold: '1' }, /fleet\.stopThreshold must be an integer/],
  ];
  for (const [fleet, message] of refused)
    assert.throws(() => parseTrustStore({ ...base, fleet } as TrustStoreDocument), assertCode('INVALID', message), JSON.stringify(fleet));
});

/** A valid trust store document with random roles, as a writer (a person or `hotpatch trust`) would produce it. */
const validDocument = fc
  .record({
    fleetKeys: fc.subarray(['a', 'b', 'c', 'd', 'e'], { minLength: 1 }),
    threshold: fc.nat(),
    stop: fc.option(fc.nat(), { nil: undefined }),
    controllers: fc.option(fc.subarray(['a', 'b', 'c', 'd', 'e', 'a-alias'], { minLength: 1 }), { nil: undefined }),
    withFleet: fc.boolean(),
  })
  .map(({ fleetKeys, threshold, stop, controllers, withFleet }) => {
    const t = 1 + (threshold % fleetKeys.length);
    const fleet = { keys: fleetKeys, threshold: t, ...(stop === undefined ? {} : { stopThreshold: 1 + (stop % t) }) };
    return { ...base, ...(withFleet ? { fleet } : {}), ...(controllers === undefined ? {} : { controllers: { keys: controllers } }) } as TrustStoreDocument;
  });

test('property: every document a writer produces parses, keeps its roles, and its re-serialised document parses again', () => {
  fc.assert(
    fc.property(validDocument, (doc) => {
      const store = parseTrustStore(JSON.stringify(doc));
      if (doc.fleet === undefined) assert.equal(store.fleet, undefined);
      else
        assert.deepEqual(store.fleet, { keys: doc.fleet.keys, threshold: doc.fleet.threshold, stopThreshold: doc.fleet.stopThreshold ?? doc.fleet.threshold });
      assert.deepEqual(store.controllers, doc.controllers);
      const again = parseTrustStore(JSON.stringify(store.document));
      assert.deepEqual(again.fleet, store.fleet);
      assert.deepEqual(again.controllers, store.controllers);
    }),
    { numRuns: 300 },
  );
});

test('property: an unknown field, an unknown or repeated key id, an impossible threshold or a stopThreshold above it makes any valid document INVALID', () => {
  type Doc = TrustStoreDocument & { fleet: NonNullable<TrustStoreDocument['fleet']> };
  const breakages: ((doc: Doc) => void)[] = [
    (d) => Object.assign(d.fleet, { extra: true }),
    (d) => Object.assign(d, { controllers: { keys: ['d'], extra: 1 } }),
    (d) => d.fleet.keys.push('nobody'),
    (d) => Object.assign(d, { controllers: { keys: ['ghost'] } }),
    (d) => d.fleet.keys.push(d.fleet.keys[0]!),
    (d) => Object.assign(d, { controllers: { keys: ['b', 'b'] } }),
    (d) => (d.fleet.threshold = 0),
    (d) => (d.fleet.threshold = new Set(d.fleet.keys.map((k) => (k === 'a-alias' ? 'a' : k))).size + 1),
    (d) => (d.fleet.stopThreshold = d.fleet.threshold + 1),
    (d) => (d.fleet.stopThreshold = 0),
  ];
  fc.assert(
    fc.property(
      validDocument.filter((d) => d.fleet !== undefined),
      fc.integer({ min: 0, max: breakages.length - 1 }),
      (doc, which) => {
        const broken = structuredClone(doc) as Doc;
        breakages[which]!(broken);
        assert.throws(() => parseTrustStore(JSON.stringify(broken)), assertCode('INVALID'), `breakage ${which}: ${JSON.stringify(broken.fleet)}`);
      },
    ),
    { numRuns: 300 },
  );
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { DefaultVerifier, parseTrustStore, trustForTarget, type TrustStoreDocument } from '../../src/verification/index.js';
import { assertCode, envelopeBytes, makeKey, manifestFor, trustDoc } from './fixtures.js';

// Five distinct keys, and "a-alias": a's public key under a second id (thresholds count it once).
const pool = ['a', 'b', 'c', 'd', 'e'].map((id) => makeKey(id));
const alias = { ...pool[0]!, keyid: 'a-alias' };
const base = trustDoc([...pool, alias], 1);
/** `base` plus a patch-signing key in no role: the store-wide threshold stays reachable whatever the roles take. */
const signerKey = makeKey('sig');
const roleBase = trustDoc([...pool, alias, signerKey], 1);

test('the fleet and controllers roles load; stopThreshold defaults to the threshold', () => {
  const store = parseTrustStore({ ...roleBase, fleet: { keys: ['a', 'b', 'c'], threshold: 2 }, controllers: { keys: ['d', 'e'] } });
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
    return { ...roleBase, ...(withFleet ? { fleet } : {}), ...(controllers === undefined ? {} : { controllers: { keys: controllers } }) } as TrustStoreDocument;
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

// Agents' keys: each a host's own, key id = agent id.
const hosts = ['host-1', 'host-2'].map((id) => makeKey(id));
const withAgents = trustDoc([...pool, ...hosts], 1, { agents: { keys: ['host-1', 'host-2'] } });

test("the agents role loads; its keys sign no patch and no trust store: they are out of the store-wide threshold's keys and the default root", () => {
  const store = parseTrustStore(withAgents);
  assert.deepEqual(store.agents, { keys: ['host-1', 'host-2'] });
  assert.deepEqual(store.root.keys, ['a', 'b', 'c', 'd', 'e']);
  assert.deepEqual([...trustForTarget(store, 'xps.crypto.hash.sha256').authorized], ['a', 'b', 'c', 'd', 'e']);
  // A patch signed by a host's key alone: its signature is valid, and not authorised for any target.
  assert.throws(
    () => new DefaultVerifier(store).verifyEnvelope(envelopeBytes(manifestFor(), [hosts[0]!])),
    assertCode('UNTRUSTED_KEY', /not authorised for it: host-1/),
  );
  assert.doesNotThrow(() => new DefaultVerifier(store).verifyEnvelope(envelopeBytes(manifestFor(), [pool[1]!])));
  // The store-wide threshold counts the keys that can meet it: the agents' do not.
  const hostsOnly = trustDoc([pool[0]!, ...hosts], 2, { agents: { keys: ['host-1', 'host-2'] } });
  assert.throws(() => parseTrustStore(hostsOnly), assertCode('INVALID', /threshold is 2 but only 1 distinct keys could sign/));
  assert.equal(parseTrustStore(base).agents, undefined, 'a store without the role has none');
});

test("an agents role naming an unknown key, a key twice, an invalid agent id, another key's public key, or a key of another role, rule or the root is INVALID", () => {
  const odd = makeKey('ops@host-3');
  const twin = { ...hosts[0]!, keyid: 'host-twin' };
  const refused: [TrustStoreDocument, RegExp][] = [
    [{ ...withAgents, agents: { keys: ['host-1', 'zz'] } }, /agents\.keys\[1\] "zz" is not a key of this trust store/],
    [{ ...withAgents, agents: { keys: ['host-1', 'host-1'] } }, /agents\.keys lists a key id twice/],
    [{ ...withAgents, agents: { keys: [] } }, /agents\.keys must be a non-empty array/],
    [{ ...withAgents, agents: { keys: ['host-1'], threshold: 1 } as never }, /agents has unknown field "threshold"/],
    [trustDoc([...pool, odd], 1, { agents: { keys: ['ops@host-3'] } }), /agents\.keys\[0\] "ops@host-3" is not a valid agent id/],
    [trustDoc([...pool, ...hosts, twin], 1, { agents: { keys: ['host-1'] } }), /agents\.keys\[0\] host-1 has the public key of host-twin/],
    [{ ...withAgents, keys: { ...withAgents.keys, 'host-1': withAgents.keys.a! } }, /agents\.keys\[0\] host-1 has the public key of a/],
    [{ ...withAgents, fleet: { keys: ['a', 'host-1'], threshold: 1 } }, /fleet\.keys\[1\] host-1 is an agent's key/],
    [{ ...withAgents, controllers: { keys: ['host-2'] } }, /controllers\.keys\[0\] host-2 is an agent's key/],
    [{ ...withAgents, root: { keys: ['a', 'host-1'], threshold: 1 } }, /root\.keys\[1\] host-1 is an agent's key/],
    [{ ...withAgents, rules: [{ targets: ['xps.*'], threshold: 1, keys: ['host-2'] }] }, /rules\[0\]\.keys\[0\] host-2 is an agent's key/],
  ];
  for (const [doc, message] of refused) assert.throws(() => parseTrustStore(JSON.stringify(doc)), assertCode('INVALID', message), JSON.stringify(doc.agents));
});

test('property: any subset of hosts as the agents role parses, keeps the role, and keeps those keys out of the default root and targets', () => {
  const ids = ['h-0', 'h-1', 'h-2', 'h-3'];
  const keys = ids.map((id) => makeKey(id));
  fc.assert(
    fc.property(fc.subarray(ids, { minLength: 1 }), (agents) => {
      const store = parseTrustStore(JSON.stringify(trustDoc([...pool, ...keys], 1, { agents: { keys: agents } })));
      assert.deepEqual(store.agents, { keys: agents });
      for (const id of agents) {
        assert.ok(!store.root.keys.includes(id));
        assert.ok(!trustForTarget(store, 'xps.any.target').authorized.has(id));
      }
      assert.deepEqual(parseTrustStore(JSON.stringify(store.document)).agents, store.agents);
    }),
    { numRuns: 50 },
  );
});

// Operators' and controllers' keys sign rollouts and rollout states, not patches nor the next trust store.
const ops = ['op-1', 'op-2'].map((id) => makeKey(id));
const ctl = makeKey('ctl-1');
const withFleetRoles = trustDoc([...pool, ...ops, ctl], 1, { fleet: { keys: ['op-1', 'op-2'], threshold: 1 }, controllers: { keys: ['ctl-1'] } });

test("fleet and controllers keys are out of the store-wide threshold's keys and the default root, unless a rule or an explicit root names them", () => {
  const store = parseTrustStore(withFleetRoles);
  assert.deepEqual(store.root.keys, ['a', 'b', 'c', 'd', 'e']);
  assert.deepEqual([...trustForTarget(store, 'xps.crypto.hash.sha256').authorized], ['a', 'b', 'c', 'd', 'e']);
  // A patch signed only by a controller key, or only by an operator key, for a target no rule covers: not authorised.
  for (const k of [ctl, ops[0]!]) {
    assert.throws(
      () => new DefaultVerifier(store).verifyEnvelope(envelopeBytes(manifestFor(), [k])),
      assertCode('UNTRUSTED_KEY', new RegExp(`not authorised for it: ${k.keyid}`)),
      k.keyid,
    );
  }
  assert.doesNotThrow(() => new DefaultVerifier(store).verifyEnvelope(envelopeBytes(manifestFor(), [pool[0]!])));
  // The same key under another id is still the role's key.
  const twin = { ...ctl, keyid: 'ctl-twin' };
  const twinStore = parseTrustStore(trustDoc([...pool, ...ops, ctl, twin], 1, { controllers: { keys: ['ctl-1'] } }));
  assert.ok(!trustForTarget(twinStore, 'xps.any.target').authorized.has('ctl-twin'));
  assert.ok(!twinStore.root.keys.includes('ctl-twin'));
  // A rule, or an explicit root, that names a role key lets it count there.
  const ruled = parseTrustStore({
    ...withFleetRoles,
    rules: [{ targets: ['xps.crypto.*'], threshold: 1, keys: ['ctl-1'] }],
    root: { keys: ['op-1'], threshold: 1 },
  });
  assert.deepEqual([...trustForTarget(ruled, 'xps.crypto.hash.sha256').authorized], ['ctl-1']);
  assert.doesNotThrow(() => new DefaultVerifier(ruled).verifyEnvelope(envelopeBytes(manifestFor(), [ctl])));
  assert.deepEqual(ruled.root.keys, ['op-1']);
  assert.ok(!trustForTarget(ruled, 'xps.other.target').authorized.has('ctl-1'), 'the rule does not make it a store-wide key');
});

test('the store-wide threshold must be reachable without the fleet and controllers keys', () => {
  const rolesOnly = trustDoc([pool[0]!, ...ops, ctl], 2, { fleet: { keys: ['op-1', 'op-2'], threshold: 1 }, controllers: { keys: ['ctl-1'] } });
  assert.throws(
    () => parseTrustStore(rolesOnly),
    assertCode('INVALID', /threshold is 2 but only 1 distinct keys outside the fleet, controllers, index and agents roles could sign: role keys do not count/),
  );
  const noneLeft = trustDoc([...ops, ctl], 1, { fleet: { keys: ['op-1', 'op-2'], threshold: 1 }, controllers: { keys: ['ctl-1'] } });
  assert.throws(() => parseTrustStore(noneLeft), assertCode('INVALID', /only 0 distinct keys outside the fleet, controllers, index and agents roles/));
});

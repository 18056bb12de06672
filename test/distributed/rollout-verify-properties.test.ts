import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { pae, type Envelope } from '../../src/core/index.js';
import { sign } from '../../src/crypto-agile/index.js';
import {
  parseRolloutDocument,
  readStoredRollout,
  signRolloutSpec,
  signRolloutState,
  specDigest,
  storedRolloutText,
  verifyRolloutDocument,
  type RolloutSigner,
  type RolloutState,
} from '../../src/distributed/index.js';
import { FLEET_TRUST, KEYS, OPERATORS, T, signerOf } from './fleet-helpers.js';

const CREATED = '2026-03-01T10:00:00.000Z';
const spec = signRolloutSpec(
  {
    id: 'prop-1',
    target: T,
    patchId: 'p-1',
    version: '1.0.1',
    payloadHash: `sha256:${'cd'.repeat(32)}`,
    rings: 3,
    soakMs: 1000,
    zdt: { confidence: 0.99 },
    createdAt: CREATED,
  },
  OPERATORS,
);
const specOnly = storedRolloutText(spec);

function withState(state: Partial<RolloutState> & Pick<RolloutState, 'status' | 'by'>, signers: RolloutSigner[]): string {
  const doc = parseRolloutDocument(specOnly);
  const full: RolloutState = { ring: 1, updatedAt: '2026-03-01T10:05:00.000Z', reason: 'why', ...state };
  return storedRolloutText(spec, signRolloutState(doc, specDigest(spec), full, signers));
}

/** Valid documents, each signed by exactly the number of keys its role requires. */
const DOCUMENTS = [
  specOnly,
  withState({ status: 'running', by: 'ctl-a' }, [signerOf(KEYS.ctlA)]),
  withState({ status: 'rolled-back', by: 'ctl-b' }, [signerOf(KEYS.ctlB)]),
  withState({ status: 'aborted', by: 'operator', actor: 'bob@ops' }, [signerOf(KEYS.bob)]),
  withState({ status: 'running', by: 'operator' }, OPERATORS),
];

test('the documents the properties start from all verify', () => {
  for (const raw of DOCUMENTS) assert.doesNotThrow(() => verifyRolloutDocument(raw, FLEET_TRUST));
});

/** An envelope of a document (its spec or its state) changed by `change`, and the document's text again. */
function changed(raw: string, which: 'spec' | 'state', change: (e: Envelope) => Envelope): string {
  const stored = readStoredRollout(raw);
  if (which === 'spec') return storedRolloutText(change(stored.spec), stored.state);
  return storedRolloutText(stored.spec, change(stored.state!));
}

const target = fc
  .integer({ min: 0, max: DOCUMENTS.length - 1 })
  .chain((i) =>
    fc.record({ raw: fc.constant(DOCUMENTS[i]!), which: i === 0 ? fc.constant('spec' as const) : fc.constantFrom('spec' as const, 'state' as const) }),
  );

test('property: a document with any byte of its spec payload or state payload changed never verifies', () => {
  fc.assert(
    fc.property(target, fc.nat(), fc.integer({ min: 1, max: 255 }), ({ raw, which }, at, mask) => {
      const text = changed(raw, which, (e) => {
        const payload = Uint8Array.from(e.payload);
        payload[at % payload.length]! ^= mask;
        return { ...e, payload };
      });
      assert.throws(() => verifyRolloutDocument(text, FLEET_TRUST));
    }),
    { numRuns: 1000 },
  );
});

test('property: a document with signatures removed below its threshold never verifies, whatever else is added', () => {
  const outsider = signerOf(KEYS.outsider);
  fc.assert(
    fc.property(target, fc.nat(), fc.boolean(), ({ raw, which }, seed, addOutsider) => {
      const text = changed(raw, which, (e) => {
        // Drop at least one: each document carries exactly the signatures its role requires.
        const keep = e.signatures.filter((_, i) => i !== seed % e.signatures.length && (seed >> 8) % 2 === 0);
        // Duplicates of the kept ones count once; a valid signature by a key of no role never counts.
        const extra = addOutsider ? [{ keyid: outsider.keyid, sig: sign(outsider.privateKey, pae(e.payloadType, e.payload)) }] : [];
        return { ...e, signatures: [...keep, ...keep, ...extra] };
      });
      assert.throws(() => verifyRolloutDocument(text, FLEET_TRUST));
    }),
    { numRuns: 300 },
  );
});

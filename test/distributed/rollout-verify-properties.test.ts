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
    expiresInMs: 30 * 24 * 3_600_000,
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

test('property: every chain of states writers sign verifies; each trail entry keeps its state’s actor and the key ids counted for it', () => {
  const ctl = [signerOf(KEYS.ctlA), signerOf(KEYS.ctlB)];
  const step = fc.oneof(
    fc.record({ kind: fc.constant('controller' as const), which: fc.integer({ min: 0, max: 1 }) }),
    fc.record({ kind: fc.constant('pause' as const), actor: fc.option(fc.string({ minLength: 1, maxLength: 256 }), { nil: undefined }) }),
  );
  fc.assert(
    fc.property(fc.array(step, { minLength: 1, maxLength: 80 }), (steps) => {
      let raw = specOnly;
      const expected: { actor?: string; signedBy: string[] }[] = [{ signedBy: verifyRolloutDocument(raw, FLEET_TRUST).stateSigners.keyids }];
      for (const s of steps) {
        const doc = verifyRolloutDocument(raw, FLEET_TRUST);
        const paused = doc.state.status === 'paused';
        let state: RolloutState;
        let signers: RolloutSigner[];
        if (s.kind === 'controller' && !paused) {
          state = { status: 'running', ring: 1, by: `ctl-${'ab'[s.which]}`, updatedAt: CREATED };
          signers = [ctl[s.which]!];
        } else {
          // Operators pause a running rollout and resume a paused one.
          state = { status: paused ? 'running' : 'paused', ring: 1, by: 'operator', updatedAt: CREATED, reason: 'r'.repeat(300) };
          if (s.kind === 'pause' && s.actor !== undefined) state.actor = s.actor;
          signers = paused ? OPERATORS : [signerOf(KEYS.alice)];
        }
        raw = storedRolloutText(spec, signRolloutState(doc, specDigest(spec), state, signers));
        const after = verifyRolloutDocument(raw, FLEET_TRUST);
        expected.push({ ...(state.actor === undefined ? {} : { actor: state.actor }), signedBy: after.stateSigners.keyids });
      }
      const last = verifyRolloutDocument(raw, FLEET_TRUST);
      assert.equal(last.seq, steps.length);
      assert.ok(last.trail.length <= 64);
      const kept = expected.slice(0, -1).slice(-last.trail.length);
      assert.deepEqual(
        last.trail.map((t) => ({ ...(t.actor === undefined ? {} : { actor: t.actor }), signedBy: t.signedBy })),
        kept,
      );
      for (const t of last.trail) assert.ok((t.reason?.length ?? 0) <= 256);
      // What a writer writes, a strict reader reads again (the unverified parser too).
      assert.deepEqual(parseRolloutDocument(raw).trail, last.trail);
    }),
    { numRuns: 60 },
  );
});

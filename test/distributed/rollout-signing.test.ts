import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pae } from '../../src/core/index.js';
import { generateKeyPair, sign } from '../../src/crypto-agile/index.js';
import {
  MAX_ROLLOUT_TRAIL,
  ROLLOUT_STATE_PAYLOAD_TYPE,
  RolloutReplayGuard,
  addRolloutSpecSignature,
  parseRolloutDocument,
  parseRolloutStatePayload,
  readStoredRollout,
  signRolloutSpec,
  signRolloutState,
  specDigest,
  storedRolloutText,
  verifyRolloutDocument,
  type RolloutDocument,
  type RolloutSigner,
  type RolloutSpec,
  type RolloutState,
} from '../../src/distributed/index.js';
import { parseTrustStore } from '../../src/verification/index.js';
import { assertCode } from '../support/assertions.js';
import { signEnvelope, signerOf as testSigner } from '../support/patches.js';
import { FLEET_TRUST, FLEET_TRUST_DOCUMENT, KEYS, OPERATORS, T, signerOf } from './fleet-helpers.js';

const alice = signerOf(KEYS.alice);
const bob = signerOf(KEYS.bob);
const carol = signerOf(KEYS.carol);
const ctlA = signerOf(KEYS.ctlA);
const outsider = signerOf(KEYS.outsider);
/** A key the trust store has never heard of, under a name it does not know. */
const stranger: RolloutSigner = { keyid: 'stranger', privateKey: generateKeyPair('ed25519').privateKey };
const CREATED = '2026-03-01T10:00:00.000Z';
const spec = (extra: Partial<RolloutSpec> = {}): RolloutSpec & { createdAt: string } => ({
  id: 'r-1',
  target: T,
  patchId: 'p-1',
  version: '1.0.1',
  payloadHash: `sha256:${'ab'.repeat(32)}`,
  rings: 3,
  soakMs: 0,
  createdAt: CREATED,
  ...extra,
});

/** The stored text of a spec signed by `signers`, and the document it verifies to. */
function created(signers: RolloutSigner[] = OPERATORS, extra: Partial<RolloutSpec> = {}): { raw: string; doc: RolloutDocument } {
  const raw = storedRolloutText(signRolloutSpec(spec(extra), signers));
  return { raw, doc: parseRolloutDocument(raw) };
}

/** `raw` with the next state (by `state.by`, default the controller ctl-a) signed by `signers`. */
function next(raw: string, state: Partial<RolloutState> & Pick<RolloutState, 'status'>, signers: RolloutSigner[] = [ctlA]): string {
  const doc = parseRolloutDocument(raw);
  const envelopes = readStoredRollout(raw);
  const full: RolloutState = { ring: doc.state.ring, by: 'ctl-a', updatedAt: '2026-03-01T10:05:00.000Z', ...state };
  return storedRolloutText(envelopes.spec, signRolloutState(doc, specDigest(envelopes.spec), full, signers));
}

test('a spec signed by the fleet threshold verifies, with its implicit first state: running at ring 0, seq 0', () => {
  const { raw } = created();
  const doc = verifyRolloutDocument(raw, FLEET_TRUST);
  assert.equal(doc.id, 'r-1');
  assert.equal(doc.seq, 0);
  assert.deepEqual(doc.state, { status: 'running', ring: 0, ringStartedAt: CREATED, by: 'operator', updatedAt: CREATED });
  assert.deepEqual(doc.signers, ['ops-alice', 'ops-bob']);
  assert.deepEqual(doc.stateSigners, { role: 'spec', keyids: ['ops-alice', 'ops-bob'] });
  assert.deepEqual(doc.trail, []);
  assert.deepEqual(parseRolloutDocument(raw).signers, [], 'the unverified reader counts nobody');
});

test('a spec with too few operators, unknown keys, keys of no fleet role, or keys not allowed for the target is refused, each with its code', () => {
  const cases: [RolloutSigner[], string, RegExp][] = [
    [[alice], 'THRESHOLD_NOT_MET', /signed by 1 of 2 required fleet key/],
    [[], 'THRESHOLD_NOT_MET', /no signatures/],
    [[alice, stranger], 'UNTRUSTED_KEY', /stranger: not a fleet key/],
    [[alice, outsider], 'UNTRUSTED_KEY', /outsider: not a fleet key/],
    [[alice, ctlA], 'UNTRUSTED_KEY', /ctl-a: not a fleet key/],
    // carol is an operator, but only for xps.net.*
    [[alice, carol], 'UNTRUSTED_KEY', /ops-carol: not a fleet key for xps\.crypto\.hash\.sha256/],
  ];
  for (const [signers, code, message] of cases) {
    assert.throws(() => verifyRolloutDocument(created(signers).raw, FLEET_TRUST), assertCode(code, message), signers.map((s) => s.keyid).join(','));
  }
  // carol counts for a target her patterns allow.
  assert.deepEqual(verifyRolloutDocument(created([alice, carol], { target: 'xps.net.tls' }).raw, FLEET_TRUST).signers, ['ops-alice', 'ops-carol']);
});

test('a signature by another key under an operator id is BAD_SIGNATURE; one operator signing twice counts once', () => {
  const forged: RolloutSigner = { keyid: 'ops-bob', privateKey: generateKeyPair('ed25519').privateKey };
  assert.throws(() => verifyRolloutDocument(created([alice, forged]).raw, FLEET_TRUST), assertCode('BAD_SIGNATURE', /ops-bob: bad-signature/));
  const envelope = signRolloutSpec(spec(), [alice]);
  const twice = { ...envelope, signatures: [...envelope.signatures, ...envelope.signatures] };
  assert.throws(() => verifyRolloutDocument(storedRolloutText(twice), FLEET_TRUST), assertCode('THRESHOLD_NOT_MET', /signed by 1 of 2/));
});

test('operators sign offline one after the other: addRolloutSpecSignature completes the spec, and signing again replaces one own signature', () => {
  const first = signRolloutSpec(spec(), [alice]);
  const both = addRolloutSpecSignature(first, bob);
  assert.deepEqual(verifyRolloutDocument(storedRolloutText(both), FLEET_TRUST).signers, ['ops-alice', 'ops-bob']);
  const again = addRolloutSpecSignature(both, alice);
  assert.deepEqual(
    again.signatures.map((s) => s.keyid),
    ['ops-bob', 'ops-alice'],
  );
  assert.throws(() => addRolloutSpecSignature({ ...first, payloadType: 'application/vnd.xps.hotpatch.vote+json' }, bob), assertCode('INVALID'));
});

test('controllers sign the ring rules’ states alone; operators sign pause and abort at stopThreshold and resume at threshold', () => {
  const { raw } = created();
  const ring1 = next(raw, { status: 'running', ring: 1 });
  const doc = verifyRolloutDocument(ring1, FLEET_TRUST);
  assert.equal(doc.seq, 1);
  assert.deepEqual(doc.stateSigners, { role: 'controller', keyids: ['ctl-a'] });
  assert.deepEqual(doc.trail, [{ seq: 0, status: 'running', ring: 0, by: 'operator', updatedAt: CREATED }]);
  for (const status of ['halted', 'rolling-back', 'rolled-back', 'completed'] as const) {
    assert.equal(verifyRolloutDocument(next(ring1, { status }), FLEET_TRUST).state.status, status);
  }
  // Operators: one is enough to stop, two to go on.
  const paused = next(ring1, { status: 'paused', by: 'operator', actor: 'alice@laptop' }, [alice]);
  assert.deepEqual(verifyRolloutDocument(paused, FLEET_TRUST).stateSigners, { role: 'operator', keyids: ['ops-alice'] });
  assert.equal(verifyRolloutDocument(paused, FLEET_TRUST).state.actor, 'alice@laptop');
  assert.equal(verifyRolloutDocument(next(ring1, { status: 'aborted', by: 'operator' }, [bob]), FLEET_TRUST).state.status, 'aborted');
  assert.throws(() => verifyRolloutDocument(next(paused, { status: 'running', by: 'operator' }, [alice]), FLEET_TRUST), assertCode('THRESHOLD_NOT_MET'));
  assert.equal(verifyRolloutDocument(next(paused, { status: 'running', by: 'operator' }, OPERATORS), FLEET_TRUST).seq, 3);
});

test('a controller key never pauses or aborts, operators never sign the ring rules’ outcomes, and an unsigned or outsider-signed state counts for nothing', () => {
  const { raw } = created();
  const refused: [string, string, RegExp][] = [
    [next(raw, { status: 'aborted' }), 'INVALID', /a controller \("ctl-a"\) may not sign a aborted state/],
    [next(raw, { status: 'paused' }), 'INVALID', /may not sign a paused state/],
    [next(raw, { status: 'rolled-back', by: 'operator' }, OPERATORS), 'INVALID', /operators do not sign rolled-back states/],
    [next(raw, { status: 'aborted', by: 'operator' }, [ctlA]), 'UNTRUSTED_KEY', /ctl-a: not a fleet key/],
    [next(raw, { status: 'rolled-back' }, []), 'THRESHOLD_NOT_MET', /0 of 1 required controller key/],
    [next(raw, { status: 'rolled-back' }, [outsider]), 'UNTRUSTED_KEY', /outsider: not a controller key/],
    [next(raw, { status: 'rolled-back' }, [alice]), 'UNTRUSTED_KEY', /ops-alice: not a controller key/],
    [next(raw, { status: 'aborted', by: 'operator' }, [stranger]), 'UNTRUSTED_KEY', /stranger: not a fleet key/],
  ];
  for (const [text, code, message] of refused) assert.throws(() => verifyRolloutDocument(text, FLEET_TRUST), assertCode(code, message));
});

test('a signed state cut from another rollout, or from another spec under the same id, is refused', () => {
  const a = created();
  const b = created(OPERATORS, { id: 'r-2' });
  const sameId = created(OPERATORS, { version: '1.0.2' });
  const stateOfA = readStoredRollout(next(a.raw, { status: 'rolled-back' })).state!;
  assert.throws(
    () => verifyRolloutDocument(storedRolloutText(readStoredRollout(b.raw).spec, stateOfA), FLEET_TRUST),
    assertCode('INVALID', /belongs to rollout r-1, not r-2/),
  );
  assert.throws(
    () => verifyRolloutDocument(storedRolloutText(readStoredRollout(sameId.raw).spec, stateOfA), FLEET_TRUST),
    assertCode('INVALID', /signed for another spec/),
  );
});

test('the trail keeps the last 64 earlier states, oldest dropped; a longer or disordered trail is refused', () => {
  let raw = created().raw;
  for (let i = 0; i < MAX_ROLLOUT_TRAIL + 6; i++) raw = next(raw, { status: 'running', reason: `pass ${i}`.padEnd(400, '.') });
  const doc = verifyRolloutDocument(raw, FLEET_TRUST);
  assert.equal(doc.seq, MAX_ROLLOUT_TRAIL + 6);
  assert.equal(doc.trail.length, MAX_ROLLOUT_TRAIL);
  assert.deepEqual(
    doc.trail.map((t) => t.seq),
    Array.from({ length: MAX_ROLLOUT_TRAIL }, (_, i) => i + 6),
  );
  assert.ok(
    doc.trail.every((t) => (t.reason?.length ?? 0) <= 256),
    'trail reasons are cut',
  );
  // Written by hand (the writer never makes them), signed by a controller: refused by the reader.
  const payload = statePayload(raw);
  const trail = payload.trail as { seq: number }[];
  assert.throws(
    () => verifyRolloutDocument(withStatePayload(raw, { ...payload, trail: [{ ...trail[0]!, seq: 5 }, ...trail] }), FLEET_TRUST),
    assertCode('INVALID', /at most 64 entries/),
  );
  const disordered = [...trail.slice(1, 5), trail[0]!];
  assert.throws(
    () => verifyRolloutDocument(withStatePayload(raw, { ...payload, trail: disordered }), FLEET_TRUST),
    assertCode('INVALID', /trail\[4\]\.seq must be an integer from/),
  );
  const future = [...trail.slice(0, 3), { ...trail[3]!, seq: doc.seq }];
  assert.throws(() => verifyRolloutDocument(withStatePayload(raw, { ...payload, trail: future }), FLEET_TRUST), assertCode('INVALID', /trail\[3\]\.seq/));
  assert.equal(verifyRolloutDocument(withStatePayload(raw, { ...payload, trail: trail.slice(0, 3) }), FLEET_TRUST).trail.length, 3);
});

/** The decoded state payload of a stored rollout text. */
function statePayload(raw: string): Record<string, unknown> {
  return JSON.parse(new TextDecoder().decode(readStoredRollout(raw).state!.payload)) as Record<string, unknown>;
}

/** `raw` with its state replaced by `body`, signed by the controller ctl-a. */
function withStatePayload(raw: string, body: Record<string, unknown>): string {
  const state = signEnvelope(ROLLOUT_STATE_PAYLOAD_TYPE, new TextEncoder().encode(JSON.stringify(body)), [testSigner('ctl-a', KEYS.ctlA.privateKey)]);
  return JSON.stringify({ spec: (JSON.parse(raw) as { spec: unknown }).spec, state: JSON.parse(state) as unknown });
}

test('a trust store without a fleet role verifies no rollout; the controllers role is needed for controller states', () => {
  const { fleet: _f, ...noFleet } = FLEET_TRUST_DOCUMENT;
  assert.throws(() => verifyRolloutDocument(created().raw, parseTrustStore(noFleet)), assertCode('INVALID', /no fleet role/));
  const { controllers: _c, ...noControllers } = FLEET_TRUST_DOCUMENT;
  const trust = parseTrustStore(noControllers);
  assert.equal(verifyRolloutDocument(created().raw, trust).seq, 0);
  assert.throws(() => verifyRolloutDocument(next(created().raw, { status: 'running', ring: 1 }), trust), assertCode('UNTRUSTED_KEY'));
});

test('the replay guard refuses an older state, and anything but a final state after a final one; an abort is never refused', () => {
  const { raw } = created();
  const s1 = next(raw, { status: 'running', ring: 1 });
  const s2 = next(s1, { status: 'completed', ring: 3 });
  const guard = new RolloutReplayGuard();
  const read = (text: string): RolloutDocument => verifyRolloutDocument(text, FLEET_TRUST);
  guard.accept(read(s1));
  guard.accept(read(s1)); // the same state again (a resync) is no replay
  assert.throws(() => guard.accept(read(raw)), assertCode('INVALID', /state 0 \(running\) is older than state 1/));
  guard.accept(read(s2));
  assert.throws(() => guard.accept(read(s1)), assertCode('INVALID', /a replay/));
  // Final, then an operator's abort written over it from the spec alone (seq 1): aborted is final anyway.
  guard.accept(read(next(raw, { status: 'aborted', by: 'operator' }, [alice])));
  // A non-final state with a higher seq after a final one: a replay too (e.g. a controller driven from an old state).
  const resumed = next(next(s1, { status: 'running', ring: 2 }), { status: 'running', ring: 2, reason: 'again' });
  assert.throws(() => guard.accept(read(resumed)), assertCode('INVALID', /after a final one/));
});

test('a signed spec names its fleet prefix and expires: readers under another prefix refuse it; expiresInMs defaults to 24 h, at most 30 days; a spec without prefix or expiresAt is refused', () => {
  const { raw, doc } = created();
  assert.equal(doc.prefix, '/xps/hotpatch/fleet');
  assert.equal(doc.expiresAt, '2026-03-02T10:00:00.000Z');
  assert.equal(verifyRolloutDocument(raw, FLEET_TRUST, undefined, '/xps/hotpatch/fleet').id, 'r-1');
  assert.throws(
    () => verifyRolloutDocument(raw, FLEET_TRUST, undefined, '/other/fleet'),
    assertCode('INVALID', /rollout r-1 was signed for the fleet at \/xps\/hotpatch\/fleet, not \/other\/fleet: a copy from another fleet/),
  );
  const other = parseRolloutDocument(storedRolloutText(signRolloutSpec({ ...spec(), prefix: '/other/fleet', expiresInMs: 60_000 }, OPERATORS)));
  assert.equal(other.prefix, '/other/fleet');
  assert.equal(other.expiresAt, '2026-03-01T10:01:00.000Z');
  assert.equal(
    parseRolloutDocument(storedRolloutText(signRolloutSpec({ ...spec(), expiresInMs: 30 * 24 * 3_600_000 }, OPERATORS))).expiresAt,
    '2026-03-31T10:00:00.000Z',
  );
  for (const expiresInMs of [0, 30 * 24 * 3_600_000 + 1, 1.5]) {
    assert.throws(() => signRolloutSpec({ ...spec(), expiresInMs }, OPERATORS), assertCode('INVALID', /expiresInMs must be an integer from 1 to 2592000000/));
  }
  assert.throws(() => signRolloutSpec({ ...spec(), prefix: 'no-slash' } as never, OPERATORS), assertCode('INVALID', /fleet prefix must look like/));
  // Payloads signed without the fields (or with a lifetime out of bounds) are refused by every reader.
  const payload = JSON.parse(new TextDecoder().decode(readStoredRollout(raw).spec.payload)) as Record<string, unknown>;
  const signedPayload = (p: Record<string, unknown>): string => storedRolloutText(signEnvelopeOf(new TextEncoder().encode(JSON.stringify(p))));
  const { prefix: _p, ...noPrefix } = payload;
  const { expiresAt: _e, ...noExpiry } = payload;
  const refused: [Record<string, unknown>, RegExp][] = [
    [noPrefix, /rollout\.prefix is required/],
    [noExpiry, /rollout\.expiresAt is required: a rollout spec must expire/],
    [{ ...payload, expiresAt: CREATED }, /expiresAt 2026-03-01T10:00:00.000Z must be after createdAt .* and at most 30 days after it/],
    [{ ...payload, expiresAt: '2026-04-01T10:00:00.000Z' }, /at most 30 days after it/],
  ];
  for (const [p, message] of refused) {
    assert.throws(() => verifyRolloutDocument(signedPayload(p), FLEET_TRUST), assertCode('INVALID', message));
    assert.throws(() => parseRolloutDocument(signedPayload(p)), assertCode('INVALID', message));
  }
});

/** A spec envelope over `payload` as given (not checked), signed by both operators. */
function signEnvelopeOf(payload: Uint8Array): ReturnType<typeof signRolloutSpec> {
  const signed = signRolloutSpec(spec(), OPERATORS);
  const message = pae(signed.payloadType, payload);
  return { payloadType: signed.payloadType, payload, signatures: OPERATORS.map((s) => ({ keyid: s.keyid, sig: sign(s.privateKey, message) })) };
}

test('each trail entry keeps its state’s actor and the key ids counted for it; the strict reader refuses too many or repeated signers', () => {
  const { raw } = created();
  const verified = (text: string): RolloutDocument => verifyRolloutDocument(text, FLEET_TRUST);
  const nextVerified = (text: string, state: Partial<RolloutState> & Pick<RolloutState, 'status'>, signers: RolloutSigner[] = [ctlA]): string => {
    const doc = verified(text);
    const envelopes = readStoredRollout(text);
    const full: RolloutState = { ring: doc.state.ring, by: 'ctl-a', updatedAt: '2026-03-01T10:05:00.000Z', ...state };
    return storedRolloutText(envelopes.spec, signRolloutState(doc, specDigest(envelopes.spec), full, signers));
  };
  const ring1 = nextVerified(raw, { status: 'running', ring: 1 });
  const paused = nextVerified(ring1, { status: 'paused', by: 'operator', actor: 'alice@laptop' }, [alice]);
  const resumed = nextVerified(paused, { status: 'running', by: 'operator' }, OPERATORS);
  const doc = verified(resumed);
  assert.deepEqual(doc.trail, [
    { seq: 0, status: 'running', ring: 0, by: 'operator', updatedAt: CREATED, signedBy: ['ops-alice', 'ops-bob'] },
    { seq: 1, status: 'running', ring: 1, by: 'ctl-a', updatedAt: '2026-03-01T10:05:00.000Z', signedBy: ['ctl-a'] },
    { seq: 2, status: 'paused', ring: 1, by: 'operator', actor: 'alice@laptop', updatedAt: '2026-03-01T10:05:00.000Z', signedBy: ['ops-alice'] },
  ]);
  assert.deepEqual(parseRolloutDocument(resumed).trail, doc.trail, 'the unverified reader reads the same trail');
  // The strict parser's bounds on what a writer never writes.
  const statePayload = JSON.parse(new TextDecoder().decode(readStoredRollout(resumed).state!.payload)) as { trail: Record<string, unknown>[] };
  const withTrailEntry = (entry: Record<string, unknown>): unknown => ({ ...statePayload, trail: [entry] });
  const entry = statePayload.trail[0]!;
  const refused: [Record<string, unknown>, RegExp][] = [
    [{ ...entry, signedBy: [] }, /signedBy must be an array of 1-16 key ids/],
    [{ ...entry, signedBy: Array.from({ length: 17 }, (_, i) => `k-${i}`) }, /signedBy must be an array of 1-16 key ids/],
    [{ ...entry, signedBy: ['a', 'a'] }, /signedBy lists a key id twice/],
    [{ ...entry, signedBy: ['not a key id'] }, /signedBy\[0\] must be a key id/],
    [{ ...entry, actor: 'x'.repeat(257) }, /actor/],
  ];
  for (const [bad, message] of refused) assert.throws(() => parseRolloutStatePayload(withTrailEntry(bad), 3), assertCode('INVALID', message));
  assert.equal(
    parseRolloutStatePayload(withTrailEntry({ ...entry, actor: 'x'.repeat(256), signedBy: Array.from({ length: 16 }, (_, i) => `k-${i}`) }), 3).trail.length,
    1,
  );
});

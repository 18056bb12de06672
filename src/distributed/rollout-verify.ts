/**
 * Reading a stored rollout (rollout-signing.ts has its form): `verifyRolloutDocument` checks
 * every signature against the trust store's `fleet` and `controllers` roles and is what
 * agents and controllers act on; `parseRolloutDocument` checks the shape only (a display
 * without a trust store).
 *
 * Verification, in order (cheap checks first; a payload is parsed before its signatures are
 * counted because the target decides which keys count, as for a patch manifest):
 *  1. the stored text: `{ spec, state? }`, each a DSSE envelope of its payload type;
 *  2. the spec parses; `fleet.threshold` distinct fleet keys allowed for its target signed it;
 *  3. no state: the implicit first state (seq 0, running at ring 0), vouched for by the spec;
 *  4. the state parses, names this rollout's id and this spec's digest (a state cut from
 *     another rollout is refused), and is signed by its writer:
 *     `by: "operator"` → fleet keys allowed for the target: `stopThreshold` for paused or
 *     aborted, `threshold` for running (resume), nothing else;
 *     any other `by` (a controller id) → one key of `controllers` allowed for the target,
 *     for running, halted, rolling-back, rolled-back or completed only (never a pause or an abort).
 * Replays (an older signed state put back) pass here: readers compare `seq` (rollout-replay.ts).
 */
import { HotPatchError, asObject, decodeEnvelope, decodeJson, describe, pae, rejectUnknownFields, type Envelope } from '../core/index.js';
import { defaultCryptoPolicy, type CryptoPolicy } from '../crypto-agile/index.js';
import { checkSignatures, distinctValidKeys, keyAllowsTarget, shortfallCode, type TrustStore } from '../verification/index.js';
import {
  CONTROLLER_STATUSES,
  OPERATOR,
  OPERATOR_GO_STATUSES,
  OPERATOR_STOP_STATUSES,
  fleetKeys,
  parseRolloutSpec,
  parseRolloutStatePayload,
  type RolloutDocument,
  type RolloutStateSigners,
  type SignedRolloutSpec,
} from './fleet-documents.js';
import { ROLLOUT_SPEC_PAYLOAD_TYPE, ROLLOUT_STATE_PAYLOAD_TYPE, initialState, specDigest } from './rollout-signing.js';

/** The envelopes of a stored rollout text (or value already decoded). */
export interface StoredEnvelopes {
  spec: Envelope;
  state: Envelope | undefined;
}

/** Step 1: `{ spec, state? }`, each envelope of its own payload type. */
export function readStoredRollout(input: string | unknown): StoredEnvelopes {
  const o = storedObject(input);
  return { spec: envelopeOf(o.spec, 'rollout.spec', ROLLOUT_SPEC_PAYLOAD_TYPE), state: stateEnvelopeOf(o) };
}

function storedObject(input: string | unknown): Record<string, unknown> {
  const o = asObject(typeof input === 'string' ? decodeJson(input, 'rollout') : input, 'rollout');
  rejectUnknownFields(o, ['spec', 'state'], 'rollout');
  return o;
}

function stateEnvelopeOf(o: Record<string, unknown>): Envelope | undefined {
  return o.state === undefined ? undefined : envelopeOf(o.state, 'rollout.state', ROLLOUT_STATE_PAYLOAD_TYPE);
}

/** The spec envelope of a stored rollout, whatever its state holds (to write over a damaged state). */
export function readStoredSpec(input: string | unknown): Envelope {
  const o = asObject(typeof input === 'string' ? decodeJson(input, 'rollout') : input, 'rollout');
  return envelopeOf(o.spec, 'rollout.spec', ROLLOUT_SPEC_PAYLOAD_TYPE);
}

/** A stored envelope (a JSON object: payloadType, base64 payload, signatures) of `payloadType`, decoded. */
export function envelopeOf(value: unknown, what: string, payloadType: string): Envelope {
  // decodeEnvelope reads text: the stored value goes back through JSON (bounded by the store's value limit).
  let envelope: Envelope;
  try {
    envelope = decodeEnvelope(JSON.stringify(asObject(value, what)));
  } catch (error) {
    if (error instanceof HotPatchError) throw new HotPatchError(error.code, `${what}: ${error.message}`, { cause: error });
    throw error;
  }
  if (envelope.payloadType !== payloadType) {
    throw new HotPatchError('INVALID', `${what} payloadType is ${describe(envelope.payloadType)}, expected ${JSON.stringify(payloadType)}`);
  }
  return envelope;
}

/** The trust a verification needs: the store with its roles, and the algorithm policy. */
interface Verifying {
  trust: TrustStore;
  policy: CryptoPolicy;
  /** The fleet prefix read under: a spec signed for another one is refused. */
  prefix?: string;
}

/** What step 2 makes of a spec envelope: its fields, the keys counted, and its digest (what states name). */
interface ReadSpec {
  spec: SignedRolloutSpec;
  signers: string[];
  digest: string;
}

/**
 * A stored rollout whose every signature counts (see the file comment); throws INVALID, PARSE or
 * a signature code. With `prefix` (the fleet prefix it was read under), a spec signed for another
 * prefix is refused (INVALID): a copy from another fleet.
 */
export function verifyRolloutDocument(raw: string | unknown, trust: TrustStore, policy: CryptoPolicy = defaultCryptoPolicy, prefix?: string): RolloutDocument {
  const verifying = verifyingOf(trust, policy, prefix);
  const o = storedObject(raw);
  return withState(readSpec(envelopeOf(o.spec, 'rollout.spec', ROLLOUT_SPEC_PAYLOAD_TYPE), verifying), stateEnvelopeOf(o), verifying);
}

/**
 * A stored rollout's shape, its state bound to its spec, and no signature checked (`signers`
 * and `stateSigners.keyids` empty): for showing what is stored, never for acting on it.
 */
export function parseRolloutDocument(raw: string | unknown): RolloutDocument {
  const o = storedObject(raw);
  return withState(readSpec(envelopeOf(o.spec, 'rollout.spec', ROLLOUT_SPEC_PAYLOAD_TYPE), undefined), stateEnvelopeOf(o), undefined);
}

/**
 * `verifyRolloutDocument` for a reader that sees the same rollout many times (an agent, a
 * controller): a spec is verified once, then remembered by its exact stored text, so each new
 * state costs one signature check, not the spec's threshold more. Bounded; `forget()` drops
 * what is remembered (a reader calls it on every full resync, so a change of the algorithm
 * policy reaches specs already seen within one resync period).
 */
export class RolloutVerifier {
  readonly #verifying: Verifying;
  readonly #specs = new Map<string, ReadSpec>();

  /** `prefix`: the fleet prefix documents are read under (a spec signed for another is refused); absent: not checked. */
  constructor(trust: TrustStore, policy: CryptoPolicy = defaultCryptoPolicy, prefix?: string) {
    this.#verifying = verifyingOf(trust, policy, prefix);
  }

  verify(raw: string): RolloutDocument {
    const o = storedObject(raw);
    const text = JSON.stringify(o.spec);
    let spec = this.#specs.get(text);
    if (spec === undefined) {
      spec = readSpec(envelopeOf(o.spec, 'rollout.spec', ROLLOUT_SPEC_PAYLOAD_TYPE), this.#verifying);
      if (this.#specs.size >= 256) this.#specs.delete(this.#specs.keys().next().value!);
      this.#specs.set(text, spec);
    }
    return withState(spec, stateEnvelopeOf(o), this.#verifying);
  }

  forget(): void {
    this.#specs.clear();
  }
}

function verifyingOf(trust: TrustStore, policy: CryptoPolicy, prefix: string | undefined): Verifying {
  if (typeof trust !== 'object' || trust === null || !(trust.keys instanceof Map))
    throw new HotPatchError('INVALID', `trust must be a TrustStore, got ${describe(trust)}`);
  return prefix === undefined ? { trust, policy } : { trust, policy, prefix: fleetKeys(prefix).prefix };
}

/** Step 2: the spec parses, and (verifying) enough fleet keys allowed for its target signed it. */
function readSpec(envelope: Envelope, verifying: Verifying | undefined): ReadSpec {
  const spec = parseRolloutSpec(envelope.payload);
  const fleet = verifying?.trust.fleet;
  if (verifying !== undefined && fleet === undefined) {
    throw new HotPatchError('INVALID', 'the trust store has no fleet role: no rollout can be verified against it');
  }
  if (verifying?.prefix !== undefined && spec.prefix !== verifying.prefix) {
    throw new HotPatchError('INVALID', `rollout ${spec.id} was signed for the fleet at ${spec.prefix}, not ${verifying.prefix}: a copy from another fleet`, {
      detail: { rollout: spec.id, prefix: spec.prefix, expected: verifying.prefix },
    });
  }
  const signers = verifying === undefined ? [] : counted(envelope, verifying, spec.target, fleet!.keys, fleet!.threshold, 'the rollout spec', 'fleet');
  return { spec, signers, digest: specDigest(envelope) };
}

/** Steps 3 and 4: the implicit first state, or the state bound to this spec and signed by its writer. */
function withState(read: ReadSpec, state: Envelope | undefined, verifying: Verifying | undefined): RolloutDocument {
  // Copies: a remembered spec (RolloutVerifier) is shared by every document read from it.
  const spec = read.spec.zdt === undefined ? { ...read.spec } : { ...read.spec, zdt: structuredClone(read.spec.zdt) };
  const signers = [...read.signers];
  const digest = read.digest;
  if (state === undefined) {
    return { ...spec, state: initialState(spec), seq: 0, trail: [], signers, stateSigners: { role: 'spec', keyids: [...signers] } };
  }
  const s = parseRolloutStatePayload(state.payload, spec.rings);
  if (s.rollout !== spec.id) throw new HotPatchError('INVALID', `rollout state belongs to rollout ${s.rollout}, not ${spec.id}`);
  if (s.spec !== digest) throw new HotPatchError('INVALID', `rollout state of ${spec.id} was signed for another spec (${s.spec}, this one is ${digest})`);
  const stateSigners = stateSignersOf(state, s.state.by, s.state.status, spec, verifying);
  return { ...spec, state: s.state, seq: s.seq, trail: s.trail, signers, stateSigners };
}

function stateSignersOf(state: Envelope, by: string, status: string, spec: SignedRolloutSpec, verifying: Verifying | undefined): RolloutStateSigners {
  const what = `the ${status} state of rollout ${spec.id}`;
  if (by === OPERATOR) {
    const stop = OPERATOR_STOP_STATUSES.includes(status as never);
    if (!stop && !OPERATOR_GO_STATUSES.includes(status as never))
      throw new HotPatchError('INVALID', `operators do not sign ${status} states (rollout ${spec.id})`);
    if (verifying === undefined) return { role: 'operator', keyids: [] };
    const fleet = verifying.trust.fleet!;
    return { role: 'operator', keyids: counted(state, verifying, spec.target, fleet.keys, stop ? fleet.stopThreshold : fleet.threshold, what, 'fleet') };
  }
  if (!CONTROLLER_STATUSES.includes(status as never)) {
    throw new HotPatchError('INVALID', `a controller (${describe(by)}) may not sign a ${status} state: only operators pause or abort (rollout ${spec.id})`);
  }
  if (verifying === undefined) return { role: 'controller', keyids: [] };
  const controllers = verifying.trust.controllers?.keys ?? [];
  return { role: 'controller', keyids: counted(state, verifying, spec.target, controllers, 1, what, 'controller') };
}

const MAX_LISTED = 8;

/**
 * The distinct keys of `role` (allowed for `target`) whose signature verifies, when there are
 * at least `required`; otherwise the error that says best why not. Only keys of the role are
 * asked to verify: a stored text cannot make a reader check signatures that could never count.
 */
function counted(envelope: Envelope, v: Verifying, target: string, roleKeys: readonly string[], required: number, what: string, role: string): string[] {
  const admitted = new Set(
    roleKeys.filter((id) => {
      const k = v.trust.keys.get(id);
      return k !== undefined && keyAllowsTarget(k, target);
    }),
  );
  const candidates = envelope.signatures.filter((s) => admitted.has(s.keyid));
  const checked = checkSignatures(candidates, pae(envelope.payloadType, envelope.payload), v.trust, v.policy, target);
  const keyids = distinctValidKeys(checked, () => true);
  if (keyids.length >= required) return keyids;
  const outsiders = envelope.signatures.filter((s) => !admitted.has(s.keyid)).map((s) => s.keyid);
  const code = shortfallCode(checked, outsiders.length > 0 ? 'UNTRUSTED_KEY' : 'THRESHOLD_NOT_MET');
  const listed = [
    ...checked.map((c) => `${c.keyid}: ${c.status}${(c.policyMessage ?? c.revokedMessage) === undefined ? '' : ` (${c.policyMessage ?? c.revokedMessage})`}`),
    ...outsiders.map((id) => `${id}: not a ${role} key for ${target}`),
  ];
  const list =
    listed.length === 0 ? 'no signatures' : `${listed.slice(0, MAX_LISTED).join(', ')}${listed.length > MAX_LISTED ? `, … (${listed.length} in all)` : ''}`;
  throw new HotPatchError(code, `${what} is signed by ${keyids.length} of ${required} required ${role} key(s) for ${target}: ${list}`, {
    detail: { valid: keyids.length, required, role, target },
  });
}

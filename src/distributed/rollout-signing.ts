/**
 * Signed rollout documents: what operators and controllers sign, and the stored form.
 *
 * A rollout at `<prefix>/rollouts/<id>` is the JSON text `{ "spec": <DSSE envelope>, "state":
 * <DSSE envelope> }` (each envelope as a JSON object: payloadType, payload in base64,
 * signatures). The spec (ROLLOUT_SPEC_PAYLOAD_TYPE) says what to roll out and is signed by the
 * fleet's operators once; the state (ROLLOUT_STATE_PAYLOAD_TYPE) says where the rollout stands,
 * names its spec by rollout id and digest, carries a sequence number and the earlier states,
 * and is signed by whoever wrote it: one controller, or operators. No state yet means the
 * first one (running at ring 0), which the spec's signatures authorise.
 *
 * Why sign: a store writer could otherwise write any state, e.g. the active rollout `aborted`,
 * and every agent would roll back a healthy, approved patch. With signatures it can only
 * delete, or put back an older signed text, which agents detect by its lower `seq`
 * (rollout-replay.ts). rollout-verify.ts checks all of this; this file only writes.
 */
import {
  HotPatchError,
  asObject,
  describe,
  encodeBase64,
  integerInRange,
  pae,
  parsePatchId,
  rejectUnknownFields,
  utcTimestamp,
  type Envelope,
} from '../core/index.js';
import { PrivateKey, hashBytes, sign } from '../crypto-agile/index.js';
import type { TrustStore } from '../verification/index.js';
import {
  DEFAULT_FLEET_PREFIX,
  DEFAULT_ROLLOUT_EXPIRY_MS,
  MAX_ROLLOUT_EXPIRY_MS,
  MAX_TRAIL_SIGNERS,
  fleetKeys,
  MAX_ROLLOUT_TRAIL,
  MAX_TRAIL_REASON,
  parseRolloutSpec,
  type RolloutDocument,
  type RolloutSpec,
  type RolloutState,
  type RolloutTrailEntry,
  type SignedRolloutSpec,
} from './fleet-documents.js';

export const ROLLOUT_SPEC_PAYLOAD_TYPE = 'application/vnd.xps.hotpatch.rollout+json';
export const ROLLOUT_STATE_PAYLOAD_TYPE = 'application/vnd.xps.hotpatch.rollout-state+json';

/** A key that signs rollouts (an operator's) or rollout states (a controller's), under its trust-store key id. */
export interface RolloutSigner {
  keyid: string;
  privateKey: PrivateKey;
}

const KEYID = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/;
const SPEC_INPUT_FIELDS = ['id', 'target', 'patchId', 'version', 'payloadHash', 'rings', 'soakMs', 'emptyRings', 'zdt', 'createdAt', 'prefix', 'expiresInMs'];
const encoder = new TextEncoder();

/** Signers checked: key ids valid and distinct, keys real private keys. */
export function checkSigners(signers: unknown, what: string): RolloutSigner[] {
  if (!Array.isArray(signers)) throw new HotPatchError('INVALID', `${what} must be an array of { keyid, privateKey }, got ${describe(signers)}`);
  const seen = new Set<string>();
  return signers.map((s: unknown, i) => {
    const signer = asObject(s, `${what}[${i}]`);
    if (typeof signer.keyid !== 'string' || !KEYID.test(signer.keyid)) {
      throw new HotPatchError('INVALID', `${what}[${i}].keyid must be 1-128 of [A-Za-z0-9._:@-], got ${describe(signer.keyid)}`);
    }
    if (!(signer.privateKey instanceof PrivateKey))
      throw new HotPatchError('INVALID', `${what}[${i}].privateKey must be a PrivateKey, got ${describe(signer.privateKey)}`);
    if (seen.has(signer.keyid)) throw new HotPatchError('INVALID', `${what} lists key id ${signer.keyid} twice`);
    seen.add(signer.keyid);
    return { keyid: signer.keyid, privateKey: signer.privateKey };
  });
}

/** The controller's signer, checked against the trust store: one of its `controllers`, holding the private half of that key. */
export function checkControllerSigner(trust: TrustStore, signer: RolloutSigner): RolloutSigner {
  if (typeof trust !== 'object' || trust === null || !(trust.keys instanceof Map))
    throw new HotPatchError('INVALID', `options.trust must be a TrustStore, got ${describe(trust)}`);
  const [checked] = checkSigners([signer], 'options.signer');
  const keyid = checked!.keyid;
  if (!(trust.controllers?.keys.includes(keyid) ?? false)) {
    throw new HotPatchError(
      'INVALID',
      `options.signer ${keyid} is not one of the trust store's controllers (${trust.controllers?.keys.join(', ') ?? 'none'}): agents would refuse every state it signs`,
    );
  }
  if (trust.keys.get(keyid)!.key.fingerprint !== checked!.privateKey.publicKey().fingerprint) {
    throw new HotPatchError('INVALID', `options.signer's private key is not the key ${keyid} of the trust store`);
  }
  return checked!;
}

function signed(payloadType: string, payload: Uint8Array, signers: readonly RolloutSigner[]): Envelope {
  const message = pae(payloadType, payload);
  return { payloadType, payload, signatures: signers.map((s) => ({ keyid: s.keyid, sig: sign(s.privateKey, message) })) };
}

/**
 * The spec of a new rollout, checked (as agents will read it) and signed by `signers` (each
 * a fleet operator; more can sign later with `addRolloutSpecSignature`). Defaults: `createdAt`
 * now, `id` `<patchId>-<base36 createdAt>`, `emptyRings` `wait`, `prefix` the default fleet
 * prefix (readers under another prefix refuse it), `expiresInMs` 24 h (at most 30 days; the
 * signed spec carries `expiresAt` = createdAt + expiresInMs).
 */
export function signRolloutSpec(spec: RolloutSpec & { createdAt?: string; prefix?: string }, signers: readonly RolloutSigner[]): Envelope {
  const input = asObject(spec, 'rollout spec');
  rejectUnknownFields(input, SPEC_INPUT_FIELDS, 'rollout spec');
  const createdAt = input.createdAt === undefined ? new Date().toISOString() : utcTimestamp(input.createdAt, 'rollout.createdAt');
  const patchId = parsePatchId(input.patchId, 'patchId');
  const expiresInMs = integerInRange(input.expiresInMs ?? DEFAULT_ROLLOUT_EXPIRY_MS, 'expiresInMs', 1, MAX_ROLLOUT_EXPIRY_MS);
  const body: Record<string, unknown> = {
    id: input.id ?? `${patchId.slice(0, 110)}-${Date.parse(createdAt).toString(36)}`,
    target: input.target,
    patchId,
    version: input.version,
    payloadHash: input.payloadHash,
    rings: input.rings,
    soakMs: input.soakMs,
    emptyRings: input.emptyRings ?? 'wait',
    ...(input.zdt === undefined ? {} : { zdt: input.zdt }),
    createdAt,
    prefix: fleetKeys((input.prefix as string | undefined) ?? DEFAULT_FLEET_PREFIX).prefix,
    expiresAt: new Date(Date.parse(createdAt) + expiresInMs).toISOString(),
  };
  // Signed as parsed (the zdt options normalised): the bytes agents verify are the ones they read.
  const parsed = parseRolloutSpec(body);
  return signed(ROLLOUT_SPEC_PAYLOAD_TYPE, encoder.encode(JSON.stringify(parsed)), checkSigners(signers, 'signers'));
}

/** One more operator's signature on a spec envelope (replacing that key id's own, if any): multi-party signing offline. */
export function addRolloutSpecSignature(envelope: Envelope, signer: RolloutSigner): Envelope {
  const e = asObject(envelope, 'rollout spec envelope');
  if (e.payloadType !== ROLLOUT_SPEC_PAYLOAD_TYPE) {
    throw new HotPatchError('INVALID', `envelope payloadType is ${describe(e.payloadType)}, expected ${JSON.stringify(ROLLOUT_SPEC_PAYLOAD_TYPE)}`);
  }
  if (!(envelope.payload instanceof Uint8Array)) throw new HotPatchError('INVALID', `envelope payload must be bytes, got ${describe(envelope.payload)}`);
  parseRolloutSpec(envelope.payload); // never sign what agents would refuse to read
  const [checked] = checkSigners([signer], 'signer');
  const [signature] = signed(ROLLOUT_SPEC_PAYLOAD_TYPE, envelope.payload, [checked!]).signatures;
  const others = (Array.isArray(envelope.signatures) ? envelope.signatures : []).filter((s) => s.keyid !== checked!.keyid);
  return { payloadType: ROLLOUT_SPEC_PAYLOAD_TYPE, payload: envelope.payload, signatures: [...others, signature!] };
}

/** `sha256:<hex>` of a spec envelope's payload bytes: how a state names the spec it belongs to. */
export function specDigest(spec: Envelope): string {
  return `sha256:${Buffer.from(hashBytes('sha256', spec.payload)).toString('hex')}`;
}

/** The spec's fields of a rollout document (what its spec envelope says). */
export function specOf(doc: RolloutDocument): SignedRolloutSpec {
  return {
    id: doc.id,
    target: doc.target,
    patchId: doc.patchId,
    version: doc.version,
    payloadHash: doc.payloadHash,
    rings: doc.rings,
    soakMs: doc.soakMs,
    emptyRings: doc.emptyRings,
    ...(doc.zdt === undefined ? {} : { zdt: doc.zdt }),
    createdAt: doc.createdAt,
    prefix: doc.prefix,
    expiresAt: doc.expiresAt,
  };
}

/** The state a rollout's spec authorises on its own: running at ring 0 from its creation. */
export function initialState(spec: SignedRolloutSpec): RolloutState {
  return { status: 'running', ring: 0, ringStartedAt: spec.createdAt, by: 'operator', updatedAt: spec.createdAt };
}

/** The trail of the state after `doc`'s: its own trail, then its current state, the oldest dropped past MAX_ROLLOUT_TRAIL. */
export function nextTrail(doc: RolloutDocument): RolloutTrailEntry[] {
  const s = doc.state;
  const entry: RolloutTrailEntry = { seq: doc.seq, status: s.status, ring: s.ring, by: s.by ?? 'operator', updatedAt: s.updatedAt ?? doc.createdAt };
  if (s.reason !== undefined) entry.reason = s.reason.length > MAX_TRAIL_REASON ? `${s.reason.slice(0, MAX_TRAIL_REASON - 1)}…` : s.reason;
  if (s.actor !== undefined) entry.actor = s.actor;
  if (doc.stateSigners.keyids.length > 0) entry.signedBy = doc.stateSigners.keyids.slice(0, MAX_TRAIL_SIGNERS);
  return [...doc.trail, entry].slice(-MAX_ROLLOUT_TRAIL);
}

/**
 * The signed state that follows `doc`'s: `seq` + 1, `doc`'s state appended to the trail,
 * naming `doc`'s rollout and spec (`digest`). `state.by` and `state.updatedAt` are required.
 */
export function signRolloutState(doc: RolloutDocument, digest: string, state: RolloutState, signers: readonly RolloutSigner[]): Envelope {
  if (state.by === undefined || state.updatedAt === undefined) throw new HotPatchError('INVALID', 'a rollout state needs by and updatedAt');
  const body: Record<string, unknown> = { rollout: doc.id, spec: digest, seq: doc.seq + 1, status: state.status, ring: state.ring };
  if (state.ringStartedAt !== undefined) body.ringStartedAt = state.ringStartedAt;
  if (state.healthySince !== undefined) body.healthySince = state.healthySince;
  if (state.reason !== undefined) body.reason = state.reason;
  body.by = state.by;
  if (state.actor !== undefined) body.actor = state.actor;
  body.updatedAt = state.updatedAt;
  body.trail = nextTrail(doc);
  return signed(ROLLOUT_STATE_PAYLOAD_TYPE, encoder.encode(JSON.stringify(body)), signers);
}

/** An envelope as the JSON value a stored rollout holds. */
export function envelopeValue(e: Envelope): { payloadType: string; payload: string; signatures: { keyid: string; sig: string }[] } {
  return { payloadType: e.payloadType, payload: encodeBase64(e.payload), signatures: e.signatures.map((s) => ({ keyid: s.keyid, sig: encodeBase64(s.sig) })) };
}

/** The stored text of a rollout: its spec envelope and, once one was written, its state envelope. */
export function storedRolloutText(spec: Envelope, state?: Envelope): string {
  return JSON.stringify(state === undefined ? { spec: envelopeValue(spec) } : { spec: envelopeValue(spec), state: envelopeValue(state) });
}

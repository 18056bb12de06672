import { createHash } from 'node:crypto';
import semver from 'semver';
import {
  HotPatchError,
  asObject,
  decodeEnvelope,
  decodeJson,
  describe,
  encodeEnvelope,
  isPatchId,
  isTargetName,
  pae,
  parseRfc3339,
  rejectUnknownFields,
  type ApprovalRequest,
} from '../core/index.js';
import { sign, verifySignature, type PrivateKey } from '../crypto-agile/index.js';
import type { KeyProvider } from '../keys/index.js';
import { APPROVER_KEYID, requiredApprovals, type ApproversList } from './approvers.js';

/**
 * Proposals and signed votes (pure: no store, no clock of their own).
 *
 * A proposal asks for one activation (patch id, target, version, payload hash). Its id is a
 * hash of those four, so every agent of a fleet asking for the same activation finds the
 * same proposal. A vote is a DSSE envelope, signed by one approver, over the proposal's
 * fields and its expiry: the store only carries votes, it cannot make one.
 */

/** payloadType of every vote envelope. */
export const VOTE_PAYLOAD_TYPE = 'application/vnd.xps.hotpatch.vote+json';

export interface Proposal {
  /** `proposalIdOf(patchId, target, version, payloadHash)`. */
  id: string;
  patchId: string;
  target: string;
  version: string;
  /** `alg:hex`, hex in lower case. */
  payloadHash: string;
  /** RFC 3339 (UTC). */
  createdAt: string;
  /** RFC 3339 (UTC); votes count only before it. */
  expiresAt: string;
  /** Who asked (host name, agent id or operator); informational. */
  proposer: string;
}

/** What a vote signs. `expiresAt` binds it to one proposal instance (see `countVotes`). */
export interface VotePayload {
  proposalId: string;
  patchId: string;
  target: string;
  version: string;
  payloadHash: string;
  expiresAt: string;
  decision: 'approve';
  keyid: string;
  /** RFC 3339 time the vote was cast. */
  ts: string;
}

/** A vote as the store holds it: the DSSE envelope's JSON text, under `votes/<proposalId>/<keyid>`. */
export interface SignedVote {
  proposalId: string;
  keyid: string;
  envelope: string;
}

export interface VoteTally {
  approved: boolean;
  /** Key ids whose votes counted, one per distinct public key, in store order. */
  counted: string[];
  required: number;
  /** Votes that did not count, and why. */
  ignored: { keyid: string; reason: string }[];
}

export interface CountOptions {
  /** Reference time (epoch ms). */
  now: number;
  /** Registered voters (for a ratio quorum). */
  voterCount: number;
  /** How far before the proposal's creation a vote's `ts` may be (clocks differ); default 10 s. */
  clockSkewMs?: number;
}

export const PROPOSAL_ID = /^p-[0-9a-f]{32}$/;
export const MAX_PROPOSAL_TTL_MS = 30 * 86_400_000;
export const DEFAULT_CLOCK_SKEW_MS = 10_000;
const PAYLOAD_HASH = /^([A-Za-z0-9-]{1,32}):([0-9A-Fa-f]{2,256})$/;
const MAX_PROPOSER = 256;
const MAX_ENVELOPE_CHARS = 64 * 1024;
const PROPOSAL_FIELDS = ['id', 'patchId', 'target', 'version', 'payloadHash', 'createdAt', 'expiresAt', 'proposer'] as const;
const VOTE_FIELDS = ['proposalId', 'patchId', 'target', 'version', 'payloadHash', 'expiresAt', 'decision', 'keyid', 'ts'] as const;

const encoder = new TextEncoder();

/** Checks an approval request's four fields; returns them with the payload hash normalised. */
export function checkApprovalRequest(request: unknown): ApprovalRequest {
  if (typeof request !== 'object' || request === null) throw new HotPatchError('INVALID', `approval request must be an object, got ${describe(request)}`);
  const r = request as Record<string, unknown>;
  if (!isPatchId(r.patchId)) throw new HotPatchError('INVALID', `approval request patchId ${describe(r.patchId)} is not a valid patch id`);
  if (!isTargetName(r.target)) throw new HotPatchError('INVALID', `approval request target ${describe(r.target)} is not a valid target name`);
  if (typeof r.version !== 'string' || r.version.length > 256 || semver.valid(r.version) !== r.version) {
    throw new HotPatchError('INVALID', `approval request version must be a canonical semver version, got ${describe(r.version)}`);
  }
  return { patchId: r.patchId, target: r.target, version: r.version, payloadHash: normalizePayloadHash(r.payloadHash, 'approval request payloadHash') };
}

export function normalizePayloadHash(value: unknown, field: string): string {
  const m = typeof value === 'string' ? PAYLOAD_HASH.exec(value) : null;
  if (m === null || m[2]!.length % 2 !== 0)
    throw new HotPatchError('INVALID', `${field} must be "alg:hex" with an even, non-empty hex digest, got ${describe(value)}`);
  return `${m[1]!.toLowerCase()}:${m[2]!.toLowerCase()}`;
}

/** The stable id of the proposal for one activation. */
export function proposalIdOf(request: ApprovalRequest): string {
  const r = checkApprovalRequest(request);
  const h = createHash('sha256');
  for (const part of ['xps.hotpatch.proposal.v1', r.patchId, r.target, r.version, r.payloadHash]) h.update(part).update('\0');
  return `p-${h.digest('hex').slice(0, 32)}`;
}

/** A new proposal for `request`, living `ttlMs` from `now`. */
export function newProposal(request: ApprovalRequest, options: { now: number; ttlMs: number; proposer: string }): Proposal {
  const r = checkApprovalRequest(request);
  const { now, ttlMs, proposer } = options;
  if (!Number.isSafeInteger(now) || now < 0) throw new HotPatchError('INVALID', `now must be epoch milliseconds, got ${describe(now)}`);
  if (!Number.isSafeInteger(ttlMs) || ttlMs < 1000 || ttlMs > MAX_PROPOSAL_TTL_MS) {
    throw new HotPatchError('INVALID', `proposal ttl must be from 1 s to 30 days (in ms), got ${describe(ttlMs)}`);
  }
  return {
    id: proposalIdOf(r),
    ...r,
    createdAt: new Date(now).toISOString(),
    expiresAt: new Date(now + ttlMs).toISOString(),
    proposer: checkProposer(proposer),
  };
}

/** Deterministic JSON of a proposal (field order fixed), as stored. */
export function encodeProposal(p: Proposal): string {
  return JSON.stringify(Object.fromEntries(PROPOSAL_FIELDS.map((f) => [f, p[f]])));
}

/**
 * Stored proposal JSON → proposal, strictly: unknown fields, bad values, an expiry not after
 * creation or an id that is not the hash of its fields are INVALID (anyone able to write the
 * store could have written it).
 */
export function parseProposal(input: Uint8Array | string | unknown): Proposal {
  const value = input instanceof Uint8Array || typeof input === 'string' ? decodeJson(input, 'proposal') : input;
  const obj = exactFields(value, PROPOSAL_FIELDS, 'proposal');
  const request = checkApprovalRequest(obj);
  const createdMs = parseRfc3339(obj.createdAt, 'proposal createdAt');
  const expiresMs = parseRfc3339(obj.expiresAt, 'proposal expiresAt');
  if (expiresMs <= createdMs)
    throw new HotPatchError('INVALID', `proposal expiresAt (${String(obj.expiresAt)}) is not after createdAt (${String(obj.createdAt)})`);
  // A stored proposal is bounded like a new one: otherwise a store writer could pre-create
  // the (deterministic) proposal with a century-long life and have votes count for years.
  if (expiresMs - createdMs > MAX_PROPOSAL_TTL_MS) {
    throw new HotPatchError(
      'INVALID',
      `proposal lives ${Math.round((expiresMs - createdMs) / 86_400_000)} days, more than the ${MAX_PROPOSAL_TTL_MS / 86_400_000}-day maximum`,
    );
  }
  if (typeof obj.proposer !== 'string') throw new HotPatchError('INVALID', `proposal proposer must be a string, got ${describe(obj.proposer)}`);
  const id = proposalIdOf(request);
  if (obj.id !== id) throw new HotPatchError('INVALID', `proposal id ${describe(obj.id)} is not the id of its fields (${id})`);
  return {
    id,
    ...request,
    createdAt: obj.createdAt as string,
    expiresAt: obj.expiresAt as string,
    proposer: checkProposer(obj.proposer),
  };
}

export function proposalExpiresMs(p: Proposal): number {
  return parseRfc3339(p.expiresAt, 'proposal expiresAt');
}

/** Whether `request` asks for exactly the activation `proposal` names. */
export function proposalMatches(proposal: Proposal, request: ApprovalRequest): boolean {
  const r = checkApprovalRequest(request);
  return proposal.patchId === r.patchId && proposal.target === r.target && proposal.version === r.version && proposal.payloadHash === r.payloadHash;
}

/** Signs an approving vote for `proposal` with the approver's private key. */
export function signVote(proposal: Proposal, privateKey: PrivateKey, keyid: string, options: { now: number }): SignedVote {
  const body = votePayload(proposal, keyid, options.now);
  return signedVote(proposal, keyid, body, sign(privateKey, pae(VOTE_PAYLOAD_TYPE, body)));
}

/** Signs an approving vote with a key provider (a key on a PKCS#11 token, a remote KMS). */
export async function signVoteWith(proposal: Proposal, signer: KeyProvider, keyid: string, options: { now: number }): Promise<SignedVote> {
  const body = votePayload(proposal, keyid, options.now);
  return signedVote(proposal, keyid, body, await signer.sign(pae(VOTE_PAYLOAD_TYPE, body)));
}

function votePayload(proposal: Proposal, keyid: string, now: number): Uint8Array {
  if (!APPROVER_KEYID.test(keyid)) throw new HotPatchError('INVALID', `key id ${describe(keyid)} is not a valid key id (1-128 of [A-Za-z0-9._:@-])`);
  const payload: VotePayload = {
    proposalId: proposal.id,
    patchId: proposal.patchId,
    target: proposal.target,
    version: proposal.version,
    payloadHash: proposal.payloadHash,
    expiresAt: proposal.expiresAt,
    decision: 'approve',
    keyid,
    ts: new Date(now).toISOString(),
  };
  return encoder.encode(JSON.stringify(payload));
}

function signedVote(proposal: Proposal, keyid: string, body: Uint8Array, sig: Uint8Array): SignedVote {
  return { proposalId: proposal.id, keyid, envelope: encodeEnvelope({ payloadType: VOTE_PAYLOAD_TYPE, payload: body, signatures: [{ keyid, sig }] }) };
}

/**
 * Which stored votes count toward `proposal`, and whether they reach the quorum. Pure.
 *
 * A vote counts only when, in this order (cheap checks first, the signature before its
 * content is read, as DSSE asks):
 *  step 1: its envelope decodes, has the vote payloadType and exactly one signature;
 *  step 2: that signature's key id is the one the vote is stored under, and is in the
 *          approvers list (so each listed key costs at most one verification);
 *  step 3: the signature verifies under that listed key (its algorithm is the list's, never
 *          the vote's);
 *  step 4: the signed payload parses strictly, names the same key id, decides `approve`;
 *  step 5: every field matches the proposal: id, patch id, target, version, payload hash,
 *          and expiry (a vote for an earlier or later instance of the proposal does not count);
 *  step 6: the proposal has not expired at `now`, and the vote was cast within its lifetime;
 *  step 7: its public key has not counted already (one key under two ids, or a repeated
 *          vote, counts once).
 */
export function countVotes(proposal: Proposal, votes: readonly SignedVote[], approvers: ApproversList, options: CountOptions): VoteTally {
  const { now, voterCount } = options;
  const skew = options.clockSkewMs ?? DEFAULT_CLOCK_SKEW_MS;
  const required = requiredApprovals(approvers.quorum, voterCount);
  const counted: string[] = [];
  const ignored: { keyid: string; reason: string }[] = [];
  const seen = new Map<string, string>(); // fingerprint → key id that counted
  const createdMs = parseRfc3339(proposal.createdAt, 'proposal createdAt');
  const expiresMs = parseRfc3339(proposal.expiresAt, 'proposal expiresAt');
  const expired = now >= expiresMs;

  for (const vote of votes) {
    const reason = checkVote(vote);
    if (reason !== undefined) ignored.push({ keyid: vote.keyid, reason });
  }
  return { approved: counted.length >= required, counted, required, ignored };

  function checkVote(vote: SignedVote): string | undefined {
    // step 1: the envelope.
    if (vote.proposalId !== proposal.id) return `stored under another proposal (${vote.proposalId})`;
    if (typeof vote.envelope !== 'string' || vote.envelope.length > MAX_ENVELOPE_CHARS) return 'malformed envelope: too large';
    let envelope;
    try {
      envelope = decodeEnvelope(vote.envelope);
    } catch (error) {
      return `malformed envelope: ${(error as Error).message}`;
    }
    if (envelope.payloadType !== VOTE_PAYLOAD_TYPE) return `wrong payload type ${JSON.stringify(envelope.payloadType)}`;
    if (envelope.signatures.length !== 1) return `a vote carries exactly one signature, this one ${envelope.signatures.length}`;
    const signature = envelope.signatures[0]!;
    // step 2: a listed key, stored under its own id.
    if (signature.keyid !== vote.keyid) return `signed as ${JSON.stringify(signature.keyid)} but stored under ${JSON.stringify(vote.keyid)}`;
    const approver = approvers.keys.get(vote.keyid);
    if (approver === undefined) return 'unknown key';
    // step 3: the signature, under the listed key and its algorithm.
    if (!verifySignature(approver.key, pae(envelope.payloadType, envelope.payload), signature.sig)) return 'bad signature';
    // step 4: the signed content.
    let payload: VotePayload;
    try {
      payload = parseVotePayload(envelope.payload);
    } catch (error) {
      return `malformed vote: ${(error as Error).message}`;
    }
    if (payload.keyid !== vote.keyid) return `vote names key id ${JSON.stringify(payload.keyid)}`;
    // step 5: the very activation this proposal asks for.
    for (const field of ['proposalId', 'patchId', 'target', 'version', 'payloadHash'] as const) {
      const expected = field === 'proposalId' ? proposal.id : proposal[field];
      if (payload[field] !== expected) return `vote for another ${FIELD_NAMES[field]} (${payload[field]}, expected ${expected})`;
    }
    if (payload.expiresAt !== proposal.expiresAt)
      return `vote for another instance of the proposal (expiring ${payload.expiresAt}, this one ${proposal.expiresAt})`;
    // step 6: time.
    if (expired) return `proposal expired at ${proposal.expiresAt}`;
    const ts = parseRfc3339(payload.ts, 'vote ts');
    if (ts < createdMs - skew) return `vote cast at ${payload.ts}, before the proposal was made (${proposal.createdAt})`;
    if (ts >= expiresMs) return `vote cast at ${payload.ts}, after the proposal expired`;
    if (ts > now + skew) return `vote cast at ${payload.ts}, in the future`;
    // step 7: distinct public keys.
    const already = seen.get(approver.key.fingerprint);
    if (already !== undefined) return already === vote.keyid ? 'repeated vote' : `same public key as ${already}, already counted`;
    seen.set(approver.key.fingerprint, vote.keyid);
    counted.push(vote.keyid);
    return undefined;
  }
}

const FIELD_NAMES = { proposalId: 'proposal', patchId: 'patch id', target: 'target', version: 'version', payloadHash: 'payload hash' } as const;

/** The signed payload of a vote, strictly. */
export function parseVotePayload(bytes: Uint8Array): VotePayload {
  const obj = exactFields(decodeJson(bytes, 'vote'), VOTE_FIELDS, 'vote');
  for (const field of VOTE_FIELDS) {
    const v = obj[field];
    if (typeof v !== 'string' || v.length === 0 || v.length > 512)
      throw new HotPatchError('INVALID', `vote ${field} must be a non-empty string, got ${describe(v)}`);
  }
  if (obj.decision !== 'approve') throw new HotPatchError('INVALID', `vote decision must be "approve", got ${describe(obj.decision)}`);
  parseRfc3339(obj.ts, 'vote ts');
  return obj as unknown as VotePayload;
}

function checkProposer(value: string): string {
  if (typeof value !== 'string' || value.length > MAX_PROPOSER || /[\u0000-\u001f\u007f]/.test(value)) {
    throw new HotPatchError('INVALID', `proposer must be a string of at most ${MAX_PROPOSER} printable characters, got ${describe(value)}`);
  }
  return value;
}

/** An object with exactly `fields`: none unknown (the core kit's checks), none missing. */
function exactFields(value: unknown, fields: readonly string[], what: string): Record<string, unknown> {
  const obj = asObject(value, what);
  rejectUnknownFields(obj, fields, what);
  for (const key of fields) {
    if (!(key in obj)) throw new HotPatchError('INVALID', `${what} lacks field ${JSON.stringify(key)}`);
  }
  return obj;
}

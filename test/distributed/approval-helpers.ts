import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { encodeEnvelope, pae, decodeEnvelope, type ApprovalRequest, type HotPatchError } from '../../src/core/index.js';
import { generateKeyPair, sign, type PrivateKey, type SignatureAlgorithm } from '../../src/crypto-agile/index.js';
import {
  VOTE_PAYLOAD_TYPE,
  newProposal,
  parseApprovers,
  signVote,
  type ApproversList,
  type Proposal,
  type SignedVote,
} from '../../src/distributed/index.js';

/** Shared by the approval tests (approval-*.test.ts). */

export interface ApproverKeyPair {
  keyid: string;
  privateKey: PrivateKey;
  publicPem: string;
  alg: SignatureAlgorithm;
}

export function approverKey(keyid: string, alg: SignatureAlgorithm = 'ed25519'): ApproverKeyPair {
  const { privateKey, publicKey } = generateKeyPair(alg, alg === 'rsa-pss-sha256' ? { rsaBits: 2048 } : undefined);
  return { keyid, privateKey, publicPem: publicKey.toPem(), alg };
}

/** The approvers list document for `keys` (each under its own keyid) and a quorum. */
export function approversDoc(keys: ApproverKeyPair[], quorum: Record<string, unknown>): Record<string, unknown> {
  return { keys: Object.fromEntries(keys.map((k) => [k.keyid, { alg: k.alg, public_key: k.publicPem }])), quorum };
}

export function approversOf(keys: ApproverKeyPair[], quorum: Record<string, unknown> = { threshold: 2 }): ApproversList {
  return parseApprovers(approversDoc(keys, quorum));
}

export const hashOf = (s: string): string => `sha256:${createHash('sha256').update(s).digest('hex')}`;

export function requestOf(overrides: Partial<ApprovalRequest> = {}): ApprovalRequest {
  return { patchId: 'fix-101', target: 'xps.crypto.hash.sha256', version: '1.0.1', payloadHash: hashOf('payload-1'), ...overrides };
}

export const T0 = Date.parse('2030-01-01T00:00:00Z');

export function proposalOf(overrides: Partial<ApprovalRequest> = {}, now = T0, ttlMs = 3_600_000): Proposal {
  return newProposal(requestOf(overrides), { now, ttlMs, proposer: 'test' });
}

export function voteBy(key: ApproverKeyPair, proposal: Proposal, now = T0 + 1000): SignedVote {
  return signVote(proposal, key.privateKey, key.keyid, { now });
}

/** A correctly signed vote envelope over an arbitrary payload (for votes whose content lies). */
export function rawVote(key: ApproverKeyPair, proposalId: string, payload: Record<string, unknown>, storedAs = key.keyid): SignedVote {
  const body = new TextEncoder().encode(JSON.stringify(payload));
  const sig = sign(key.privateKey, pae(VOTE_PAYLOAD_TYPE, body));
  return { proposalId, keyid: storedAs, envelope: encodeEnvelope({ payloadType: VOTE_PAYLOAD_TYPE, payload: body, signatures: [{ keyid: key.keyid, sig }] }) };
}

/** The signed payload of a vote, as an object to alter. */
export function payloadOf(vote: SignedVote): Record<string, unknown> {
  return JSON.parse(new TextDecoder().decode(decodeEnvelope(vote.envelope).payload)) as Record<string, unknown>;
}

/** The same envelope (same signature) with a field of its payload changed. */
export function tampered(vote: SignedVote, change: Record<string, unknown>): SignedVote {
  const envelope = decodeEnvelope(vote.envelope);
  const payload = new TextEncoder().encode(JSON.stringify({ ...payloadOf(vote), ...change }));
  return { ...vote, envelope: encodeEnvelope({ ...envelope, payload }) };
}

export function assertCode(code: string, message?: RegExp): (error: unknown) => boolean {
  return (error: unknown) => {
    assert.equal((error as HotPatchError).code, code, `expected ${code}, got ${String((error as Error).message)}`);
    if (message !== undefined) assert.match((error as Error).message, message);
    return true;
  };
}

export async function waitFor(predicate: () => boolean | Promise<boolean>, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

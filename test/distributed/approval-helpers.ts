import { createHash } from 'node:crypto';
import { encodeEnvelope, decodeEnvelope, type ApprovalRequest } from '../../src/core/index.js';
import { VOTE_PAYLOAD_TYPE, newProposal, parseApprovers, signVote, type ApproversList, type Proposal, type SignedVote } from '../../src/distributed/index.js';
import { signEnvelope, signerOf, testKey, type TestKey } from '../support/patches.js';
import { until } from '../support/wait.js';

// Keys, signing, the code assertion and the polling wait are shared with the other test
// directories (test/support); re-exported under the names the approval tests use.
export { assertCode } from '../support/assertions.js';

/** Polls `predicate` (it reads the store) every 20 ms until it holds; fails after `timeoutMs`. */
export const waitFor = (predicate: () => boolean | Promise<boolean>, timeoutMs = 10_000, what = 'condition'): Promise<void> =>
  until(predicate, timeoutMs, what, 20);

/** Shared by the approval tests (approval-*.test.ts). */

export type ApproverKeyPair = TestKey;
export const approverKey = testKey;

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
  return { proposalId, keyid: storedAs, envelope: signEnvelope(VOTE_PAYLOAD_TYPE, body, [signerOf(key.keyid, key.privateKey)]) };
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

/**
 * Signed agent reports: what an agent writes at `<prefix>/agents/<agentId>`, and how readers
 * decide whether it counts.
 *
 * Why sign: the controller halts a rollout (and every ring rolls it back) on one agent's
 * `failed` or `unhealthy`, and opens the next ring once every agent of a ring says `promoted`
 * and `healthy`. Unsigned, any store writer could write those words for any agent: halt an
 * approved, healthy patch everywhere, or widen a rollout its canaries never passed.
 *
 * Stored form, with a signer: the JSON text `{ "report": <DSSE envelope> }` (the envelope as a
 * JSON object, as rollouts store theirs), payloadType AGENT_REPORT_PAYLOAD_TYPE, payload the
 * agent document plus `seq` (1, 2, … per write of one run of the agent; `startedAt` names the
 * run). Without a signer: the plain agent document, as before.
 *
 * Reading, with a trust store whose `agents` role is defined: a report counts only when it is
 * an envelope signed by the key whose id is the report's agentId, listed in the role (so agent
 * A cannot write B's report either); a key's `targets` patterns do not apply. Anything else —
 * plain, signed by another key, a bad signature — is refused. Without the role (or without a
 * trust store) reports are taken as stored, signed or not, and no signature is checked: the
 * weaker mode, in which any store writer can speak for any agent.
 *
 * Replays (an older signed report put back) pass here: the controller compares `seq` per run
 * (agent-report-replay.ts).
 */
import { HotPatchError, asObject, decodeJson, describe, pae, rejectUnknownFields, type Envelope } from '../core/index.js';
import { defaultCryptoPolicy, sign, type CryptoPolicy } from '../crypto-agile/index.js';
import { checkSignatures, shortfallCode, type TrustStore } from '../verification/index.js';
import { parseAgentDocument, parseAgentReportPayload, type AgentDocument } from './fleet-documents.js';
import { checkSigners, envelopeValue, type RolloutSigner } from './rollout-signing.js';
import { envelopeOf } from './rollout-verify.js';

export const AGENT_REPORT_PAYLOAD_TYPE = 'application/vnd.xps.hotpatch.agent-report+json';
/** The crypto-policy component agent report signatures are checked under. */
export const AGENT_REPORT_COMPONENT = 'hotpatch.fleet-agent';

/** A stored agent report, read. */
export interface AgentReport {
  doc: AgentDocument;
  /** The report's number in its run, when it is stored signed. */
  seq?: number;
  /** The key id whose signature was verified against the trust store's `agents` role; absent when none was checked. */
  signedBy?: string;
}

const encoder = new TextEncoder();
const MAX_LISTED = 8;

/** The envelope of one report: `doc` plus `seq`, signed by the agent's own key. */
export function signAgentReport(doc: AgentDocument, seq: number, signer: RolloutSigner): Envelope {
  const payload = encoder.encode(JSON.stringify({ ...doc, seq }));
  return {
    payloadType: AGENT_REPORT_PAYLOAD_TYPE,
    payload,
    signatures: [{ keyid: signer.keyid, sig: sign(signer.privateKey, pae(AGENT_REPORT_PAYLOAD_TYPE, payload)) }],
  };
}

/** The stored text of a signed report. */
export function storedAgentReportText(envelope: Envelope): string {
  return JSON.stringify({ report: envelopeValue(envelope) });
}

/**
 * A stored agent report (text or decoded value): verified when `trust` has an `agents` role
 * (see the file comment), else read as stored. Throws INVALID or PARSE for the shape,
 * UNTRUSTED_KEY, BAD_SIGNATURE, ALGORITHM_DISALLOWED or THRESHOLD_NOT_MET (no signature at all)
 * when it does not verify. Whether the agentId is its key's is the caller's check.
 */
export function readAgentReport(raw: string | unknown, trust?: TrustStore, policy: CryptoPolicy = defaultCryptoPolicy): AgentReport {
  const o = asObject(typeof raw === 'string' ? decodeJson(raw, 'agent') : raw, 'agent');
  const agents = trust?.agents;
  if (o.report === undefined) {
    if (agents !== undefined) {
      throw new HotPatchError('INVALID', "the agent report is not signed: with the trust store's agents role, only reports signed by their agent's key count");
    }
    return { doc: parseAgentDocument(o) };
  }
  rejectUnknownFields(o, ['report'], 'agent');
  const envelope = envelopeOf(o.report, 'agent.report', AGENT_REPORT_PAYLOAD_TYPE);
  const { doc, seq } = parseAgentReportPayload(envelope.payload);
  if (agents === undefined) return { doc, seq };
  return { doc, seq, signedBy: verifiedSigner(envelope, doc.agentId, trust!, policy) };
}

/**
 * The agent's own key id, when its signature over the report verifies. Only the first
 * signature under that key id is asked to verify: an agent signs its report once, and a
 * stored text cannot make a reader check signatures that could never count.
 */
function verifiedSigner(envelope: Envelope, agentId: string, trust: TrustStore, policy: CryptoPolicy): string {
  if (!trust.agents!.keys.includes(agentId)) {
    throw new HotPatchError('UNTRUSTED_KEY', `agent ${agentId} has no key in the trust store's agents role: its reports cannot count`, {
      detail: { agentId },
    });
  }
  const own = envelope.signatures.find((s) => s.keyid === agentId);
  const [checked] = own === undefined ? [] : checkSignatures([own], pae(envelope.payloadType, envelope.payload), trust, policy, AGENT_REPORT_COMPONENT);
  if (checked?.status === 'valid') return agentId;
  const others = envelope.signatures.filter((s) => s.keyid !== agentId).map((s) => s.keyid);
  const code = shortfallCode(checked === undefined ? [] : [checked], others.length > 0 ? 'UNTRUSTED_KEY' : 'THRESHOLD_NOT_MET');
  const note = checked?.policyMessage ?? checked?.revokedMessage;
  const listed = [
    ...(checked === undefined ? [] : [`${checked.keyid}: ${checked.status}${note === undefined ? '' : ` (${note})`}`]),
    ...others.map((id) => `${describe(id)}: not ${agentId}'s key`),
  ];
  const list =
    listed.length === 0 ? 'no signatures' : `${listed.slice(0, MAX_LISTED).join(', ')}${listed.length > MAX_LISTED ? `, … (${listed.length} in all)` : ''}`;
  throw new HotPatchError(code, `the report of agent ${agentId} is not signed by its own key ${agentId}: ${list}`, { detail: { agentId } });
}

/**
 * An agent's signer, checked against its agent id and the trust store: the key id is the agent
 * id; with an `agents` role, the key is that role's key of this id (else every report it signs
 * would be ignored), and a signer is required (an unsigned report would be ignored too, while
 * the agent still applied what it was ordered: the controller would never see it fail).
 */
export function checkAgentSigner(trust: TrustStore, agentId: string, signer: RolloutSigner | undefined, what: string): RolloutSigner | undefined {
  const agents = trust.agents;
  if (signer === undefined) {
    if (agents === undefined) return undefined;
    throw new HotPatchError(
      'INVALID',
      `${what} is required: the trust store has an agents role, so controllers count only reports signed by the agent's own key (${agentId})`,
    );
  }
  const [checked] = checkSigners([signer], what);
  if (checked!.keyid !== agentId) {
    throw new HotPatchError('INVALID', `${what}.keyid ${describe(checked!.keyid)} must be the agent id ${agentId}: an agent's key id is its agent id`);
  }
  if (agents === undefined) return checked;
  if (!agents.keys.includes(agentId)) {
    throw new HotPatchError('INVALID', `agent ${agentId} has no key in the trust store's agents role: controllers would ignore every report it signs`);
  }
  if (trust.keys.get(agentId)!.key.fingerprint !== checked!.privateKey.publicKey().fingerprint) {
    throw new HotPatchError('INVALID', `${what}'s private key is not the key ${agentId} of the trust store's agents role`);
  }
  return checked;
}

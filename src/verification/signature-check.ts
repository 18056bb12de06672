import type { EnvelopeSignature, ErrorCode } from '../core/index.js';
import { verifySignature, type CryptoPolicy } from '../crypto-agile/index.js';
import { verifyTimestampToken, type TimestampInfo } from './timestamp-token.js';
import type { KeyCutoff, TrustStore } from './trust-store.js';

export type SignatureStatus = 'valid' | 'unknown-key' | 'algorithm-disallowed' | 'bad-signature' | 'revoked';

export interface CheckedSignature {
  keyid: string;
  status: SignatureStatus;
  /** SHA-256 of the key's SPKI when the key id is trusted. */
  fingerprint: string | undefined;
  /** Why an algorithm was refused, when it was. */
  policyMessage?: string;
  /** Why a revoked (or expired) key's signature did not count: its cutoff, and what its timestamp said. */
  revokedMessage?: string;
  /** When a trusted timestamp says the signature existed (epoch ms), when one was checked. */
  timestampedAt?: number;
}

/**
 * Classifies every signature of an envelope against the trust store. The algorithm comes
 * from the trusted key, never from the envelope; a key whose algorithm the policy forbids
 * for this component is not even asked to verify (the algorithm may be the broken part).
 * A key past its cutoff (revoked, or its `expires`) at `now` counts only when the signature
 * carries a timestamp token, from an authority of the store, that puts it before the cutoff:
 * a signature made before a key was revoked stays valid, one made after (or undated) does not.
 * With `timestamps: 'ignored'` (documents re-signed often, such as the repository index) it
 * never counts past its cutoff: a key stolen before its revocation could otherwise keep a
 * document it signed then alive.
 */
export function checkSignatures(
  signatures: readonly EnvelopeSignature[],
  message: Uint8Array,
  store: TrustStore,
  policy: CryptoPolicy,
  component: string,
  now: number = Date.now(),
  timestamps: 'honoured' | 'ignored' = 'honoured',
): CheckedSignature[] {
  return signatures.map((s): CheckedSignature => {
    const trusted = store.keys.get(s.keyid);
    if (trusted === undefined) return { keyid: s.keyid, status: 'unknown-key', fingerprint: undefined };
    const fingerprint = trusted.key.fingerprint;
    try {
      policy.assertSignatureAllowed(component, trusted.key);
    } catch (error) {
      return { keyid: s.keyid, status: 'algorithm-disallowed', fingerprint, policyMessage: (error as Error).message };
    }
    const ok = verifySignature(trusted.key, message, s.sig);
    if (!ok) return { keyid: s.keyid, status: 'bad-signature', fingerprint };
    const cutoff = store.cutoffs.get(fingerprint);
    if (cutoff === undefined || now < cutoff.at) return { keyid: s.keyid, status: 'valid', fingerprint };
    if (timestamps === 'ignored') {
      return {
        keyid: s.keyid,
        status: 'revoked',
        fingerprint,
        revokedMessage: `${s.keyid} was ${cutoff.why} at ${cutoff.text} (timestamps do not count for ${component})`,
      };
    }
    return datedBefore(s, cutoff, store, fingerprint);
  });
}

/** A signature by a key past its cutoff: valid only when a trusted timestamp dates it before. */
function datedBefore(s: EnvelopeSignature, cutoff: KeyCutoff, store: TrustStore, fingerprint: string): CheckedSignature {
  const since = `${cutoff.why} at ${cutoff.text}`;
  if (s.timestamp === undefined)
    return { keyid: s.keyid, status: 'revoked', fingerprint, revokedMessage: `${s.keyid} was ${since} and its signature has no timestamp` };
  let info: TimestampInfo;
  try {
    info = verifyTimestampToken(s.timestamp, s.sig, store.timestampAuthorities);
  } catch (error) {
    return {
      keyid: s.keyid,
      status: 'revoked',
      fingerprint,
      revokedMessage: `${s.keyid} was ${since} and its timestamp does not count: ${(error as Error).message}`,
    };
  }
  if (info.genTime >= cutoff.at) {
    const at = new Date(info.genTime).toISOString();
    return {
      keyid: s.keyid,
      status: 'revoked',
      fingerprint,
      timestampedAt: info.genTime,
      revokedMessage: `${s.keyid} was ${since} and its signature is timestamped after, ${at}`,
    };
  }
  return { keyid: s.keyid, status: 'valid', fingerprint, timestampedAt: info.genTime };
}

/** One key id per distinct public key: a key listed twice, or a repeated signature, counts once. */
export function distinctValidKeys(checked: readonly CheckedSignature[], admit: (keyid: string) => boolean): string[] {
  const seen = new Set<string>();
  const ids: string[] = [];
  for (const c of checked) {
    if (c.status !== 'valid' || c.fingerprint === undefined || !admit(c.keyid)) continue;
    if (seen.has(c.fingerprint)) continue;
    seen.add(c.fingerprint);
    ids.push(c.keyid);
  }
  return ids;
}

/**
 * The code that says best why signatures fell short, the message's notes after it: a refused
 * algorithm, then a bad signature, then a revoked key, else `otherwise` (who decides between an
 * untrusted key and too few signatures knows the role).
 */
export function shortfallCode(checked: readonly CheckedSignature[], otherwise: ErrorCode): ErrorCode {
  const has = (status: SignatureStatus): boolean => checked.some((c) => c.status === status);
  if (has('algorithm-disallowed')) return 'ALGORITHM_DISALLOWED';
  if (has('bad-signature')) return 'BAD_SIGNATURE';
  if (has('revoked')) return 'KEY_REVOKED';
  return otherwise;
}

/** What the policy and the revocations said of the signatures (for a refusal's message). */
export function signatureNotes(checked: readonly CheckedSignature[]): string[] {
  return checked.flatMap((c) => [c.policyMessage, c.revokedMessage].filter((m): m is string => m !== undefined));
}

export function summarize(checked: readonly CheckedSignature[]): string {
  if (checked.length === 0) return 'the envelope has no signatures';
  return checked.map((c) => `${c.keyid}: ${c.status}`).join(', ');
}

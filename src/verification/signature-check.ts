import type { EnvelopeSignature } from '../core/index.js';
import { verifySignature, type CryptoPolicy } from '../crypto-agile/index.js';
import type { TrustStore } from './trust-store.js';

export type SignatureStatus = 'valid' | 'unknown-key' | 'algorithm-disallowed' | 'bad-signature';

export interface CheckedSignature {
  keyid: string;
  status: SignatureStatus;
  /** SHA-256 of the key's SPKI when the key id is trusted. */
  fingerprint: string | undefined;
  /** Why an algorithm was refused, when it was. */
  policyMessage?: string;
}

/**
 * Classifies every signature of an envelope against the trust store. The algorithm comes
 * from the trusted key, never from the envelope; a key whose algorithm the policy forbids
 * for this component is not even asked to verify (the algorithm may be the broken part).
 */
export function checkSignatures(
  signatures: readonly EnvelopeSignature[],
  message: Uint8Array,
  store: TrustStore,
  policy: CryptoPolicy,
  component: string,
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
    return { keyid: s.keyid, status: ok ? 'valid' : 'bad-signature', fingerprint };
  });
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

export function summarize(checked: readonly CheckedSignature[]): string {
  if (checked.length === 0) return 'the envelope has no signatures';
  return checked.map((c) => `${c.keyid}: ${c.status}`).join(', ');
}

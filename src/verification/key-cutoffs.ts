import { X509Certificate } from 'node:crypto';
import { HotPatchError, asObject, parseRfc3339, rejectUnknownFields } from '../core/index.js';
import type { TrustedKey } from './trust-store.js';

/*
 * The trust store's revocations, key expiries and time-stamping authorities (README "Trusted
 * timestamps and key revocation"): parsed here, applied by signature-check.ts.
 */

/** From when a key's signatures stop counting unless a trusted timestamp puts them earlier. */
export interface KeyCutoff {
  /** Epoch ms. */
  at: number;
  why: 'revoked' | 'expired';
  /** As written (RFC 3339), for messages. */
  text: string;
}

const REVOKED_FIELDS = new Set(['at', 'reason']);
const TIMESTAMPING_FIELDS = new Set(['certificates']);

/** Keeps the earlier cutoff of a public key (revoked and expired: whichever comes first). */
export function addCutoff(cutoffs: Map<string, KeyCutoff>, fingerprint: string, cutoff: KeyCutoff): void {
  const known = cutoffs.get(fingerprint);
  if (known === undefined || cutoff.at < known.at) cutoffs.set(fingerprint, cutoff);
}

/** `revoked: { keyid: { at, reason? } }`: each a key of the store (its public key is what is revoked). */
export function revocations(value: unknown, keys: ReadonlyMap<string, TrustedKey>, cutoffs: Map<string, KeyCutoff>): void {
  const obj = asObject(value, 'trust store revoked');
  for (const [keyid, raw] of Object.entries(obj)) {
    const field = `trust store revoked.${keyid}`;
    const key = keys.get(keyid);
    if (key === undefined)
      throw new HotPatchError(
        'INVALID',
        `${field}: ${JSON.stringify(keyid.slice(0, 128))} is not a key of this trust store (keep a revoked key listed, so its public key stays revoked)`,
      );
    const r = asObject(raw, field);
    rejectUnknownFields(r, REVOKED_FIELDS, field);
    if (r.reason !== undefined && (typeof r.reason !== 'string' || r.reason.length > 1024))
      throw new HotPatchError('INVALID', `${field}.reason must be a string of at most 1024 characters`);
    addCutoff(cutoffs, key.key.fingerprint, { at: parseRfc3339(r.at, `${field}.at`), why: 'revoked', text: String(r.at) });
  }
}

/** `timestamping: { certificates: [PEM, …] }`: the TSA certificates (or their CAs) trusted for RFC 3161 tokens. */
export function authorities(value: unknown): X509Certificate[] {
  const obj = asObject(value, 'trust store timestamping');
  rejectUnknownFields(obj, TIMESTAMPING_FIELDS, 'trust store timestamping');
  if (!Array.isArray(obj.certificates) || obj.certificates.length === 0 || obj.certificates.length > 32) {
    throw new HotPatchError('INVALID', 'trust store timestamping.certificates must be a list of 1 to 32 PEM certificates');
  }
  return obj.certificates.map((pem, i) => {
    if (typeof pem !== 'string' || pem.length > 64 * 1024)
      throw new HotPatchError('INVALID', `trust store timestamping.certificates[${i}] must be a PEM certificate`);
    try {
      return new X509Certificate(pem);
    } catch (cause) {
      throw new HotPatchError('INVALID', `trust store timestamping.certificates[${i}] is not a certificate: ${(cause as Error).message}`, { cause });
    }
  });
}

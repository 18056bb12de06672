import semver from 'semver';
import {
  HotPatchError,
  MANIFEST_PAYLOAD_TYPE,
  decodeEnvelope,
  paeFor,
  parseManifest,
  type PatchVerifier,
  type VerificationContext,
  type VerifiedManifest,
} from '../core/index.js';
import { defaultCryptoPolicy, hashProvider, type CryptoPolicy } from '../crypto-agile/index.js';
import { checkPayloadStream } from './payload-check.js';
import { checkSignatures, distinctValidKeys, shortfallCode, signatureNotes, summarize, type CheckedSignature } from './signature-check.js';
import { trustForTarget, type TrustStore } from './trust-store.js';

export interface VerifierOptions {
  /** Algorithm policy consulted per target; changes to it apply to the next verification. */
  cryptoPolicy?: CryptoPolicy;
  /** Tolerated clock difference for `created_at` / `expires`, in ms (default 60 s). */
  clockSkewMs?: number;
}

const DEFAULT_CLOCK_SKEW_MS = 60_000;

/** PAE(MANIFEST_PAYLOAD_TYPE, body), its constant head encoded once (the bytes every signature is over). */
const manifestPae = paeFor(MANIFEST_PAYLOAD_TYPE);

/**
 * The verification steps, always in this order (README "Verification order"):
 *  1. envelope type   2. manifest parse   3. signatures   4. threshold over distinct keys
 *  5. target authorisation   6. manifest `signers`   7. not-yet-valid / expiry (one
 *  reference time)   8. anti-downgrade   9. payload hash algorithm allowed
 *  10. (verifyPayload) size and hash while streaming.
 * Everything here is pure: bytes and chunks in, verdict out.
 */
export class DefaultVerifier implements PatchVerifier {
  #trust: TrustStore;
  readonly #policy: CryptoPolicy;
  readonly #skewMs: number;

  constructor(trust: TrustStore, options: VerifierOptions = {}) {
    this.#trust = trust;
    this.#policy = options.cryptoPolicy ?? defaultCryptoPolicy;
    const skew = options.clockSkewMs ?? DEFAULT_CLOCK_SKEW_MS;
    if (!Number.isFinite(skew) || skew < 0) throw new HotPatchError('INVALID', `clockSkewMs must be >= 0, got ${skew}`);
    this.#skewMs = skew;
  }

  get trustStore(): TrustStore {
    return this.#trust;
  }

  /** Swap in a trust store obtained through `rotateTrustStore` (or a reload). */
  setTrustStore(trust: TrustStore): void {
    this.#trust = trust;
  }

  verifyEnvelope(envelopeBytes: Uint8Array, context: VerificationContext = {}): VerifiedManifest {
    // One reference time for every time check, taken before any work.
    const now = context.now ?? Date.now();
    const trust = this.#trust;
    const envelope = decodeEnvelope(envelopeBytes);

    // step 1: envelope type — a signature over another payloadType must never count here.
    if (envelope.payloadType !== MANIFEST_PAYLOAD_TYPE) {
      throw new HotPatchError('INVALID', `envelope payloadType is ${JSON.stringify(envelope.payloadType)}, expected ${JSON.stringify(MANIFEST_PAYLOAD_TYPE)}`);
    }
    // step 2: strict manifest parse (the target decides which keys and algorithms apply).
    const { manifest, facts } = parseManifest(envelope.payload);
    const target = manifest.target;
    const targetTrust = trustForTarget(trust, target);
    const required = targetTrust.threshold;

    // step 3: signatures over PAE(type, body) (the type is MANIFEST_PAYLOAD_TYPE since step 1),
    // algorithm from the trusted key.
    const checked = checkSignatures(envelope.signatures, manifestPae(envelope.payload), trust, this.#policy, target, now);

    // step 4: threshold over distinct public keys.
    const valid = distinctValidKeys(checked, () => true);
    if (valid.length < required) throw thresholdFailure(checked, valid.length, required, target);

    // step 5: target authorisation (rules and per-key target patterns).
    const authorized = distinctValidKeys(checked, (id) => targetTrust.authorized.has(id));
    if (authorized.length < required) {
      const refused = valid.filter((id) => !targetTrust.authorized.has(id));
      throw new HotPatchError(
        'UNTRUSTED_KEY',
        `signed by ${authorized.length} of ${required} required keys trusted for target ${target}; ` + `not authorised for it: ${refused.join(', ')}`,
        { detail: { valid: authorized.length, required, target, unauthorized: refused } },
      );
    }

    // step 6: when the manifest names its signers, only those count.
    let counted = authorized;
    if (manifest.signers.length > 0) {
      const named = new Set(manifest.signers);
      counted = distinctValidKeys(checked, (id) => targetTrust.authorized.has(id) && named.has(id));
      if (counted.length < required) {
        throw new HotPatchError(
          'THRESHOLD_NOT_MET',
          `signed by ${counted.length} of ${required} required keys listed in the manifest's signers (${manifest.signers.join(', ')})`,
          { detail: { valid: counted.length, required, signers: manifest.signers } },
        );
      }
    }

    // step 7: freshness against the one reference time, with a small clock skew.
    if (facts.createdAtMs > now + this.#skewMs) {
      throw new HotPatchError(
        'NOT_YET_VALID',
        `manifest created_at ${manifest.created_at} is ${formatDuration(facts.createdAtMs - now)} in the future (skew allowed: ${formatDuration(this.#skewMs)})`,
        { detail: { created_at: manifest.created_at, now: new Date(now).toISOString(), ahead_ms: facts.createdAtMs - now } },
      );
    }
    if (facts.expiresMs !== undefined && facts.expiresMs + this.#skewMs <= now) {
      throw new HotPatchError('EXPIRED', `manifest expired ${formatDuration(now - facts.expiresMs)} ago (expires ${manifest.expires})`, {
        detail: { expires: manifest.expires, now: new Date(now).toISOString(), overdue_ms: now - facts.expiresMs },
      });
    }

    // step 8: anti-downgrade against the highest version ever recorded for the target.
    const highest = typeof context.highestVersion === 'function' ? context.highestVersion(target) : context.highestVersion;
    if (highest !== undefined && (typeof highest !== 'string' || semver.valid(highest) !== highest)) {
      // A broken floor must not switch anti-downgrade off, nor crash as a TypeError.
      throw new HotPatchError('INVALID', `the highest recorded version of ${target} (${String(highest)}) is not a semver version`);
    }
    if (highest !== undefined && semver.lt(manifest.version, highest)) {
      throw new HotPatchError('DOWNGRADE', `version ${manifest.version} of ${target} is lower than the highest recorded version ${highest}`, {
        detail: { version: manifest.version, highest },
      });
    }

    // step 9: the payload hash algorithm must be known and allowed before any payload byte is read.
    this.#policy.assertHashAllowed(target, facts.hashAlgorithm);
    const provider = hashProvider(facts.hashAlgorithm);
    if (facts.hashHex.length !== provider.digestLength * 2) {
      throw new HotPatchError('INVALID', `payload_hash has ${facts.hashHex.length / 2} bytes but ${facts.hashAlgorithm} digests are ${provider.digestLength}`);
    }

    return { manifest, facts, envelope, signers: counted, threshold: required };
  }

  /**
   * step 10: size and hash while streaming. Stops at the first byte past `payload_size`
   * (the repository is asked for at most payload_size + 1 bytes), so an endless payload
   * costs one extra byte, not a full read.
   */
  async verifyPayload(verified: VerifiedManifest, chunks: AsyncIterable<Uint8Array>): Promise<void> {
    // Re-checked here: the policy may have changed since the envelope was verified.
    this.#policy.assertHashAllowed(verified.manifest.target, verified.facts.hashAlgorithm);
    await checkPayloadStream(verified.manifest, verified.facts, chunks);
  }
}

/** Picks the code that says best why the threshold was missed; the message lists every signature. */
function thresholdFailure(checked: CheckedSignature[], valid: number, required: number, target: string): HotPatchError {
  const code = shortfallCode(checked, checked.some((c) => c.status === 'unknown-key') ? 'UNTRUSTED_KEY' : 'THRESHOLD_NOT_MET');
  const policyNotes = signatureNotes(checked);
  const validSigs = checked.filter((c) => c.status === 'valid').length;
  const dupNote = validSigs > valid ? ` (${validSigs} valid signatures, ${valid} distinct keys)` : '';
  return new HotPatchError(
    code,
    `signed by ${valid} of ${required} required keys for target ${target}${dupNote}: ${summarize(checked)}` +
      (policyNotes.length > 0 ? `; ${policyNotes.join('; ')}` : ''),
    { detail: { valid, required, target, signatures: checked.map((c) => ({ keyid: c.keyid, status: c.status })) } },
  );
}

function formatDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s}s`;
  const m = Math.round(s / 60);
  if (m < 120) return `${m}min`;
  const h = Math.round(m / 60);
  if (h < 48) return `${h}h`;
  return `${Math.round(h / 24)}d`;
}

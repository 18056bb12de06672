import { HotPatchError, decodeEnvelope, pae } from '../core/index.js';
import { defaultCryptoPolicy, type CryptoPolicy } from '../crypto-agile/index.js';
import { checkSignatures, distinctValidKeys, summarize } from './signature-check.js';
import { parseTrustStore, type TrustStore } from './trust-store.js';

export const TRUST_STORE_PAYLOAD_TYPE = 'application/vnd.xps.hotpatch.trust+json';

/** The policy component that trust-store signatures are checked under. */
export const TRUST_STORE_COMPONENT = 'hotpatch.trust-root';

/**
 * Accepts a new trust store only when it is signed by a threshold of the current store's
 * root keys AND by a threshold of its own root keys (as TUF chains root metadata), and its
 * version is higher. Either half alone is not enough: the old keys prove continuity, the new
 * ones prove the new holders can actually sign. Returns the new store; the caller swaps it in.
 */
export function rotateTrustStore(current: TrustStore, envelopeBytes: Uint8Array, policy: CryptoPolicy = defaultCryptoPolicy): TrustStore {
  const envelope = decodeEnvelope(envelopeBytes);
  // step 1: the envelope must say it carries a trust store.
  if (envelope.payloadType !== TRUST_STORE_PAYLOAD_TYPE) {
    throw new HotPatchError(
      'INVALID',
      `trust store envelope payloadType is ${JSON.stringify(envelope.payloadType)}, expected ${JSON.stringify(TRUST_STORE_PAYLOAD_TYPE)}`,
    );
  }
  // step 2: the new store must parse on its own.
  const next = parseTrustStore(envelope.payload);
  // step 3: no rollback to an older (possibly compromised) set of keys.
  if (next.version <= current.version) {
    throw new HotPatchError('DOWNGRADE', `new trust store version ${next.version} is not above the current version ${current.version}`, {
      detail: { current: current.version, next: next.version },
    });
  }
  const message = pae(envelope.payloadType, envelope.payload);
  // step 4: a threshold of the current root keys, then step 5: of the new root keys.
  for (const [label, store] of [
    ['current', current],
    ['new', next],
  ] as const) {
    const checked = checkSignatures(envelope.signatures, message, store, policy, TRUST_STORE_COMPONENT);
    const rootIds = new Set(store.root.keys);
    const counted = distinctValidKeys(checked, (id) => rootIds.has(id));
    if (counted.length < store.root.threshold) {
      throw new HotPatchError(
        'THRESHOLD_NOT_MET',
        `new trust store is signed by ${counted.length} of ${store.root.threshold} required root keys of the ${label} store: ${summarize(checked)}`,
        { detail: { store: label, valid: counted.length, required: store.root.threshold } },
      );
    }
  }
  return next;
}

import { MANIFEST_PAYLOAD_TYPE, type EnvelopeSignature } from '../../src/core/index.js';
import { hashBytes } from '../../src/crypto-agile/index.js';
import { parseTrustStore, type TrustStoreDocument } from '../../src/verification/index.js';
import { signEnvelope, signerOf, testKey, type TestKey } from '../support/patches.js';

// Keys, signing and the code assertion are shared with the other test directories (test/support).
export { assertCode } from '../support/assertions.js';
export type { TestKey };
export const makeKey = testKey;

export const PAYLOAD = new TextEncoder().encode('export const api = { digest: () => 1 };\n');

export function manifestFor(overrides: Record<string, unknown> = {}, payload: Uint8Array = PAYLOAD): Record<string, unknown> {
  const now = Date.now();
  return {
    id: 'fix-1',
    target: 'xps.crypto.hash.sha256',
    version: '1.2.3',
    created_at: new Date(now - 3_600_000).toISOString(),
    expires: new Date(now + 30 * 86_400_000).toISOString(),
    signers: [],
    payload_hash: `sha256:${Buffer.from(hashBytes('sha256', payload)).toString('hex')}`,
    payload_size: payload.length,
    payload_type: 'esm',
    ...overrides,
  };
}

/** A DSSE envelope over `manifest`, signed by `signers` (each signs the same PAE). */
export function envelopeBytes(
  manifest: Record<string, unknown>,
  signers: TestKey[],
  options: { payloadType?: string; signedType?: string; extraSignatures?: EnvelopeSignature[] } = {},
): Uint8Array {
  const payloadType = options.payloadType ?? MANIFEST_PAYLOAD_TYPE;
  const body = new TextEncoder().encode(JSON.stringify(manifest));
  const envelope = signEnvelope(
    payloadType,
    body,
    signers.map((k) => signerOf(k.keyid, k.privateKey)),
    {
      ...(options.signedType === undefined ? {} : { signedType: options.signedType }),
      ...(options.extraSignatures === undefined ? {} : { extraSignatures: options.extraSignatures }),
    },
  );
  return new TextEncoder().encode(envelope);
}

export function trustDoc(
  keys: TestKey[],
  threshold: number,
  extra: Partial<TrustStoreDocument> = {},
  targets: Record<string, string[]> = {},
): TrustStoreDocument {
  return {
    keys: Object.fromEntries(keys.map((k) => [k.keyid, { alg: k.alg, public_key: k.publicPem, ...(targets[k.keyid] ? { targets: targets[k.keyid] } : {}) }])),
    threshold,
    ...extra,
  };
}

export function trust(keys: TestKey[], threshold: number, extra: Partial<TrustStoreDocument> = {}, targets: Record<string, string[]> = {}) {
  return parseTrustStore(trustDoc(keys, threshold, extra, targets));
}

export async function* chunksOf(bytes: Uint8Array, size = 7): AsyncIterable<Uint8Array> {
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
}

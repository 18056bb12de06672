import type { Manifest, PatchId, VerifiedManifest } from '../../src/core/index.js';

// The code assertions are shared with the other test directories (test/support/assertions.ts).
export { throwsCode, rejectsWith as rejectsCode } from '../support/assertions.js';

/** A verified manifest built by hand: the gate only reads manifest, signers and threshold. */
export function verified(overrides: Partial<Manifest> = {}, extra: { signers?: string[]; threshold?: number } = {}): VerifiedManifest {
  const manifest: Manifest = {
    id: 'hotfix-2025-10-27' as PatchId,
    target: 'xps.crypto.hash.sha256',
    version: '1.2.3',
    created_at: '2025-10-27T09:00:00Z',
    expires: '2026-10-27T09:00:00Z',
    signers: ['team-key-1', 'build-bot'],
    payload_hash: `sha256:${'ab'.repeat(32)}`,
    payload_size: 48213,
    payload_type: 'esm',
    ...overrides,
  };
  return {
    manifest,
    facts: {
      createdAtMs: Date.parse(manifest.created_at),
      expiresMs: manifest.expires === undefined ? undefined : Date.parse(manifest.expires),
      hashAlgorithm: 'sha256',
      hashHex: 'ab'.repeat(32),
    },
    envelope: { payloadType: 'x', payload: new Uint8Array(), signatures: [] },
    signers: extra.signers ?? ['team-key-1', 'build-bot'],
    threshold: extra.threshold ?? 2,
  };
}

/** The host as the gate sees it, so platform tests hold on any machine. */
export const HOST = `${process.platform}-${process.arch}`;

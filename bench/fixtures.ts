/*
 * Shared fixtures: keys, trust stores and real signed envelopes built in-process with the
 * package's own API (the same bytes `hotpatch pack` + `hotpatch sign` would produce).
 */
import { createHash, randomBytes } from 'node:crypto';
import { open, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  MANIFEST_PAYLOAD_TYPE,
  encodeEnvelope,
  generateKeyPair,
  pae,
  parseManifest,
  parseTrustStore,
  DefaultVerifier,
  sign,
  type PrivateKey,
  type PublicKey,
  type SignatureAlgorithm,
  type TrustStore,
  type TrustStoreDocument,
} from '../src/index.js';

/** The package root (this file runs from dist/bench/). */
export const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CLI_MAIN = resolve(PACKAGE_ROOT, 'dist', 'src', 'cli', 'main.js');

export const TARGET = 'xps.crypto.hash.sha256';

export interface Signer {
  keyid: string;
  privateKey: PrivateKey;
  publicKey: PublicKey;
}

export function makeSigners(alg: SignatureAlgorithm, count: number): Signer[] {
  return Array.from({ length: count }, (_, i) => {
    const { privateKey, publicKey } = generateKeyPair(alg);
    return { keyid: `bench-key-${i + 1}`, privateKey, publicKey };
  });
}

export function makeTrustStore(signers: readonly Signer[], threshold: number): { document: TrustStoreDocument; store: TrustStore } {
  const document: TrustStoreDocument = {
    keys: Object.fromEntries(signers.map((s) => [s.keyid, { alg: s.publicKey.alg, public_key: s.publicKey.toPem() }])),
    threshold,
  };
  return { document, store: parseTrustStore(JSON.stringify(document)) };
}

export interface PatchSpec {
  id: string;
  payloadSha256Hex: string;
  payloadSize: number;
  /** Key ids listed in the manifest's `signers` (and that sign it). */
  signedBy: readonly Signer[];
}

export interface SignedPatch {
  /** The envelope exactly as `<id>.json` holds it. */
  envelopeJson: string;
  envelopeBytes: Uint8Array;
  /** The manifest's JSON bytes (the DSSE payload). */
  body: Uint8Array;
  /** PAE(payloadType, body): the bytes every signature is over. */
  paeBytes: Uint8Array;
  signatures: { keyid: string; sig: Uint8Array }[];
}

const iso = (ms: number): string => new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');

/** A manifest for the payload, checked by the real parser, signed by every signer given. */
export function makeSignedPatch(spec: PatchSpec): SignedPatch {
  const now = Date.now();
  const { manifest } = parseManifest({
    id: spec.id,
    target: TARGET,
    version: '1.2.3',
    created_at: iso(now - 3_600_000),
    expires: iso(now + 30 * 86_400_000),
    signers: spec.signedBy.map((s) => s.keyid),
    payload_hash: `sha256:${spec.payloadSha256Hex}`,
    payload_size: spec.payloadSize,
    payload_type: 'esm',
    metadata: { ticket: 'BENCH-1', changelog: 'benchmark fixture' },
  });
  const body = new TextEncoder().encode(JSON.stringify(manifest));
  const paeBytes = pae(MANIFEST_PAYLOAD_TYPE, body);
  const signatures = spec.signedBy.map((s) => ({ keyid: s.keyid, sig: sign(s.privateKey, paeBytes) }));
  const envelopeJson = encodeEnvelope({ payloadType: MANIFEST_PAYLOAD_TYPE, payload: body, signatures });
  return { envelopeJson, envelopeBytes: new TextEncoder().encode(envelopeJson), body, paeBytes, signatures };
}

/**
 * A large payload in `repoDir`: one random MiB written `blocks` times as `<id>.bin`, hashed while
 * written, and beside it `<id>.json`, a real 2-of-3 Ed25519 manifest over it. Returns the
 * verifier of that trust store and the payload's SHA-256 (hex).
 */
export async function writeSignedPayload(repoDir: string, id: string, blocks: number): Promise<{ verifier: DefaultVerifier; expectedHex: string }> {
  const mib = 1024 * 1024;
  const block = randomBytes(mib);
  const expected = createHash('sha256');
  const handle = await open(join(repoDir, `${id}.bin`), 'w');
  try {
    for (let i = 0; i < blocks; i++) {
      await handle.write(block);
      expected.update(block);
    }
  } finally {
    await handle.close();
  }
  const expectedHex = expected.digest('hex');
  const signers = makeSigners('ed25519', 3);
  const { store } = makeTrustStore(signers, 2);
  const patch = makeSignedPatch({ id, payloadSha256Hex: expectedHex, payloadSize: blocks * mib, signedBy: signers.slice(0, 2) });
  await writeFile(join(repoDir, `${id}.json`), patch.envelopeJson);
  return { verifier: new DefaultVerifier(store), expectedHex };
}

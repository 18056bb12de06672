/*
 * Really signed patches for tests: DSSE envelopes signed over PAE with real keys, the "ci"
 * key every fixture trusts, manifests for a payload, `<id>.json` + `<id>.bin` written into a
 * repository directory, and verified manifests for the runtime. One place, so every test
 * directory signs patches the same way.
 */
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MANIFEST_PAYLOAD_TYPE, encodeEnvelope, pae, type EnvelopeSignature, type VerifiedManifest } from '../../src/core/index.js';
import { generateKeyPair, sign, type PrivateKey, type SignatureAlgorithm } from '../../src/crypto-agile/index.js';
import { DefaultVerifier, parseTrustStore } from '../../src/verification/index.js';

// --- keys and signers ------------------------------------------------------------------------

/** Signs the message it is given (normally the PAE); a test's signer may ignore it to sign something else. */
export interface Signer {
  keyid: string;
  sign(message: Uint8Array): Uint8Array;
}

export function signerOf(keyid: string, key: PrivateKey): Signer {
  return { keyid, sign: (message) => sign(key, message) };
}

/** A key pair with its key id and public key PEM, as trust stores and approvers lists name them. */
export interface TestKey {
  keyid: string;
  privateKey: PrivateKey;
  publicPem: string;
  alg: SignatureAlgorithm;
}

/** A fresh key (RSA at 2048 bits, to keep the suite fast). */
export function testKey(keyid: string, alg: SignatureAlgorithm = 'ed25519'): TestKey {
  const { privateKey, publicKey } = generateKeyPair(alg, alg === 'rsa-pss-sha256' ? { rsaBits: 2048 } : undefined);
  return { keyid, privateKey, publicPem: publicKey.toPem(), alg };
}

/** The "ci" key: one per test process; every fixture's trust store (`CI_TRUST`) holds it. */
export const ciKey = generateKeyPair('ed25519');
export const ciSigner: Signer = signerOf('ci', ciKey.privateKey);
export const CI_TRUST = { keys: { ci: { alg: 'ed25519', public_key: ciKey.publicKey.toPem() } }, threshold: 1 };
export const ciVerifier = new DefaultVerifier(parseTrustStore(CI_TRUST));

/** Signs with a key nobody trusts, under the trusted key id "ci" (a forgery). */
export const forgedCiSigner: Signer = signerOf('ci', generateKeyPair('ed25519').privateKey);

// --- envelopes ---------------------------------------------------------------------------------

export interface EnvelopeOptions {
  /** The payloadType fed to PAE when signing (default: the envelope's own). */
  signedType?: string;
  /** Signatures appended as they are, after the signers'. */
  extraSignatures?: readonly EnvelopeSignature[];
}

/** A DSSE envelope (JSON text) over `body`, each signer signing PAE(payloadType, body). */
export function signEnvelope(payloadType: string, body: Uint8Array, signers: readonly Signer[], options: EnvelopeOptions = {}): string {
  const message = pae(options.signedType ?? payloadType, body);
  const signatures = signers.map((s) => ({ keyid: s.keyid, sig: s.sign(message) }));
  return encodeEnvelope({ payloadType, payload: body, signatures: [...signatures, ...(options.extraSignatures ?? [])] });
}

/** A manifest envelope (JSON text) over `manifest`, signed by `signers` (default: the ci key). */
export function signManifest(manifest: Record<string, unknown>, signers: readonly Signer[] = [ciSigner]): string {
  return signEnvelope(MANIFEST_PAYLOAD_TYPE, new TextEncoder().encode(JSON.stringify(manifest)), signers);
}

// --- patches -----------------------------------------------------------------------------------

export const sha256Hex = (bytes: Uint8Array | string): string => createHash('sha256').update(bytes).digest('hex');

/**
 * The manifest of a ci-signed patch of `payload`: created a minute ago, expiring in a day,
 * signers ["ci"], an ES module. `overrides` replace fields.
 */
export function ciManifest(id: string, target: string, version: string, payload: Uint8Array, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id,
    target,
    version,
    created_at: new Date(Date.now() - 60_000).toISOString(),
    expires: new Date(Date.now() + 86_400_000).toISOString(),
    signers: ['ci'],
    payload_hash: `sha256:${sha256Hex(payload)}`,
    payload_size: payload.length,
    payload_type: 'esm',
    ...overrides,
  };
}

/** A really signed (by ci) and verified patch for `target` whose payload is the given ES module source. */
export function signedPatch(id: string, target: string, version: string, source: string): { verified: VerifiedManifest; payload: Uint8Array } {
  const payload = new TextEncoder().encode(source);
  const envelope = signManifest(ciManifest(id, target, version, payload));
  return { verified: ciVerifier.verifyEnvelope(new TextEncoder().encode(envelope)), payload };
}

export interface PublishOptions {
  /** Manifest field overrides (e.g. `expires`). */
  manifest?: Record<string, unknown>;
  /** Default: the ci key. */
  signers?: readonly Signer[];
}

/** Writes `<id>.json` (a really signed DSSE envelope) and `<id>.bin` (the source) into a repository directory. */
export async function publishPatch(repoDir: string, id: string, target: string, version: string, source: string, options: PublishOptions = {}): Promise<void> {
  const payload = new TextEncoder().encode(source);
  const envelope = signManifest(ciManifest(id, target, version, payload, options.manifest), options.signers);
  await writeFile(join(repoDir, `${id}.bin`), payload);
  await writeFile(join(repoDir, `${id}.json`), envelope);
}

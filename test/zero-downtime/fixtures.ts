import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MANIFEST_PAYLOAD_TYPE, encodeEnvelope, pae, type HotPatchEvent, type VerifiedManifest } from '../../src/core/index.js';
import { EventBus } from '../../src/core/index.js';
import { generateKeyPair, hashBytes, sign } from '../../src/crypto-agile/index.js';
import { DynamicInstaller } from '../../src/installer/index.js';
import { DefaultVerifier, parseTrustStore } from '../../src/verification/index.js';
import { HotPatchRuntime } from '../../src/zero-downtime/index.js';

const key = generateKeyPair('ed25519');
export const verifier = new DefaultVerifier(parseTrustStore({ keys: { ci: { alg: 'ed25519', public_key: key.publicKey.toPem() } }, threshold: 1 }));

/** A really signed and verified patch for `target` whose payload is the given ES module source. */
export function signedPatch(id: string, target: string, version: string, source: string): { verified: VerifiedManifest; payload: Uint8Array } {
  const payload = new TextEncoder().encode(source);
  const manifest = {
    id,
    target,
    version,
    created_at: new Date(Date.now() - 60_000).toISOString(),
    expires: new Date(Date.now() + 86_400_000).toISOString(),
    signers: ['ci'],
    payload_hash: `sha256:${Buffer.from(hashBytes('sha256', payload)).toString('hex')}`,
    payload_size: payload.length,
    payload_type: 'esm',
  };
  const body = new TextEncoder().encode(JSON.stringify(manifest));
  const envelope = encodeEnvelope({
    payloadType: MANIFEST_PAYLOAD_TYPE,
    payload: body,
    signatures: [{ keyid: 'ci', sig: sign(key.privateKey, pae(MANIFEST_PAYLOAD_TYPE, body)) }],
  });
  return { verified: verifier.verifyEnvelope(new TextEncoder().encode(envelope)), payload };
}

export interface World {
  dir: string;
  runtime: HotPatchRuntime;
  installer: DynamicInstaller;
  events: HotPatchEvent[];
  bus: EventBus;
  close(): Promise<void>;
}

/** A runtime with its own state directory, installer and event log. */
export async function world(): Promise<World> {
  const dir = await mkdtemp(join(tmpdir(), 'hotpatch-zdt-'));
  const bus = new EventBus();
  const events: HotPatchEvent[] = [];
  bus.subscribe((e) => events.push(e));
  const installer = new DynamicInstaller(dir);
  const runtime = new HotPatchRuntime({ stateDir: dir, bus, installer });
  return {
    dir,
    runtime,
    installer,
    events,
    bus,
    close: async () => {
      runtime.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Fast canary settings for tests: short intervals, deterministic jitter. */
export const FAST = { canaryInterval: 30, backoffFactor: 1.2, jitterRatio: 0.1, minCallsPerStep: 20, random: seeded(7) } as const;

export function seeded(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}

/** Calls `fn` in a tight async loop until `until` settles; returns the outcomes. */
export async function drive<T>(fn: (i: number) => T | Promise<T>, until: Promise<unknown>): Promise<{ ok: number; errors: unknown[]; values: T[] }> {
  let done = false;
  void until.then(
    () => (done = true),
    () => (done = true),
  );
  const out = { ok: 0, errors: [] as unknown[], values: [] as T[] };
  for (let i = 0; !done; i++) {
    try {
      out.values.push(await fn(i));
      out.ok += 1;
    } catch (error) {
      out.errors.push(error);
    }
    if (i % 50 === 0) await new Promise((r) => setImmediate(r));
  }
  return out;
}

export function types(events: readonly HotPatchEvent[]): string[] {
  return events.map((e) => e.type);
}

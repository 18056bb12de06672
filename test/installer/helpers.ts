import { createHash } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseManifest, type ParsedManifest, type PayloadType } from '../../src/core/index.js';

/** Runs `fn` with a fresh temporary directory, removed afterwards whatever happens. */
export async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'xps-installer-test-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Asserts that `promise` rejects with a HotPatchError of `code` (and, optionally, a message match). */
export { rejectsWith } from '../support/assertions.js';

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export interface ManifestOptions {
  type?: PayloadType;
  alg?: 'sha256' | 'sha384' | 'sha512' | 'sha3-256';
  /** Overrides payload_size (defaults to the payload's length). */
  size?: number;
  /** Overrides the hex digest (defaults to the payload's digest under `alg`). */
  hashHex?: string;
  id?: string;
  target?: string;
  version?: string;
}

/** A manifest parsed by core's `parseManifest`, with the digest computed from `payload`. */
export function manifestFor(payload: Uint8Array, options: ManifestOptions = {}): ParsedManifest {
  const alg = options.alg ?? 'sha256';
  const now = Date.now();
  return parseManifest({
    id: options.id ?? 'fix-1',
    target: options.target ?? 'xps.crypto.hash.sha256',
    version: options.version ?? '1.2.3',
    created_at: new Date(now - 3_600_000).toISOString(),
    expires: new Date(now + 86_400_000).toISOString(),
    signers: [],
    payload_hash: `${alg}:${options.hashHex ?? createHash(alg).update(payload).digest('hex')}`,
    payload_size: options.size ?? payload.length,
    payload_type: options.type ?? 'esm',
  });
}

export function utf8(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

/** Every name in a directory (staging dirs must hold only final, content-addressed files). */
export async function namesIn(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir)).sort();
  } catch (error) {
    if ((error as { code?: unknown }).code === 'ENOENT') return [];
    throw error;
  }
}

/**
 * A tiny WebAssembly module, assembled by hand:
 * (module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))
 */
export const ADD_WASM = new Uint8Array([
  0x00,
  0x61,
  0x73,
  0x6d,
  0x01,
  0x00,
  0x00,
  0x00, // magic, version 1
  0x01,
  0x07,
  0x01,
  0x60,
  0x02,
  0x7f,
  0x7f,
  0x01,
  0x7f, // type section: (i32, i32) -> i32
  0x03,
  0x02,
  0x01,
  0x00, // function section: one function of type 0
  0x07,
  0x07,
  0x01,
  0x03,
  0x61,
  0x64,
  0x64,
  0x00,
  0x00, // export section: "add" = function 0
  0x0a,
  0x09,
  0x01,
  0x07,
  0x00,
  0x20,
  0x00,
  0x20,
  0x01,
  0x6a,
  0x0b, // code: local.get 0, local.get 1, i32.add, end
]);

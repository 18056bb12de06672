import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MANIFEST_PAYLOAD_TYPE, encodeEnvelope } from '../../src/core/index.js';

/** Runs `fn` with a fresh temporary directory, removed afterwards whatever happens. */
export async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'xps-repo-test-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Asserts that `promise` rejects with a HotPatchError of `code` (and, optionally, a message match). */
export { rejectsWith } from '../support/assertions.js';

export async function collect(chunks: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const chunk of chunks) parts.push(chunk);
  return Buffer.concat(parts);
}

/** A minimal valid DSSE envelope (unsigned), as the `pack` command writes it. */
export function envelopeJson(body = '{"id":"x"}'): string {
  return encodeEnvelope({ payloadType: MANIFEST_PAYLOAD_TYPE, payload: new TextEncoder().encode(body), signatures: [] });
}

/** Names in `dir` that look like leftover temp files of the atomic writers. */
export async function tempFilesIn(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((name) => name.endsWith('.tmp'));
}

export function openFdCount(): number {
  return readdirSync('/proc/self/fd').length;
}

export function mkfifo(path: string): void {
  execFileSync('mkfifo', [path]);
}

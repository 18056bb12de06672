import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { HotPatchError, type ManifestEncryption } from '../core/index.js';
import { encryptPayload, hashProvider, type EncryptingPayload, type HashAlgorithm, type PayloadRecipient } from '../crypto-agile/index.js';
import { writeFileAtomic } from './atomic-file.js';
import type { PayloadSource } from './filesystem-repository.js';

/** A payload encrypted for packing: the ciphertext in a temp file beside the repository's files. */
export interface EncryptedPayloadFile {
  file: string;
  size: number;
  digestHex: string;
  encryption: ManifestEncryption;
  /** Removes the temp file (after it was published, or on failure). */
  remove(): Promise<void>;
}

/**
 * Encrypts `payload` for `recipients` into a temp file of `dir` (written atomically, mode
 * 0600), hashing the ciphertext with `alg` on the way: the manifest then records the
 * ciphertext's size and hash and the `encryption` field, and publishing copies the file into
 * `<id>.bin`. The plaintext is read once, as a stream.
 */
export async function encryptPayloadFile(
  dir: string,
  payload: PayloadSource,
  recipients: readonly PayloadRecipient[],
  options: { patchId: string; chunkSize?: number; alg: HashAlgorithm },
): Promise<EncryptedPayloadFile> {
  const file = path.join(dir, `.encrypt-${process.pid}-${randomBytes(8).toString('hex')}.tmp`);
  let run: EncryptingPayload;
  try {
    run = encryptPayload(plaintextOf(payload), recipients, {
      patchId: options.patchId,
      ...(options.chunkSize === undefined ? {} : { chunkSize: options.chunkSize }),
    });
  } catch (error) {
    // Refused recipients (none, a key id twice, an unusable key) are the caller's `encryptTo`.
    if (error instanceof HotPatchError && error.code === 'INVALID' && error.detail?.option === undefined) {
      throw new HotPatchError('INVALID', error.message, { cause: error, detail: { option: 'encryptTo' } });
    }
    throw error;
  }
  const hasher = hashProvider(options.alg).create();
  async function* hashed(): AsyncGenerator<Uint8Array> {
    for await (const chunk of run.ciphertext) {
      hasher.update(chunk);
      yield chunk;
    }
  }
  const remove = (): Promise<void> => rm(file, { force: true });
  try {
    await writeFileAtomic(file, hashed(), { mode: 0o600 });
    const { encryption, ciphertextSize } = run.result();
    return { file, size: ciphertextSize, digestHex: Buffer.from(hasher.digest()).toString('hex'), encryption, remove };
  } catch (error) {
    await remove();
    throw error;
  }
}

async function* plaintextOf(payload: PayloadSource): AsyncGenerator<Uint8Array> {
  if (payload instanceof Uint8Array) {
    yield payload;
    return;
  }
  const from = typeof payload === 'object' && payload !== null ? (payload as { fromFile?: unknown }).fromFile : undefined;
  if (typeof from !== 'string') throw new HotPatchError('INVALID', 'payload must be a Uint8Array or { fromFile: path }', { detail: { option: 'payload' } });
  try {
    for await (const chunk of createReadStream(from, { highWaterMark: 1 << 20 })) yield chunk as Buffer;
  } catch (cause) {
    throw new HotPatchError('IO', `cannot read payload file ${from}: ${(cause as Error).message}`, { cause });
  }
}

import { createCipheriv, createDecipheriv } from 'node:crypto';
import { HotPatchError } from '../core/index.js';
import { DATA_KEY_LENGTH } from './key-wrap.js';

/**
 * The encrypted payload format (README "Encrypted payloads"): the plaintext in chunks of
 * `chunkSize` bytes (the last one shorter, or empty for an empty payload), each sealed with
 * AES-256-GCM under the patch's data key and written as ciphertext then its 16-byte tag. Each
 * chunk's nonce is the 4-byte prefix and its index; its associated data binds the patch id, the
 * index and whether it is the last: a chunk moved, dropped, repeated, taken from another patch
 * or a stream cut at a chunk boundary does not authenticate. Memory is bounded by one chunk.
 */
export const PAYLOAD_CIPHER = 'aes-256-gcm-chunked-v1';
export const TAG_LENGTH = 16;
export const NONCE_PREFIX_LENGTH = 4;
export const MIN_CHUNK_SIZE = 1024;
export const MAX_CHUNK_SIZE = 16 * 1024 * 1024;

export interface PayloadCipherParams {
  patchId: string;
  chunkSize: number;
  noncePrefix: Uint8Array;
}

/** The ciphertext size of a plaintext of `plaintextSize` bytes. */
export function encryptedSize(plaintextSize: number, chunkSize: number): number {
  return plaintextSize + TAG_LENGTH * Math.max(1, Math.ceil(plaintextSize / chunkSize));
}

/** The plaintext chunks, sealed. */
export async function* encryptChunks(dataKey: Uint8Array, params: PayloadCipherParams, plaintext: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  checkParams(dataKey, params);
  const buffer = new ChunkBuffer();
  let index = 0;
  for await (const piece of plaintext) {
    buffer.push(piece);
    // A full chunk is sealed only once more bytes follow: the last chunk must be marked last.
    while (buffer.length > params.chunkSize) yield seal(dataKey, params, index++, buffer.take(params.chunkSize), false);
  }
  yield seal(dataKey, params, index, buffer.take(buffer.length), true);
}

/**
 * The ciphertext chunks, opened. DECRYPT_FAILED at the first chunk that does not authenticate
 * (a wrong data key, a tampered, reordered or foreign chunk, a stream cut short): nothing of a
 * chunk is yielded before its tag is checked.
 */
export async function* decryptChunks(dataKey: Uint8Array, params: PayloadCipherParams, ciphertext: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  checkParams(dataKey, params);
  const record = params.chunkSize + TAG_LENGTH;
  const buffer = new ChunkBuffer();
  let index = 0;
  for await (const piece of ciphertext) {
    buffer.push(piece);
    while (buffer.length > record) yield open(dataKey, params, index++, buffer.take(record), false);
  }
  if (buffer.length < TAG_LENGTH) {
    throw new HotPatchError('DECRYPT_FAILED', `the encrypted payload of ${params.patchId} ends inside chunk ${index}: it was cut short`);
  }
  yield open(dataKey, params, index, buffer.take(buffer.length), true);
}

function checkParams(dataKey: Uint8Array, params: PayloadCipherParams): void {
  if (dataKey.length !== DATA_KEY_LENGTH) throw new HotPatchError('INVALID', `a data key is ${DATA_KEY_LENGTH} bytes`);
  if (!Number.isSafeInteger(params.chunkSize) || params.chunkSize < MIN_CHUNK_SIZE || params.chunkSize > MAX_CHUNK_SIZE) {
    throw new HotPatchError('INVALID', `chunk size must be an integer from ${MIN_CHUNK_SIZE} to ${MAX_CHUNK_SIZE}, got ${params.chunkSize}`);
  }
  if (params.noncePrefix.length !== NONCE_PREFIX_LENGTH) throw new HotPatchError('INVALID', `the nonce prefix is ${NONCE_PREFIX_LENGTH} bytes`);
}

function nonceOf(params: PayloadCipherParams, index: number): Buffer {
  const nonce = Buffer.alloc(12);
  nonce.set(params.noncePrefix, 0);
  nonce.writeBigUInt64BE(BigInt(index), 4);
  return nonce;
}

function aadOf(params: PayloadCipherParams, index: number, last: boolean): Buffer {
  const tail = Buffer.alloc(9);
  tail.writeBigUInt64BE(BigInt(index), 0);
  tail[8] = last ? 1 : 0;
  return Buffer.concat([Buffer.from(`xps-hotpatch payload v1\0${params.patchId}\0`, 'utf8'), tail]);
}

function seal(dataKey: Uint8Array, params: PayloadCipherParams, index: number, plaintext: Buffer, last: boolean): Uint8Array {
  const cipher = createCipheriv('aes-256-gcm', dataKey, nonceOf(params, index));
  cipher.setAAD(aadOf(params, index, last));
  return new Uint8Array(Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]));
}

function open(dataKey: Uint8Array, params: PayloadCipherParams, index: number, sealed: Buffer, last: boolean): Uint8Array {
  const decipher = createDecipheriv('aes-256-gcm', dataKey, nonceOf(params, index));
  decipher.setAAD(aadOf(params, index, last));
  decipher.setAuthTag(sealed.subarray(sealed.length - TAG_LENGTH));
  const body = decipher.update(sealed.subarray(0, sealed.length - TAG_LENGTH));
  try {
    decipher.final();
  } catch (cause) {
    throw new HotPatchError(
      'DECRYPT_FAILED',
      `chunk ${index} of the encrypted payload of ${params.patchId} does not authenticate${last ? ' as its last' : ''} (a wrong key, a tampered, reordered or foreign chunk, or a payload cut short)`,
      { cause, detail: { chunk: index } },
    );
  }
  return new Uint8Array(body.buffer, body.byteOffset, body.length);
}

/** Bytes pushed in pieces, taken out in exact sizes (one copy per take). */
class ChunkBuffer {
  #pieces: Buffer[] = [];
  length = 0;

  push(piece: Uint8Array): void {
    if (piece.length === 0) return;
    this.#pieces.push(Buffer.from(piece.buffer, piece.byteOffset, piece.length));
    this.length += piece.length;
  }

  take(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    let at = 0;
    while (at < n) {
      const head = this.#pieces[0]!;
      const used = Math.min(head.length, n - at);
      head.copy(out, at, 0, used);
      at += used;
      if (used === head.length) this.#pieces.shift();
      else this.#pieces[0] = head.subarray(used);
    }
    this.length -= n;
    return out;
  }
}

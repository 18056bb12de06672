import { constants, promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { HotPatchError } from '../core/index.js';
import { DEFAULT_CHUNK_SIZE, checkByteLimit, checkChunkSize, checkPath, fileError, messageOf, throwIfAborted, withCleanupFailure } from './file-checks.js';

/*
 * Bounded reads: a regular file opened without following links (or hanging on a FIFO), read
 * in chunks, never more than the caller allows (errors mapped as in atomic-file.ts).
 */

export interface ReadFileOptions {
  /** Refuse a symbolic link in the last path component instead of following it (default `true`). */
  noFollow?: boolean;
  signal?: AbortSignal;
  /**
   * Bytes per read (default 64 KiB). Above 64 KiB, a read asks for no more than the file's
   * size at open says is left (nor less than 64 KiB): see readSize.
   */
  chunkSize?: number;
  /** How the file is named in error messages (default `"file"`), e.g. `"manifest"`. */
  what?: string;
}

export async function closeHandle(fh: FileHandle, file: string, what: string, primary: { error: unknown } | undefined): Promise<void> {
  try {
    await fh.close();
  } catch (closeError) {
    if (primary !== undefined) throw withCleanupFailure(primary.error, closeError, `closing ${file}`);
    throw new HotPatchError('IO', `cannot close ${what} ${file}: ${messageOf(closeError)}`, { cause: closeError });
  }
}

// --- reading ---

/**
 * Bytes to ask the next read for: `chunkSize`, never more than the caller still allows, and
 * never much more than the file's size at open says is left (but at least DEFAULT_CHUNK_SIZE,
 * so that a file that grew meanwhile, or reports no size like /proc files, is still read in
 * sizeable reads). A chunk size of 1 MiB thus does not allocate a 1 MiB buffer for a file of a
 * few hundred bytes, nor hand out a small view that keeps such a buffer alive. With a chunk
 * size up to DEFAULT_CHUNK_SIZE this is simply min(chunkSize, allowed).
 */
function readSize(chunkSize: number, allowed: number, sizeAtOpen: number, offset: number): number {
  return Math.min(chunkSize, allowed, Math.max(sizeAtOpen - offset, DEFAULT_CHUNK_SIZE));
}

/**
 * One read of at most `want` bytes into a fresh, unpooled buffer (consumers may keep chunks,
 * and a view into a shared pool would expose unrelated bytes through `.buffer`): the bytes
 * read, or undefined at the end of the file.
 */
async function readChunk(handle: FileHandle, want: number, file: string, what: string): Promise<Uint8Array | undefined> {
  const buffer = new Uint8Array(want);
  let bytesRead: number;
  try {
    ({ bytesRead } = await handle.read(buffer, 0, want, null));
  } catch (error) {
    throw fileError(error, 'read', file, what);
  }
  if (bytesRead === 0) return undefined;
  return bytesRead === want ? buffer : buffer.subarray(0, bytesRead);
}

/**
 * Opens `file` read-only and makes sure it is a regular file. `O_NONBLOCK` keeps a FIFO from
 * hanging the open (it is then refused by the fstat check); `O_NOFOLLOW` refuses a link in
 * the last component. Returns the handle and its size at open time.
 */
export async function openRegularFile(file: string, options: { noFollow?: boolean; what?: string } = {}): Promise<{ handle: FileHandle; size: number }> {
  const noFollow = options.noFollow ?? true;
  const what = options.what ?? 'file';
  const flags = constants.O_RDONLY | constants.O_NONBLOCK | (noFollow ? constants.O_NOFOLLOW : 0);
  let handle: FileHandle;
  try {
    handle = await fsp.open(file, flags);
  } catch (error) {
    throw fileError(error, 'open', file, what, noFollow);
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) {
      throw new HotPatchError('INVALID', `${what} ${file} is not a regular file`);
    }
    return { handle, size: st.size };
  } catch (error) {
    const primary = fileError(error, 'stat', file, what, noFollow);
    await closeHandle(handle, file, what, { error: primary });
    throw primary;
  }
}

/**
 * The bytes of a regular file, as chunks, never more than `maxBytes` in all: reading stops
 * there even when the file is longer (the caller asks for `limit + 1` to detect that). The
 * file is opened on the first `next()`; it is closed when the data ends, on error, on abort
 * and when the consumer stops early (`break` / `return()`).
 */
export async function* readFileChunks(file: string, maxBytes: number, options: ReadFileOptions = {}): AsyncGenerator<Uint8Array, void, undefined> {
  checkPath(file, 'path');
  checkByteLimit(maxBytes, 'maxBytes');
  const chunkSize = checkChunkSize(options.chunkSize);
  const what = options.what ?? 'file';
  const { signal } = options;
  throwIfAborted(signal, `reading ${what} ${file}`);
  const { handle, size } = await openRegularFile(file, { noFollow: options.noFollow ?? true, what });
  let failure: { error: unknown } | undefined;
  try {
    let remaining = maxBytes;
    while (remaining > 0) {
      throwIfAborted(signal, `reading ${what} ${file}`);
      const chunk = await readChunk(handle, readSize(chunkSize, remaining, size, maxBytes - remaining), file, what);
      if (chunk === undefined) break;
      remaining -= chunk.length;
      yield chunk;
    }
  } catch (error) {
    failure = { error };
    throw error;
  } finally {
    await closeHandle(handle, file, what, failure);
  }
}

/**
 * The whole content of a regular file of at most `maxBytes` bytes. A larger file fails with
 * `TOO_LARGE` without being read whole: its size is checked at open, and reading stops at
 * `maxBytes + 1` bytes in case it grew (or, like /proc files, reports no size).
 */
export async function readFileBounded(file: string, maxBytes: number, options: ReadFileOptions = {}): Promise<Uint8Array> {
  checkPath(file, 'path');
  checkByteLimit(maxBytes, 'maxBytes');
  if (maxBytes >= Number.MAX_SAFE_INTEGER) {
    throw new HotPatchError('INVALID', `maxBytes must be below ${Number.MAX_SAFE_INTEGER}, got ${maxBytes}`);
  }
  const chunkSize = checkChunkSize(options.chunkSize);
  const what = options.what ?? 'file';
  const noFollow = options.noFollow ?? true;
  const tooLarge = (size?: number): HotPatchError =>
    new HotPatchError('TOO_LARGE', `${what} ${file} is larger than the limit of ${maxBytes} bytes` + (size === undefined ? '' : ` (it has ${size} bytes)`), {
      detail: size === undefined ? { limit: maxBytes } : { limit: maxBytes, size },
    });
  throwIfAborted(options.signal, `reading ${what} ${file}`);
  const { handle, size } = await openRegularFile(file, { noFollow, what });
  let failure: { error: unknown } | undefined;
  try {
    if (size > maxBytes) throw tooLarge(size);
    const chunks: Uint8Array[] = [];
    let total = 0;
    const limit = maxBytes + 1;
    while (total < limit) {
      throwIfAborted(options.signal, `reading ${what} ${file}`);
      const chunk = await readChunk(handle, readSize(chunkSize, limit - total, size, total), file, what);
      if (chunk === undefined) break;
      chunks.push(chunk);
      total += chunk.length;
    }
    if (total > maxBytes) throw tooLarge();
    return concatBytes(chunks, total);
  } catch (error) {
    failure = { error };
    throw error;
  } finally {
    await closeHandle(handle, file, what, failure);
  }
}

export function concatBytes(chunks: readonly Uint8Array[], total?: number): Uint8Array {
  if (chunks.length === 1 && chunks[0] !== undefined) return chunks[0];
  const out = new Uint8Array(total ?? chunks.reduce((n, c) => n + c.length, 0));
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

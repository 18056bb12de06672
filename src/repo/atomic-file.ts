import { createHash, randomBytes } from 'node:crypto';
import { constants, promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { HotPatchError, describe } from '../core/index.js';
import { closeHandle, readFileChunks } from './bounded-read.js';
import { checkByteLimit, checkMode, checkPath, errnoOf, fileError, messageOf, throwIfAborted, withCleanupFailure } from './file-checks.js';

/**
 * Crash-safe and bounded file primitives shared by the repository, the installer, the state
 * files and the CLI (docs/ARCHITECTURE.md "Crash-safety rules": write temp, fsync, rename,
 * fsync the directory).
 *
 * Error mapping, the same everywhere:
 * - `ENOENT` on a read → `NOT_FOUND`;
 * - a symbolic link where none is followed (`ELOOP` under `O_NOFOLLOW`), or anything that is
 *   not a regular file (directory, FIFO, socket, device) → `INVALID`;
 * - more bytes than allowed → `TOO_LARGE`;
 * - an aborted signal → `ABORTED`;
 * - any other file-system failure → `IO`, with the original error as `cause`.
 */

/** What `writeFileAtomic` accepts: bytes, UTF-8 text, or a (possibly async) stream of chunks. */
export type AtomicWriteData = Uint8Array | string | Iterable<Uint8Array> | AsyncIterable<Uint8Array>;

export interface WriteFileAtomicOptions {
  /**
   * Permission bits of the new file, applied exactly (not masked by the umask). Without it an
   * existing file keeps its mode and a new one gets `0o666` minus the umask.
   */
  mode?: number;
  /** Checked before every chunk and once more just before the rename commits the file. */
  signal?: AbortSignal;
}

export interface CopyFileAtomicOptions extends WriteFileAtomicOptions {
  /** Largest source accepted; a longer source fails with `TOO_LARGE` and nothing is written. */
  maxBytes?: number;
  /** Refuse a source that is a symbolic link (default `true`). */
  noFollow?: boolean;
  chunkSize?: number;
}

/** Size and SHA-256 (lowercase hex) of bytes, as computed while they were copied. */
export interface FileDigest {
  size: number;
  sha256: string;
}

// --- argument checks (every public input checked, the argument named) ---

function isIterableData(value: unknown): value is Iterable<Uint8Array> | AsyncIterable<Uint8Array> {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as { [Symbol.iterator]?: unknown; [Symbol.asyncIterator]?: unknown };
  return typeof v[Symbol.asyncIterator] === 'function' || typeof v[Symbol.iterator] === 'function';
}

// --- writing ---

/**
 * Refuses a destination that exists as a symbolic link or as anything but a regular file
 * (`INVALID`); returns the permission bits of an existing regular file, else `undefined`.
 */
export async function checkWritableTarget(file: string, what = 'file'): Promise<number | undefined> {
  let st;
  try {
    st = await fsp.lstat(file);
  } catch (error) {
    if (errnoOf(error) === 'ENOENT') return undefined;
    throw fileError(error, 'stat', file, what, false);
  }
  if (st.isSymbolicLink()) {
    throw new HotPatchError('INVALID', `${what} ${file} is a symbolic link; refusing to write through it`);
  }
  if (!st.isFile()) {
    throw new HotPatchError('INVALID', `${what} ${file} exists and is not a regular file`);
  }
  return st.mode & 0o7777;
}

async function writeAll(handle: FileHandle, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, offset, bytes.length - offset, null);
    if (bytesWritten <= 0) throw new Error(`write made no progress at byte ${offset} of ${bytes.length}`);
    offset += bytesWritten;
  }
}

async function writeData(handle: FileHandle, data: AtomicWriteData, signal: AbortSignal | undefined, target: string): Promise<void> {
  if (typeof data === 'string') {
    await writeAll(handle, Buffer.from(data, 'utf8'));
    return;
  }
  if (data instanceof Uint8Array) {
    await writeAll(handle, data);
    return;
  }
  let index = 0;
  for await (const chunk of data) {
    throwIfAborted(signal, `writing ${target}`);
    if (!(chunk instanceof Uint8Array)) {
      throw new HotPatchError('INVALID', `data chunk ${index} must be a Uint8Array, got ${describe(chunk)}`);
    }
    await writeAll(handle, chunk);
    index += 1;
  }
}

/** fsync a directory so that a rename inside it survives a crash. */
export async function fsyncDirectory(dir: string): Promise<void> {
  let handle: FileHandle;
  try {
    handle = await fsp.open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  } catch (error) {
    throw new HotPatchError('IO', `cannot open directory ${dir} to sync it: ${messageOf(error)}`, { cause: error });
  }
  let failure: { error: unknown } | undefined;
  try {
    await handle.sync();
  } catch (error) {
    failure = { error: new HotPatchError('IO', `cannot sync directory ${dir}: ${messageOf(error)}`, { cause: error }) };
    throw failure.error;
  } finally {
    await closeHandle(handle, dir, 'directory', failure);
  }
}

/**
 * Replaces `file` with `data` so that a crash leaves either the old or the new content, never
 * a mix: step 1 refuse a link or non-regular destination; step 2 create a uniquely named temp
 * file beside it (`O_CREAT|O_EXCL|O_WRONLY`); step 3 write everything and fsync; step 4 rename
 * over the destination; step 5 fsync the directory. On failure before the rename the temp file
 * is removed and the old content stays. Errors: `INVALID` (bad arguments, link or non-regular
 * destination), `ABORTED`, the code of a `HotPatchError` thrown by a chunk source, else `IO`.
 *
 * The link check and the rename are not one atomic step, but rename(2) replaces a link that
 * appears in between rather than writing through it, so no file outside is ever modified.
 */
export async function writeFileAtomic(file: string, data: AtomicWriteData, options: WriteFileAtomicOptions = {}): Promise<void> {
  const target = checkWriteArguments(file, data, options);
  // step 1
  const existingMode = await checkWritableTarget(target);
  await writeThroughTemp(target, data, options.mode ?? existingMode, options.signal, async (temp) => {
    // step 4
    await fsp.rename(temp, target);
  });
}

/**
 * Creates `file` with `data`, never replacing anything: if the name exists (even as a dangling
 * link) this fails with `INVALID` (`detail.exists`). The content is written to a temp file and
 * fsynced first, then hard-linked into place with link(2), which refuses an existing name
 * atomically; so a crash never leaves a half-written file under the final name (keys, say).
 */
export async function writeFileExclusive(file: string, data: AtomicWriteData, options: WriteFileAtomicOptions = {}): Promise<void> {
  const target = checkWriteArguments(file, data, options);
  const exists = (): HotPatchError => new HotPatchError('INVALID', `${target} already exists; refusing to overwrite it`, { detail: { exists: true } });
  try {
    await fsp.lstat(target);
    throw exists();
  } catch (error) {
    if (error instanceof HotPatchError) throw error;
    if (errnoOf(error) !== 'ENOENT') throw fileError(error, 'stat', target, 'file', false);
  }
  await writeThroughTemp(target, data, options.mode, options.signal, async (temp) => {
    try {
      await fsp.link(temp, target);
    } catch (error) {
      if (errnoOf(error) === 'EEXIST') throw exists();
      throw error;
    }
    try {
      await fsp.unlink(temp);
    } catch (error) {
      // The target is complete; only a stray temp name is left. Still an error, not dropped.
      throw new HotPatchError('IO', `created ${target} but cannot remove its temporary file ${temp}: ${messageOf(error)}`, {
        cause: error,
      });
    }
  });
}

function checkWriteArguments(file: unknown, data: unknown, options: WriteFileAtomicOptions): string {
  checkPath(file, 'path');
  if (typeof data !== 'string' && !(data instanceof Uint8Array) && !isIterableData(data)) {
    throw new HotPatchError('INVALID', `data must be a Uint8Array, a string or an iterable of Uint8Array chunks, got ${describe(data)}`);
  }
  if (typeof options !== 'object' || options === null) {
    throw new HotPatchError('INVALID', `options must be an object, got ${describe(options)}`);
  }
  checkMode(options.mode);
  const target = path.resolve(file as string);
  throwIfAborted(options.signal, `writing ${target}`);
  return target;
}

/**
 * Steps 2, 3 and 5 shared by the writers: temp file beside `target`, write all, fsync, close,
 * `commit(temp)`, fsync the directory. Before a successful commit, any failure removes the
 * temp file; a cleanup failure is attached to the primary error, never dropped.
 */
async function writeThroughTemp(
  target: string,
  data: AtomicWriteData,
  mode: number | undefined,
  signal: AbortSignal | undefined,
  commit: (temp: string) => Promise<void>,
): Promise<void> {
  const dir = path.dirname(target);
  // step 2
  const temp = path.join(dir, `.${path.basename(target)}.${process.pid}.${randomBytes(8).toString('hex')}.tmp`);
  let handle: FileHandle | undefined;
  try {
    handle = await fsp.open(temp, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY | constants.O_NOFOLLOW, mode ?? 0o666);
  } catch (error) {
    throw new HotPatchError('IO', `cannot create a temporary file in ${dir} for ${target}: ${messageOf(error)}`, { cause: error });
  }
  let committed = false;
  try {
    // open(2) masks the mode with the umask; an explicit or inherited mode is applied exactly.
    if (mode !== undefined) await handle.chmod(mode);
    // step 3
    await writeData(handle, data, signal, target);
    await handle.sync();
    const h = handle;
    handle = undefined;
    await h.close();
    throwIfAborted(signal, `writing ${target}`);
    await commit(temp);
    committed = true;
  } catch (error) {
    const primary = error instanceof HotPatchError ? error : new HotPatchError('IO', `cannot write ${target}: ${messageOf(error)}`, { cause: error });
    let combined: HotPatchError = primary;
    if (handle !== undefined) {
      try {
        await handle.close();
      } catch (closeError) {
        combined = withCleanupFailure(combined, closeError, `closing ${temp}`);
      }
    }
    if (!committed) {
      try {
        await fsp.unlink(temp);
      } catch (unlinkError) {
        if (errnoOf(unlinkError) !== 'ENOENT') combined = withCleanupFailure(combined, unlinkError, `removing ${temp}`);
      }
    }
    throw combined;
  }
  // step 5
  await fsyncDirectory(dir);
}

/**
 * Streams `source` into `destination` atomically (see `writeFileAtomic`), computing size and
 * SHA-256 on the way; never holds the whole file in memory. A source longer than `maxBytes`
 * fails with `TOO_LARGE` and leaves the destination as it was.
 */
export async function copyFileAtomic(source: string, destination: string, options: CopyFileAtomicOptions = {}): Promise<FileDigest> {
  checkPath(source, 'source');
  checkPath(destination, 'destination');
  const maxBytes = options.maxBytes === undefined ? Number.MAX_SAFE_INTEGER - 1 : checkByteLimit(options.maxBytes, 'maxBytes');
  if (maxBytes >= Number.MAX_SAFE_INTEGER) {
    throw new HotPatchError('INVALID', `maxBytes must be below ${Number.MAX_SAFE_INTEGER}, got ${maxBytes}`);
  }
  const digest = digestingStream(
    readFileChunks(source, maxBytes + 1, {
      noFollow: options.noFollow ?? true,
      what: 'source',
      ...(options.chunkSize === undefined ? {} : { chunkSize: options.chunkSize }),
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    }),
    { maxBytes, what: `source ${source}` },
  );
  await writeFileAtomic(destination, digest.chunks, {
    ...(options.mode === undefined ? {} : { mode: options.mode }),
    ...(options.signal === undefined ? {} : { signal: options.signal }),
  });
  return digest.result();
}

export interface DigestingStream {
  chunks: AsyncIterable<Uint8Array>;
  /** Size and SHA-256 of everything that went through; valid once `chunks` has ended. */
  result(): FileDigest;
}

/**
 * Passes chunks through while hashing and counting them. More than `maxBytes` in all throws
 * `TOO_LARGE`; `onEnd` runs after the last chunk (still inside the stream, so a writer that
 * consumes it fails before committing anything).
 */
export function digestingStream(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  options: { maxBytes: number; what: string; onEnd?: (digest: FileDigest) => void },
): DigestingStream {
  const hash = createHash('sha256');
  let size = 0;
  let done: FileDigest | undefined;
  async function* pass(): AsyncGenerator<Uint8Array, void, undefined> {
    for await (const chunk of source) {
      size += chunk.length;
      if (size > options.maxBytes) {
        throw new HotPatchError('TOO_LARGE', `${options.what} is larger than the limit of ${options.maxBytes} bytes`, {
          detail: { limit: options.maxBytes },
        });
      }
      hash.update(chunk);
      yield chunk;
    }
    done = { size, sha256: hash.digest('hex') };
    options.onEnd?.(done);
  }
  return {
    chunks: pass(),
    result(): FileDigest {
      if (done === undefined) throw new Error('digestingStream: result() read before the stream ended');
      return done;
    },
  };
}

/**
 * Removes the temp files `writeFileAtomic` left beside `dir/baseName` when a process died
 * mid-write (`.<baseName>.<pid>.<random>.tmp`). Only call it while no writer of that file
 * runs (at open): a live writer's temp file would go too.
 */
export async function removeStaleTempFiles(dir: string, baseName: string): Promise<void> {
  let names: string[];
  try {
    names = await fsp.readdir(dir);
  } catch (cause) {
    throw new HotPatchError('IO', `cannot list directory ${dir}: ${(cause as Error).message}`, { cause });
  }
  for (const name of names) {
    if (!name.startsWith(`.${baseName}.`) || !name.endsWith('.tmp')) continue;
    try {
      await fsp.unlink(path.join(dir, name));
    } catch (cause) {
      if (errnoOf(cause) !== 'ENOENT') {
        throw new HotPatchError('IO', `cannot remove stale temp file ${name}: ${(cause as Error).message}`, { cause });
      }
    }
  }
}

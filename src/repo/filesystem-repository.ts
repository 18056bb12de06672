import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { HotPatchError, decodeEnvelope, describe, isPatchId, parsePatchId, type PatchId, type PatchRepository } from '../core/index.js';
import { checkWritableTarget, digestingStream, writeFileAtomic, type FileDigest } from './atomic-file.js';
import { concatBytes, readFileBounded, readFileChunks } from './bounded-read.js';
import { checkByteLimit, checkChunkSize, fileError, throwIfAborted } from './file-checks.js';
import { readAhead } from './read-ahead.js';

/** Largest manifest (`<id>.json`) read by default: 1 MiB. */
export const DEFAULT_MAX_MANIFEST_BYTES = 1024 * 1024;

/** Largest `index.json` read: 8 MiB (an index lists every patch id with a few fields). */
export const MAX_INDEX_BYTES = 8 * 1024 * 1024;

/** `index.json` is the repository index: `index` is never a patch of a repository directory. */
export const INDEX_NAME = 'index';

/**
 * A repository's default chunk size: 1 MiB. Payloads are read in reads this large, one read
 * ahead (read-ahead.ts): at 64 KiB the thread pool round trip of each read, not hashing, set
 * the pace of verifyPatch and of staging (about 0.4-0.7× node's createReadStream(1 MiB) +
 * createHash on the same file). A small file is still not given a 1 MiB buffer (bounded-read.ts
 * sizes a read by what the file's size at open says is left).
 */
export const DEFAULT_REPOSITORY_CHUNK_SIZE = 1024 * 1024;

export interface FileSystemRepositoryOptions {
  /** Largest `<id>.json` accepted (default 1 MiB); a larger one is `TOO_LARGE`, never read whole. */
  maxManifestBytes?: number;
  /** Bytes per payload chunk and per read (default 1 MiB). */
  chunkSize?: number;
}

/** A payload given to `publish` / `writePayload`: bytes, or a file that is streamed in. */
export type PayloadSource = Uint8Array | { fromFile: string };

export interface WritePayloadOptions {
  signal?: AbortSignal;
  /** Refuse (`TOO_LARGE`, nothing written) a payload longer than this. */
  maxBytes?: number;
  /** Refuse (`SIZE_MISMATCH`, nothing written) a payload of another size. */
  expectedSize?: number;
  /** Refuse (`HASH_MISMATCH`, nothing written) a payload with another SHA-256 (hex, any case). */
  expectedSha256?: string;
}

const HEX_SHA256 = /^[0-9a-fA-F]{64}$/;

/**
 * The seed's `repo.filesystem`: `<root>/<id>.json` (a DSSE envelope) and `<root>/<id>.bin`
 * (the payload), docs/ARCHITECTURE.md "Repository layout".
 *
 * Reading is bounded and never follows a link: every id is checked with `parsePatchId`
 * before any file is touched; files are opened `O_NOFOLLOW|O_NONBLOCK` and must be regular
 * files. Writing is crash-safe (temp, fsync, rename, directory fsync) and refuses to replace
 * a link. The root must exist; it is resolved with realpath once, at first use.
 */
export class FileSystemRepository implements PatchRepository {
  readonly root: string;
  readonly maxManifestBytes: number;
  readonly chunkSize: number;
  #resolvedRoot: string | undefined;

  constructor(root: string, options: FileSystemRepositoryOptions = {}) {
    if (typeof root !== 'string' || root.length === 0 || root.includes('\0')) {
      throw new HotPatchError('INVALID', `repository root must be a non-empty path without NUL, got ${describe(root)}`);
    }
    if (typeof options !== 'object' || options === null) {
      throw new HotPatchError('INVALID', `repository options must be an object, got ${describe(options)}`);
    }
    this.root = root;
    this.maxManifestBytes = options.maxManifestBytes === undefined ? DEFAULT_MAX_MANIFEST_BYTES : checkByteLimit(options.maxManifestBytes, 'maxManifestBytes');
    if (this.maxManifestBytes >= Number.MAX_SAFE_INTEGER) {
      throw new HotPatchError('INVALID', `maxManifestBytes must be below ${Number.MAX_SAFE_INTEGER}`);
    }
    this.chunkSize = options.chunkSize === undefined ? DEFAULT_REPOSITORY_CHUNK_SIZE : checkChunkSize(options.chunkSize, 'chunkSize');
  }

  /** The raw bytes of `<id>.json`; the verifier parses them. */
  async fetchEnvelope(id: PatchId, signal?: AbortSignal): Promise<Uint8Array> {
    const patchId = parsePatchId(id);
    throwIfAborted(signal, `fetching manifest ${patchId}`);
    const file = await this.#fileOf(patchId, '.json');
    return readFileBounded(file, this.maxManifestBytes, {
      noFollow: true,
      what: 'manifest',
      chunkSize: this.chunkSize,
      ...(signal === undefined ? {} : { signal }),
    });
  }

  /** The raw bytes of `<root>/index.json` (a signed repository index), at most MAX_INDEX_BYTES. */
  async fetchIndex(signal?: AbortSignal): Promise<Uint8Array> {
    throwIfAborted(signal, 'fetching the repository index');
    const file = await this.#fileOf(parsePatchId(INDEX_NAME), '.json');
    return readFileBounded(file, MAX_INDEX_BYTES, {
      noFollow: true,
      what: 'repository index',
      chunkSize: this.chunkSize,
      ...(signal === undefined ? {} : { signal }),
    });
  }

  /**
   * The chunks of `<id>.bin`, at most `maxBytes` bytes in all (reading stops there). The id
   * and `maxBytes` are checked at once (this throws synchronously); the file is opened on the
   * first `next()` and closed at the end, on error, on abort and when the consumer stops early.
   * The file is read in `chunkSize` reads, the next one always in flight while the consumer
   * works on the current chunk; every chunk is a fresh buffer the consumer may keep.
   */
  openPayload(id: PatchId, maxBytes: number, signal?: AbortSignal): AsyncIterable<Uint8Array> {
    const patchId = parsePatchId(id);
    checkByteLimit(maxBytes, 'maxBytes');
    return this.#payloadChunks(patchId, maxBytes, signal);
  }

  /**
   * The whole payload in one buffer. Unlike `openPayload` it does not cut silently: a payload
   * longer than `maxBytes` fails with `TOO_LARGE`.
   */
  async readPayload(id: PatchId, maxBytes: number, signal?: AbortSignal): Promise<Uint8Array> {
    const patchId = parsePatchId(id);
    checkByteLimit(maxBytes, 'maxBytes');
    if (maxBytes >= Number.MAX_SAFE_INTEGER) {
      throw new HotPatchError('INVALID', `maxBytes must be below ${Number.MAX_SAFE_INTEGER}, got ${maxBytes}`);
    }
    const chunks: Uint8Array[] = [];
    let total = 0;
    for await (const chunk of this.#payloadChunks(patchId, maxBytes + 1, signal)) {
      total += chunk.length;
      if (total > maxBytes) {
        throw new HotPatchError('TOO_LARGE', `payload ${patchId} is larger than the limit of ${maxBytes} bytes`, {
          detail: { limit: maxBytes },
        });
      }
      chunks.push(chunk);
    }
    return concatBytes(chunks, total);
  }

  /** Sorted ids whose `<id>.json` is a regular file (links and everything else are ignored). */
  async list(signal?: AbortSignal): Promise<PatchId[]> {
    throwIfAborted(signal, 'listing the repository');
    const root = await this.#root();
    let entries;
    try {
      entries = await fsp.readdir(root, { withFileTypes: true });
    } catch (error) {
      throw fileError(error, 'list', root, 'repository root', false);
    }
    throwIfAborted(signal, 'listing the repository');
    const ids: PatchId[] = [];
    for (const entry of entries) {
      // Dirent types come from lstat semantics: a link to a file is not `isFile()`.
      if (!entry.isFile() || !entry.name.endsWith('.json')) continue;
      const id = entry.name.slice(0, -'.json'.length);
      if (isPatchId(id) && id !== INDEX_NAME) ids.push(id);
    }
    return ids.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }

  /**
   * Writes `<id>.bin` then `<id>.json`, each atomically, so a reader never sees a manifest
   * whose payload is missing. Both destinations are checked first: if either exists as a
   * link (or as anything but a regular file) the call fails with `INVALID` and writes nothing.
   * The envelope must decode as a DSSE envelope (`PARSE` / `INVALID`) and fit in
   * `maxManifestBytes` (`TOO_LARGE`). Returns the payload's size and SHA-256 (hex), computed
   * while it was copied, when a payload was given; with `expectedSize` / `expectedSha256` a
   * payload that differs is refused (`SIZE_MISMATCH` / `HASH_MISMATCH`) and nothing is written.
   */
  async publish(id: PatchId, envelopeJson: string, payload: PayloadSource, options?: WritePayloadOptions): Promise<FileDigest>;
  async publish(id: PatchId, envelopeJson: string, payload?: undefined, options?: WritePayloadOptions): Promise<undefined>;
  async publish(id: PatchId, envelopeJson: string, payload?: PayloadSource, options: WritePayloadOptions = {}): Promise<FileDigest | undefined> {
    const patchId = writablePatchId(id);
    this.#checkEnvelope(patchId, envelopeJson);
    if (payload !== undefined) checkPayloadSource(payload);
    throwIfAborted(options.signal, `publishing ${patchId}`);
    const jsonFile = await this.#fileOf(patchId, '.json');
    const binFile = await this.#fileOf(patchId, '.bin');
    await checkWritableTarget(jsonFile, 'manifest');
    if (payload !== undefined) await checkWritableTarget(binFile, 'payload');
    const digest = payload === undefined ? undefined : await this.#writePayloadFile(patchId, binFile, payload, options);
    await writeFileAtomic(jsonFile, envelopeJson, options.signal === undefined ? {} : { signal: options.signal });
    return digest;
  }

  /**
   * Writes `<id>.bin` atomically and returns its size and SHA-256, computed while copying
   * (a file source is streamed, never loaded whole). With `expectedSize` / `expectedSha256`
   * a mismatch is refused before the rename, so the repository keeps its old payload.
   */
  async writePayload(id: PatchId, payload: PayloadSource, options: WritePayloadOptions = {}): Promise<FileDigest> {
    const patchId = writablePatchId(id);
    checkPayloadSource(payload);
    throwIfAborted(options.signal, `writing payload ${patchId}`);
    const binFile = await this.#fileOf(patchId, '.bin');
    await checkWritableTarget(binFile, 'payload');
    return this.#writePayloadFile(patchId, binFile, payload, options);
  }

  /** Replaces `<id>.json` atomically (the `sign` command adds a signature this way). */
  async writeEnvelope(id: PatchId, envelopeJson: string, signal?: AbortSignal): Promise<void> {
    const patchId = writablePatchId(id);
    this.#checkEnvelope(patchId, envelopeJson);
    throwIfAborted(signal, `writing manifest ${patchId}`);
    const jsonFile = await this.#fileOf(patchId, '.json');
    await checkWritableTarget(jsonFile, 'manifest');
    await writeFileAtomic(jsonFile, envelopeJson, signal === undefined ? {} : { signal });
  }

  /**
   * Replaces `<root>/index.json` atomically with a signed repository index (what `hotpatch
   * index` writes). The bytes must be a DSSE envelope of at most MAX_INDEX_BYTES.
   */
  async writeIndex(envelopeJson: string, signal?: AbortSignal): Promise<void> {
    const bytes = Buffer.byteLength(envelopeJson);
    if (bytes > MAX_INDEX_BYTES) throw new HotPatchError('TOO_LARGE', `the repository index is ${bytes} bytes, more than ${MAX_INDEX_BYTES}`);
    decodeEnvelope(envelopeJson);
    throwIfAborted(signal, 'writing the repository index');
    const file = await this.#fileOf(parsePatchId(INDEX_NAME), '.json');
    await checkWritableTarget(file, 'repository index');
    await writeFileAtomic(file, envelopeJson, signal === undefined ? {} : { signal });
  }

  /** Where `<id><ext>` lives; exposed for tools that print paths (the CLI). */
  async pathOf(id: PatchId, kind: 'manifest' | 'payload'): Promise<string> {
    return this.#fileOf(parsePatchId(id), kind === 'manifest' ? '.json' : '.bin');
  }

  /**
   * `<id>.bin` through readFileChunks (opened O_NOFOLLOW | O_NONBLOCK, a regular file or
   * refused, never more than `maxBytes`, closed on every exit), one read ahead. The read ahead
   * never goes past `maxBytes` (readFileChunks stops there), and it holds at most one chunk
   * beyond the one handed out. When the consumer stops, the read in flight is let finish and
   * the file is closed before its loop goes on.
   */
  async *#payloadChunks(id: PatchId, maxBytes: number, signal: AbortSignal | undefined): AsyncGenerator<Uint8Array, void, undefined> {
    throwIfAborted(signal, `reading payload ${id}`);
    const file = await this.#fileOf(id, '.bin');
    const chunks = readAhead(
      readFileChunks(file, maxBytes, {
        noFollow: true,
        what: 'payload',
        chunkSize: this.chunkSize,
        ...(signal === undefined ? {} : { signal }),
      }),
    );
    for await (const chunk of chunks) {
      // A chunk read ahead before an abort is not handed on after it: once the signal has
      // fired, the consumer gets ABORTED next, as without the read ahead.
      throwIfAborted(signal, `reading payload ${file}`);
      yield chunk;
    }
  }

  async #writePayloadFile(id: PatchId, binFile: string, payload: PayloadSource, options: WritePayloadOptions): Promise<FileDigest> {
    const maxBytes = options.maxBytes === undefined ? Number.MAX_SAFE_INTEGER - 1 : checkByteLimit(options.maxBytes, 'maxBytes');
    if (maxBytes >= Number.MAX_SAFE_INTEGER) {
      throw new HotPatchError('INVALID', `maxBytes must be below ${Number.MAX_SAFE_INTEGER}, got ${maxBytes}`);
    }
    const expectedSize = options.expectedSize === undefined ? undefined : checkByteLimit(options.expectedSize, 'expectedSize');
    let expectedSha256: string | undefined;
    if (options.expectedSha256 !== undefined) {
      if (typeof options.expectedSha256 !== 'string' || !HEX_SHA256.test(options.expectedSha256)) {
        throw new HotPatchError('INVALID', `expectedSha256 must be 64 hex digits, got ${describe(options.expectedSha256)}`);
      }
      expectedSha256 = options.expectedSha256.toLowerCase();
    }
    const { signal } = options;
    // A file source is followed if it is a link (the publisher named it, as with cp), but
    // it must be a regular file: no FIFO or device can feed an endless payload.
    const source: AsyncIterable<Uint8Array> | Iterable<Uint8Array> =
      payload instanceof Uint8Array
        ? [payload]
        : readFileChunks(payload.fromFile, maxBytes + 1, {
            noFollow: false,
            what: 'payload source',
            chunkSize: this.chunkSize,
            ...(signal === undefined ? {} : { signal }),
          });
    const stream = digestingStream(source, {
      maxBytes,
      what: `payload ${id}`,
      // Runs inside the stream, before writeFileAtomic fsyncs and renames: a mismatch
      // leaves the old payload in place.
      onEnd: (digest) => {
        if (expectedSize !== undefined && digest.size !== expectedSize) {
          throw new HotPatchError('SIZE_MISMATCH', `payload ${id} has ${digest.size} bytes, expected ${expectedSize}`, {
            detail: { expected: expectedSize, actual: digest.size },
          });
        }
        if (expectedSha256 !== undefined && digest.sha256 !== expectedSha256) {
          throw new HotPatchError('HASH_MISMATCH', `payload ${id} has SHA-256 ${digest.sha256}, expected ${expectedSha256}`, {
            detail: { expected: expectedSha256, actual: digest.sha256 },
          });
        }
      },
    });
    await writeFileAtomic(binFile, stream.chunks, signal === undefined ? {} : { signal });
    return stream.result();
  }

  #checkEnvelope(id: PatchId, envelopeJson: unknown): void {
    if (typeof envelopeJson !== 'string') {
      throw new HotPatchError('INVALID', `envelope of ${id} must be a JSON string, got ${describe(envelopeJson)}`);
    }
    const size = Buffer.byteLength(envelopeJson, 'utf8');
    if (size > this.maxManifestBytes) {
      throw new HotPatchError('TOO_LARGE', `envelope of ${id} has ${size} bytes, more than the limit of ${this.maxManifestBytes}`, {
        detail: { limit: this.maxManifestBytes, size },
      });
    }
    // Refuse to publish what fetchEnvelope's consumers could never decode.
    decodeEnvelope(envelopeJson);
  }

  /** realpath of the root, once; a failure is not cached (the root may appear later). */
  async #root(): Promise<string> {
    if (this.#resolvedRoot !== undefined) return this.#resolvedRoot;
    let resolved: string;
    try {
      resolved = await fsp.realpath(this.root);
    } catch (error) {
      throw fileError(error, 'resolve', this.root, 'repository root', false);
    }
    this.#resolvedRoot = resolved;
    return resolved;
  }

  async #fileOf(id: PatchId, ext: '.json' | '.bin'): Promise<string> {
    const root = await this.#root();
    const name = `${id}${ext}`;
    const file = path.join(root, name);
    // Defence in depth: a PatchId has no separator and no "..", so this always holds.
    const relative = path.relative(root, file);
    if (relative !== name || path.isAbsolute(relative) || relative.startsWith('..')) {
      throw new HotPatchError('INVALID', `patch id ${JSON.stringify(id)} names a file outside the repository root`);
    }
    return file;
  }
}

function checkPayloadSource(payload: unknown): asserts payload is PayloadSource {
  if (payload instanceof Uint8Array) return;
  if (typeof payload === 'object' && payload !== null && !Array.isArray(payload)) {
    const from = (payload as { fromFile?: unknown }).fromFile;
    if (typeof from === 'string' && from.length > 0 && !from.includes('\0')) return;
    throw new HotPatchError('INVALID', `payload.fromFile must be a non-empty path, got ${describe(from)}`);
  }
  throw new HotPatchError('INVALID', `payload must be a Uint8Array or { fromFile: path }, got ${describe(payload)}`);
}

/** A patch id the repository may write: `index` is its index's name, never a patch's. */
function writablePatchId(id: unknown): PatchId {
  const patchId = parsePatchId(id);
  if (patchId === INDEX_NAME) throw new HotPatchError('INVALID', `the patch id ${INDEX_NAME} is reserved: ${INDEX_NAME}.json is the repository index`);
  return patchId;
}

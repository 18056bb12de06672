import { promises as fsp } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { Readable } from 'node:stream';
import type { Fetcher, TargetFile, Updater } from 'tuf-js';
import { HotPatchError, describe, isHotPatchError, isPatchId, parsePatchId, type PatchId, type PatchRepository } from '../core/index.js';
import { writeFileAtomic } from './atomic-file.js';
import { readFileBounded, readFileChunks } from './bounded-read.js';
import { checkByteLimit, raceAbort } from './file-checks.js';
import { DEFAULT_MAX_MANIFEST_BYTES } from './filesystem-repository.js';
import { httpGetChunks, resolveHttpFetch, safeUrl, type HttpFetchOptions, type ResolvedHttpFetch } from './http-fetch.js';

export interface TufRepositoryOptions extends HttpFetchOptions {
  /** Where the TUF metadata is served (`root.json`, `<n>.root.json`, `timestamp.json`, …). */
  metadataUrl: string;
  /** Where the targets (`<id>.json`, `<id>.bin`) are served (default `<metadataUrl>targets/`). */
  targetsUrl?: string;
  /** The trusted root metadata (its bytes, or a file): the trust anchor, used until a newer root is verified. */
  trustedRoot: Uint8Array | string;
  /** Where tuf-js keeps the metadata it verified (and the files it downloads): kept across restarts. */
  cacheDir: string;
  /** Largest `<id>.json` accepted (default 1 MiB), whatever the targets metadata says. */
  maxManifestBytes?: number;
}

/** A refresh older than this is redone before a target is looked up (a new patch, a rotated key). */
const REFRESH_MS = 60_000;
/** Largest trusted root file read. */
const MAX_ROOT_BYTES = 1024 * 1024;

/**
 * A repository behind real TUF metadata (root, targets, snapshot, timestamp), read with
 * tuf-js: the patches are TUF targets `<id>.json` and `<id>.bin`, so an organisation that
 * already runs TUF publishes patches as it publishes anything else, and every defence TUF
 * gives — freeze, rollback, mix-and-match, endless data, key rotation through root
 * versions — applies before a byte reaches the verifier (which then checks the patch's own
 * signatures as from any repository). Fetches go through this project's bounded HTTP client
 * (stall and total deadlines, redirects, TLS with `ca`). `list()` reads the top-level targets.
 */
export class TufRepository implements PatchRepository {
  readonly metadataUrl: URL;
  readonly targetsUrl: URL;
  readonly cacheDir: string;
  readonly maxManifestBytes: number;
  readonly #fetch: ResolvedHttpFetch;
  readonly #trustedRoot: Uint8Array | string;
  #updater: { updater: Updater; at: number } | undefined;
  #refreshing: Promise<Updater> | undefined;

  constructor(options: TufRepositoryOptions) {
    this.metadataUrl = httpUrl(options?.metadataUrl, 'metadataUrl');
    this.targetsUrl = options.targetsUrl === undefined ? new URL('targets/', this.metadataUrl) : httpUrl(options.targetsUrl, 'targetsUrl');
    if (typeof options.cacheDir !== 'string' || options.cacheDir.length === 0) throw new HotPatchError('INVALID', 'TufRepository needs a cacheDir');
    if (!(options.trustedRoot instanceof Uint8Array) && typeof options.trustedRoot !== 'string') {
      throw new HotPatchError('INVALID', 'TufRepository needs the trusted root metadata (bytes or a file)');
    }
    this.cacheDir = options.cacheDir;
    this.maxManifestBytes = options.maxManifestBytes ?? DEFAULT_MAX_MANIFEST_BYTES;
    checkByteLimit(this.maxManifestBytes, 'maxManifestBytes');
    this.#trustedRoot = options.trustedRoot;
    this.#fetch = resolveHttpFetch(options);
  }

  async fetchEnvelope(id: PatchId, signal?: AbortSignal, accept?: (bytes: Uint8Array) => void): Promise<Uint8Array> {
    const patchId = parsePatchId(id);
    const file = await this.#download(`${patchId}.json`, this.maxManifestBytes, signal);
    const bytes = await readFileBounded(file, this.maxManifestBytes, { what: 'manifest' });
    accept?.(bytes);
    return bytes;
  }

  openPayload(id: PatchId, maxBytes: number, signal?: AbortSignal): AsyncIterable<Uint8Array> {
    const patchId = parsePatchId(id);
    checkByteLimit(maxBytes, 'maxBytes');
    return this.#payload(patchId, maxBytes, signal);
  }

  /** Patch ids whose `<id>.json` is a target of the top-level targets metadata, sorted. */
  async list(signal?: AbortSignal): Promise<PatchId[]> {
    await this.refresh(signal);
    const names = await this.#targetNames();
    return names
      .filter((n) => n.endsWith('.json'))
      .map((n) => n.slice(0, -'.json'.length))
      .filter((id): id is PatchId => isPatchId(id))
      .sort();
  }

  /**
   * Runs the TUF client workflow now (root rotations, timestamp, snapshot, targets). Concurrent
   * callers share one run; each caller's `signal` ends its own wait (the run itself is bounded
   * by the HTTP deadlines, and shared, so one caller's abort never fails another's).
   */
  refresh(signal?: AbortSignal): Promise<Updater> {
    this.#refreshing ??= this.#refresh().finally(() => {
      this.#refreshing = undefined;
    });
    return abortable(this.#refreshing, signal, 'refreshing the TUF metadata');
  }

  async *#payload(id: PatchId, maxBytes: number, signal: AbortSignal | undefined): AsyncGenerator<Uint8Array> {
    const file = await this.#download(`${id}.bin`, maxBytes, signal);
    yield* readFileChunks(file, maxBytes, { what: 'payload', ...(signal === undefined ? {} : { signal }) });
  }

  /** Downloads a target (tuf-js checks its length and hashes against the targets metadata) into the cache; its path. */
  async #download(name: string, maxBytes: number, signal: AbortSignal | undefined): Promise<string> {
    let updater = this.#updater !== undefined && Date.now() - this.#updater.at < REFRESH_MS ? this.#updater.updater : await this.refresh(signal);
    let info = await tufCall(() => updater.getTargetInfo(name), name);
    if (info === undefined && this.#updater?.updater === updater && this.#refreshing === undefined) {
      updater = await this.refresh(signal); // published since the last refresh?
      info = await tufCall(() => updater.getTargetInfo(name), name);
    }
    if (info === undefined) throw new HotPatchError('NOT_FOUND', `${name} is not a target of the TUF repository ${safeUrl(this.metadataUrl)}`);
    checkLength(info, name, maxBytes);
    const dir = path.join(this.cacheDir, 'targets');
    await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
    const found = info;
    return abortable(
      tufCall(() => updater.downloadTarget(found, path.join(dir, name), this.targetsUrl.href), name),
      signal,
      `downloading ${name}`,
    );
  }

  async #refresh(): Promise<Updater> {
    const metadataDir = path.join(this.cacheDir, 'metadata');
    await fsp.mkdir(metadataDir, { recursive: true, mode: 0o700 });
    const rootFile = path.join(metadataDir, 'root.json');
    // The trust anchor: written once; after that tuf-js keeps the newest root it verified.
    if (!(await exists(rootFile))) {
      const root =
        typeof this.#trustedRoot === 'string'
          ? await readFileBounded(this.#trustedRoot, MAX_ROOT_BYTES, { noFollow: false, what: 'trusted TUF root' })
          : this.#trustedRoot;
      await writeFileAtomic(rootFile, root, { mode: 0o600 });
    }
    const { Updater: TufUpdater } = await tufJs();
    const updater = new TufUpdater({
      metadataDir,
      metadataBaseUrl: this.metadataUrl.href,
      targetBaseUrl: this.targetsUrl.href,
      fetcher: await boundedFetcher(this.#fetch),
    });
    await tufCall(() => updater.refresh(), 'the metadata');
    this.#updater = { updater, at: Date.now() };
    return updater;
  }

  /** The top-level targets tuf-js verified and keeps in the cache (delegated targets are not listed). */
  async #targetNames(): Promise<string[]> {
    const bytes = await readFileBounded(path.join(this.cacheDir, 'metadata', 'targets.json'), 64 * 1024 * 1024, { what: 'TUF targets metadata' });
    const doc = JSON.parse(new TextDecoder().decode(bytes)) as { signed?: { targets?: Record<string, unknown> } };
    return Object.keys(doc.signed?.targets ?? {});
  }
}

function httpUrl(value: unknown, field: string): URL {
  let url: URL;
  try {
    url = new URL(String(value));
  } catch {
    throw new HotPatchError('INVALID', `${field} ${describe(String(value).slice(0, 200))} is not a URL`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new HotPatchError('INVALID', `${field} must be http(s), got ${url.protocol}`);
  if (!url.pathname.endsWith('/')) url.pathname += '/';
  return url;
}

function checkLength(info: TargetFile, name: string, maxBytes: number): void {
  // A payload is asked for with one byte to spare (payload_size + 1): the target must fit in it.
  if (info.length > maxBytes) {
    throw new HotPatchError('TOO_LARGE', `${name} is ${info.length} bytes by the TUF targets metadata, more than the ${maxBytes} allowed`, {
      detail: { limit: maxBytes },
    });
  }
}

async function exists(file: string): Promise<boolean> {
  return fsp.lstat(file).then(
    () => true,
    (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return false;
      throw new HotPatchError('IO', `cannot read ${file}: ${e.message}`, { cause: e });
    },
  );
}

type TufModule = typeof import('tuf-js');
let loaded: Promise<TufModule> | undefined;
/** tuf-js and its HTTP stack load only when a TUF repository is used (the CLI's start-up stays light). */
function tufJs(): Promise<TufModule> {
  loaded ??= import('tuf-js');
  return loaded;
}

/** tuf-js's own error for an HTTP status (it stops looking for newer roots on a 404). */
function httpStatusError(status: number): Error {
  const require = createRequire(import.meta.url);
  const { DownloadHTTPError } = require('tuf-js/dist/error.js') as { DownloadHTTPError: new (message: string, status: number) => Error };
  return new DownloadHTTPError(`HTTP ${status}`, status);
}

/** A tuf-js Fetcher over this project's bounded HTTP client. */
async function boundedFetcher(options: ResolvedHttpFetch): Promise<Fetcher> {
  const { BaseFetcher } = await tufJs();
  class BoundedFetcher extends BaseFetcher {
    async fetch(url: string): Promise<NodeJS.ReadableStream> {
      // tuf-js stops reading at the metadata's or target's length and throws: the stream is
      // then destroyed, which ends the request. The bound here only caps a runaway.
      const chunks = httpGetChunks(new URL(url), 2 ** 40, options, 'TUF file')[Symbol.asyncIterator]();
      let first: IteratorResult<Uint8Array>;
      try {
        first = await chunks.next();
      } catch (error) {
        if (isHotPatchError(error, 'NOT_FOUND')) throw httpStatusError(404);
        throw error;
      }
      return Readable.from(
        (async function* () {
          if (first.done === true) return;
          yield first.value;
          for (let next = await chunks.next(); next.done !== true; next = await chunks.next()) yield next.value;
        })(),
      );
    }
  }
  return new BoundedFetcher();
}

/** `work`, or ABORTED as soon as `signal` aborts (the work goes on, bounded by its deadlines). */
function abortable<T>(work: Promise<T>, signal: AbortSignal | undefined, what: string): Promise<T> {
  return signal === undefined ? work : raceAbort(work, signal, what);
}

/** Runs a tuf-js step, its errors as HotPatchErrors with this project's codes. */
async function tufCall<T>(step: () => Promise<T>, what: string): Promise<T> {
  try {
    return await step();
  } catch (error) {
    if (isHotPatchError(error)) throw error;
    const name = (error as Error)?.constructor?.name ?? 'Error';
    const message = `TUF: ${what}: ${name}: ${(error as Error)?.message ?? String(error)}`;
    throw new HotPatchError(TUF_CODES[name] ?? 'IO', message, { cause: error });
  }
}

const TUF_CODES: Readonly<Record<string, 'EXPIRED' | 'DOWNGRADE' | 'BAD_SIGNATURE' | 'HASH_MISMATCH' | 'TOO_LARGE' | 'NOT_FOUND' | 'INVALID'>> = {
  ExpiredMetadataError: 'EXPIRED',
  BadVersionError: 'DOWNGRADE',
  EqualVersionError: 'DOWNGRADE',
  UnsignedMetadataError: 'BAD_SIGNATURE',
  LengthOrHashMismatchError: 'HASH_MISMATCH',
  DownloadLengthMismatchError: 'TOO_LARGE',
  ValueError: 'INVALID',
  RepositoryError: 'INVALID',
};

import { HotPatchError, decodeEnvelope, describe, isPatchId, isPlainObject, parsePatchId, type PatchId, type PatchRepository } from '../core/index.js';
import { concatBytes } from './bounded-read.js';
import { checkByteLimit } from './file-checks.js';
import { DEFAULT_MAX_MANIFEST_BYTES, INDEX_NAME, MAX_INDEX_BYTES } from './filesystem-repository.js';
import { httpGetChunks, resolveHttpFetch, safeUrl, type HttpFetchOptions, type ResolvedHttpFetch } from './http-fetch.js';

export interface HttpRepositoryOptions extends HttpFetchOptions {
  /** Largest `<id>.json` accepted (default 1 MiB). */
  maxManifestBytes?: number;
}

/**
 * A repository served over HTTP(S) by any static server: `<base>/<id>.json` (the DSSE
 * envelope), `<base>/<id>.bin` (the payload) and `<base>/index.json` (which ids it holds:
 * `{ "patches": { "<id>": { … }, … } }`). Every read is bounded in bytes (a manifest by
 * `maxManifestBytes`, a payload by what the verifier asks: payload_size + 1) and in time (a
 * total deadline, and a stall deadline that abandons a mirror trickling a byte at a time),
 * redirects are limited and never downgrade https, TLS is verified (against `ca` when given),
 * and no URL in a message carries credentials or a query.
 */
export class HttpRepository implements PatchRepository {
  readonly base: URL;
  readonly maxManifestBytes: number;
  readonly #fetch: ResolvedHttpFetch;

  constructor(base: string | URL, options: HttpRepositoryOptions = {}) {
    let url: URL;
    try {
      url = new URL(String(base));
    } catch {
      throw new HotPatchError('INVALID', `repository URL ${describe(String(base).slice(0, 200))} is not a URL`);
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new HotPatchError('INVALID', `repository URL must be http(s), got ${url.protocol}`);
    if (!url.pathname.endsWith('/')) url.pathname += '/';
    this.base = url;
    this.maxManifestBytes = options.maxManifestBytes ?? DEFAULT_MAX_MANIFEST_BYTES;
    checkByteLimit(this.maxManifestBytes, 'maxManifestBytes');
    this.#fetch = resolveHttpFetch(options);
  }

  /** For messages: the base URL without credentials or query. */
  get label(): string {
    return safeUrl(this.base);
  }

  async fetchEnvelope(id: PatchId, signal?: AbortSignal): Promise<Uint8Array> {
    const patchId = parsePatchId(id);
    return this.#readAll(new URL(`${patchId}.json`, this.base), this.maxManifestBytes, `manifest ${patchId}`, signal);
  }

  openPayload(id: PatchId, maxBytes: number, signal?: AbortSignal): AsyncIterable<Uint8Array> {
    const patchId = parsePatchId(id);
    checkByteLimit(maxBytes, 'maxBytes');
    return httpGetChunks(new URL(`${patchId}.bin`, this.base), maxBytes, this.#fetch, `payload ${patchId}`, signal);
  }

  /** The raw bytes of `<base>/index.json`, at most MAX_INDEX_BYTES (more: TOO_LARGE, read no further). */
  fetchIndex(signal?: AbortSignal): Promise<Uint8Array> {
    return this.#readAll(new URL(`${INDEX_NAME}.json`, this.base), MAX_INDEX_BYTES, 'repository index', signal);
  }

  /**
   * Sorted ids listed by `index.json`: a plain listing `{ "patches": { id: … } }` or a signed
   * index (its payload read unverified here: only IndexedRepository trusts what it says).
   * Ids that are not patch ids are ignored.
   */
  async list(signal?: AbortSignal): Promise<PatchId[]> {
    const bytes = await this.fetchIndex(signal);
    let index: unknown;
    try {
      index = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
      if (isPlainObject(index) && typeof index.payloadType === 'string')
        index = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(decodeEnvelope(bytes).payload));
    } catch (error) {
      throw new HotPatchError('PARSE', `repository index at ${this.label}index.json is not JSON: ${(error as Error).message}`);
    }
    const patches = (index as { patches?: unknown } | null)?.patches;
    if (typeof patches !== 'object' || patches === null || Array.isArray(patches)) {
      throw new HotPatchError('INVALID', `repository index at ${this.label}index.json must be an object with "patches": { id: … }`);
    }
    return Object.keys(patches)
      .filter((id): id is PatchId => isPatchId(id) && id !== INDEX_NAME)
      .sort();
  }

  async #readAll(url: URL, maxBytes: number, what: string, signal?: AbortSignal): Promise<Uint8Array> {
    const chunks: Uint8Array[] = [];
    let total = 0;
    for await (const chunk of httpGetChunks(url, maxBytes, this.#fetch, what, signal, true)) {
      chunks.push(chunk);
      total += chunk.length;
    }
    return concatBytes(chunks, total);
  }
}

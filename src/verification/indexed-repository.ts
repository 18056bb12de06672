import {
  HotPatchError,
  decodeEnvelope,
  decodeJsonObject,
  integerInRange,
  isHotPatchError,
  parsePatchId,
  rejectUnknownFields,
  type ListedPatch,
  type MirroredSource,
  type PatchId,
  type PatchRepository,
} from '../core/index.js';
import type { CryptoPolicy } from '../crypto-agile/index.js';
import { readFileBounded, writeFileAtomic } from '../repo/index.js';
import { checkManifestAgainstIndex, verifyRepositoryIndex, type IndexEntry, type IndexFloor, type VerifiedIndex } from './repository-index.js';
import type { TrustStore } from './trust-store.js';

export interface IndexedRepositoryOptions {
  /** The trust store whose `index` role signs the index (a function: the verifier's current one, after rotations). */
  trustStore: TrustStore | (() => TrustStore);
  /**
   * Where the highest index accepted is kept (JSON, replaced atomically): a replayed older
   * index is refused across restarts too. Without it, only within this object's life.
   */
  floorFile?: string;
  /** Hold to the floor in `floorFile` without ever writing it (a checker beside the agent that owns it). */
  readOnlyFloor?: boolean;
  cryptoPolicy?: CryptoPolicy;
  /** Tolerated clock difference for the index's expiry (default 60 s). */
  clockSkewMs?: number;
}

const FLOOR_FIELDS = new Set(['version', 'hash', 'expires']);

/** The floor file's name in an agent's state directory. */
export const INDEX_FLOOR_FILE = 'repository-index.json';

/**
 * A repository (a directory, an HTTP server, a list of mirrors) read through its signed index:
 * `list()` is the index's patches, a manifest not listed there is NOT_FOUND, one that differs
 * from its entry is HASH_MISMATCH (a list of mirrors moves to the next), and the index itself
 * must be signed by the trust store's `index` role, unexpired, and never older than the
 * highest one accepted before (kept in `floorFile`). Payloads pass through unchanged: the
 * manifest that matched the index pins their size and hash, which verifyPatch checks.
 */
export class IndexedRepository implements PatchRepository {
  readonly inner: PatchRepository;
  readonly mirrored?: MirroredSource;
  readonly #options: IndexedRepositoryOptions;
  #current: VerifiedIndex | undefined;
  /** The highest index accepted (loaded from floorFile once). */
  #floor: IndexFloor | undefined;
  #refreshing: Promise<VerifiedIndex> | undefined;

  constructor(inner: PatchRepository, options: IndexedRepositoryOptions) {
    if (typeof inner?.fetchEnvelope !== 'function') throw new HotPatchError('INVALID', 'IndexedRepository needs a repository');
    if (options?.trustStore === undefined) throw new HotPatchError('INVALID', 'IndexedRepository needs the trust store with the index role');
    this.inner = inner;
    this.#options = options;
    if (inner.mirrored !== undefined) this.mirrored = inner.mirrored;
  }

  /** The index as last verified (undefined before the first read). */
  get current(): VerifiedIndex | undefined {
    return this.#current;
  }

  /** Reads and verifies the index now (one read at a time; concurrent callers share it). */
  refresh(signal?: AbortSignal): Promise<VerifiedIndex> {
    this.#refreshing ??= this.#read(signal).finally(() => {
      this.#refreshing = undefined;
    });
    return this.#refreshing;
  }

  async list(signal?: AbortSignal): Promise<PatchId[]> {
    return Object.keys((await this.refresh(signal)).index.patches)
      .sort()
      .map((id) => parsePatchId(id));
  }

  async listEntries(signal?: AbortSignal): Promise<ListedPatch[]> {
    const { patches } = (await this.refresh(signal)).index;
    return Object.keys(patches)
      .sort()
      .map((id) => ({ id: parsePatchId(id), target: patches[id]!.target, version: patches[id]!.version }));
  }

  async fetchEnvelope(id: PatchId, signal?: AbortSignal, accept?: (bytes: Uint8Array) => void): Promise<Uint8Array> {
    const patchId = parsePatchId(id);
    const { entry, version } = await this.#entry(patchId, signal);
    const matches = (bytes: Uint8Array): void => {
      checkManifestAgainstIndex(patchId, envelopePayload(patchId, bytes), entry, version);
      accept?.(bytes);
    };
    const bytes = await this.inner.fetchEnvelope(patchId, signal, matches);
    matches(bytes);
    return bytes;
  }

  openPayload(id: PatchId, maxBytes: number, signal?: AbortSignal): AsyncIterable<Uint8Array> {
    return this.inner.openPayload(id, maxBytes, signal);
  }

  fetchIndex(signal?: AbortSignal, accept?: (bytes: Uint8Array) => void): Promise<Uint8Array> {
    if (this.inner.fetchIndex === undefined) throw new HotPatchError('INVALID', 'this repository has no index');
    return this.inner.fetchIndex(signal, accept);
  }

  /** The entry of `id`: from the index held while it is fresh, else from a new read. */
  async #entry(id: PatchId, signal: AbortSignal | undefined): Promise<{ entry: IndexEntry; version: number }> {
    let current = this.#current;
    if (current === undefined || current.index.patches[id] === undefined || current.expiresMs <= Date.now()) current = await this.refresh(signal);
    const entry = current.index.patches[id];
    if (entry === undefined) {
      throw new HotPatchError('NOT_FOUND', `patch ${id} is not listed in the signed repository index (version ${current.index.version})`, { detail: { id } });
    }
    return { entry, version: current.index.version };
  }

  async #read(signal: AbortSignal | undefined): Promise<VerifiedIndex> {
    if (this.inner.fetchIndex === undefined) throw new HotPatchError('INVALID', 'this repository has no index, but the trust store requires a signed one');
    const floor = await this.#loadFloor();
    const check = (bytes: Uint8Array): VerifiedIndex => {
      const trust = typeof this.#options.trustStore === 'function' ? this.#options.trustStore() : this.#options.trustStore;
      return verifyRepositoryIndex(bytes, trust, {
        ...(floor === undefined ? {} : { floor }),
        ...(this.#options.cryptoPolicy === undefined ? {} : { cryptoPolicy: this.#options.cryptoPolicy }),
        ...(this.#options.clockSkewMs === undefined ? {} : { clockSkewMs: this.#options.clockSkewMs }),
      });
    };
    const verified = check(await this.inner.fetchIndex(signal, (bytes) => void check(bytes)));
    if (floor === undefined || verified.index.version > floor.version) await this.#saveFloor(verified);
    this.#current = verified;
    return verified;
  }

  /**
   * The highest index accepted: this object's, or the floor file's if higher. Read on every
   * refresh (and again before a write), so that two readers sharing the file never lower it.
   */
  async #loadFloor(): Promise<IndexFloor | undefined> {
    if (this.#options.floorFile === undefined) return this.#floor;
    const file = this.#options.floorFile;
    let bytes: Uint8Array;
    try {
      bytes = await readFileBounded(file, 64 * 1024, { noFollow: true, what: 'repository index floor' });
    } catch (error) {
      if (isHotPatchError(error, 'NOT_FOUND')) return this.#floor;
      throw error;
    }
    // A floor that cannot be read is never taken as "none": that would re-open rollback.
    let floor: IndexFloor;
    try {
      const obj = decodeJsonObject(bytes, 'repository index floor');
      rejectUnknownFields(obj, FLOOR_FIELDS, 'repository index floor');
      if (typeof obj.hash !== 'string' || !/^sha256:[0-9a-f]{64}$/.test(obj.hash)) throw new HotPatchError('INVALID', 'hash must be sha256:<hex>');
      floor = { version: integerInRange(obj.version, 'version', 1), hash: obj.hash };
    } catch (error) {
      throw new HotPatchError('INVALID', `repository index floor ${file} is unreadable (${(error as Error).message}); restore it or remove it knowingly`, {
        cause: error,
      });
    }
    if (this.#floor === undefined || floor.version > this.#floor.version) this.#floor = floor;
    return this.#floor;
  }

  async #saveFloor(verified: VerifiedIndex): Promise<void> {
    const floor = { version: verified.index.version, hash: verified.hash };
    const now = await this.#loadFloor();
    if (now !== undefined && now.version > floor.version) {
      throw new HotPatchError(
        'DOWNGRADE',
        `repository index version ${floor.version} is older than version ${now.version} accepted meanwhile: a replayed index`,
        {
          detail: { version: floor.version, floor: now.version },
        },
      );
    }
    if (now !== undefined && now.version === floor.version) return;
    if (this.#options.floorFile !== undefined && this.#options.readOnlyFloor !== true) {
      await writeFileAtomic(this.#options.floorFile, `${JSON.stringify({ ...floor, expires: verified.index.expires })}\n`, { mode: 0o600 });
    }
    this.#floor = floor;
  }
}

/** The manifest bytes an envelope carries (undecodable: HASH_MISMATCH, it cannot be the indexed one). */
function envelopePayload(id: PatchId, bytes: Uint8Array): Uint8Array {
  try {
    return decodeEnvelope(bytes).payload;
  } catch (error) {
    throw new HotPatchError('HASH_MISMATCH', `manifest ${id} is not an envelope, so not the one the signed index lists`, { cause: error });
  }
}

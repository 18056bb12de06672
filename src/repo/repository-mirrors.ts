import {
  HotPatchError,
  describe,
  isHotPatchError,
  messageOf,
  type ErrorCode,
  type MirrorFailure,
  type MirroredSource,
  type PatchId,
  type PatchRepository,
} from '../core/index.js';

/** One mirror of a RepositoryMirrors list. */
export interface Mirror {
  /** How it is named in failures and events (e.g. its URL without credentials). */
  name: string;
  repository: PatchRepository;
  /** Lower is tried first (default: its place in the list). */
  priority?: number;
}

/** One mirror that failed, and why (core's type, named here for this module's users). */
export type { MirrorFailure };

/**
 * Several repositories holding the same patches, tried in priority order. A mirror that fails
 * (down, a timeout, 5xx, not found, too large — or, through `verifyPatch`, a bad hash or
 * signature) is recorded with its reason and the next one is tried; a mirror that served a bad
 * file for a patch is never trusted again for that patch. The signatures make every mirror
 * untrusted storage: which one answers changes nothing about what is accepted.
 */
export class RepositoryMirrors implements PatchRepository {
  /** What verifyPatch uses to verify from each mirror in turn (kept by wrappers that forward it). */
  readonly mirrored: MirroredSource = this;
  readonly #mirrors: readonly Mirror[];
  /** patch id → the one mirror reads of it go to while verifyPatch tries that mirror. */
  readonly #pinned = new Map<string, string>();
  /** patch id → mirrors that served a bad file for it (excluded for that patch from then on). */
  readonly #bad = new Map<string, Set<string>>();
  /** patch id → the mirror a full verification succeeded from (read first for its payload). */
  readonly #good = new Map<string, string>();
  /** Every failure seen, newest last (bounded). */
  readonly failures: MirrorFailure[] = [];

  constructor(mirrors: readonly Mirror[]) {
    if (!Array.isArray(mirrors) || mirrors.length === 0) throw new HotPatchError('INVALID', `mirrors must be a non-empty list, got ${describe(mirrors)}`);
    const names = new Set<string>();
    mirrors.forEach((m, i) => {
      if (typeof m?.name !== 'string' || m.name.length === 0 || typeof m.repository?.fetchEnvelope !== 'function') {
        throw new HotPatchError('INVALID', `mirrors[${i}] must be { name, repository, priority? }`);
      }
      if (m.priority !== undefined && !Number.isFinite(m.priority))
        throw new HotPatchError('INVALID', `mirrors[${i}].priority must be a number, got ${describe(m.priority)}`);
      if (names.has(m.name)) throw new HotPatchError('INVALID', `mirrors[${i}]: the name ${m.name} is used twice`);
      names.add(m.name);
    });
    this.#mirrors = mirrors.map((m, i) => ({ ...m, priority: m.priority ?? i })).sort((a, b) => a.priority! - b.priority!);
  }

  /** The mirrors to try for `id`, best first: the one that verified it, then by priority, never one that served it a bad file. */
  order(id: string): Mirror[] {
    const pinned = this.#pinned.get(id);
    if (pinned !== undefined) return this.#mirrors.filter((m) => m.name === pinned);
    const bad = this.#bad.get(id);
    const good = this.#good.get(id);
    const usable = this.#mirrors.filter((m) => bad?.has(m.name) !== true);
    return good === undefined ? usable : [...usable.filter((m) => m.name === good), ...usable.filter((m) => m.name !== good)];
  }

  /** @internal verifyPatch: reads of `id` go to `mirror` only (undefined: back to every mirror). */
  pin(id: string, mirror: string | undefined): void {
    if (mirror === undefined) this.#pinned.delete(id);
    else this.#pinned.set(id, mirror);
  }

  /** @internal verifyPatch: the mirrors to verify `id` from, best first. */
  candidates(id: string): string[] {
    return this.order(id).map((m) => m.name);
  }

  /** @internal verifyPatch: `mirror` served a file for `id` that failed verification. */
  markBad(id: string, mirror: string): void {
    const set = this.#bad.get(id) ?? new Set<string>();
    set.add(mirror);
    this.#bad.set(id, set);
    if (this.#good.get(id) === mirror) this.#good.delete(id);
  }

  /** @internal verifyPatch: the whole verification of `id` succeeded from `mirror`. */
  markGood(id: string, mirror: string): void {
    this.#good.set(id, mirror);
  }

  /** @internal records a failure (bounded list). */
  record(mirror: string, error: unknown): MirrorFailure {
    const failure: MirrorFailure = { mirror, code: isHotPatchError(error) ? error.code : 'INTERNAL', reason: messageOf(error) };
    this.failures.push(failure);
    if (this.failures.length > 100) this.failures.shift();
    return failure;
  }

  fetchEnvelope(id: PatchId, signal?: AbortSignal, accept?: (bytes: Uint8Array) => void): Promise<Uint8Array> {
    return this.#first(id, async (r) => checked(await r.fetchEnvelope(id, signal, accept), accept));
  }

  /**
   * The first index that `accept` takes, mirrors in priority order: a mirror serving a stale,
   * replayed or forged index (or none) is recorded and the next one read.
   */
  async fetchIndex(signal?: AbortSignal, accept?: (bytes: Uint8Array) => void): Promise<Uint8Array> {
    const failed: MirrorFailure[] = [];
    for (const mirror of this.#mirrors) {
      try {
        if (mirror.repository.fetchIndex === undefined) throw new HotPatchError('NOT_FOUND', 'this kind of repository has no index');
        return checked(await mirror.repository.fetchIndex(signal, accept), accept);
      } catch (error) {
        if (!failsOver(error)) throw error;
        failed.push(this.record(mirror.name, error));
      }
    }
    throw allFailed('the repository index', failed);
  }

  async *openPayload(id: PatchId, maxBytes: number, signal?: AbortSignal): AsyncIterable<Uint8Array> {
    // A payload is failed over only before its first byte: after that, a broken stream is the
    // verifier's (or the stager's) to reject, and a retry starts from the next mirror.
    const failed: MirrorFailure[] = [];
    for (const mirror of this.order(id)) {
      const chunks = mirror.repository.openPayload(id, maxBytes, signal)[Symbol.asyncIterator]();
      let first: IteratorResult<Uint8Array>;
      try {
        first = await chunks.next();
      } catch (error) {
        if (!failsOver(error) || this.#pinned.has(id)) throw error;
        failed.push(this.record(mirror.name, error));
        continue;
      }
      if (first.done === true) return;
      yield first.value;
      for (let next = await chunks.next(); next.done !== true; next = await chunks.next()) yield next.value;
      return;
    }
    throw allFailed(`payload ${id}`, failed);
  }

  async list(signal?: AbortSignal): Promise<PatchId[]> {
    const ids = new Set<PatchId>();
    const failed: MirrorFailure[] = [];
    for (const mirror of this.#mirrors) {
      try {
        for (const id of await mirror.repository.list(signal)) ids.add(id);
      } catch (error) {
        if (!failsOver(error)) throw error;
        failed.push(this.record(mirror.name, error));
      }
    }
    if (ids.size === 0 && failed.length === this.#mirrors.length) throw allFailed('the list of patches', failed);
    return [...ids].sort();
  }

  async #first<T>(id: string, read: (repository: PatchRepository) => Promise<T>): Promise<T> {
    const failed: MirrorFailure[] = [];
    for (const mirror of this.order(id)) {
      try {
        return await read(mirror.repository);
      } catch (error) {
        // Pinned by verifyPatch to this one mirror: its own error, which verifyPatch records.
        if (!failsOver(error) || this.#pinned.has(id)) throw error;
        failed.push(this.record(mirror.name, error));
      }
    }
    throw allFailed(`${id}`, failed);
  }
}

/** Whether another mirror may do better: anything but an abort or a bug in the caller. */
export function failsOver(error: unknown): boolean {
  if (!isHotPatchError(error)) return true;
  return error.code !== 'ABORTED' && !(error.code === 'INVALID' && /patch id/.test(error.message));
}

/**
 * The error when every mirror failed: NOT_FOUND if none had it, else the first other failure's
 * code; each failure in the message and in `detail.failures`. `summary` says what failed (for
 * `n` mirrors), after `what`.
 */
export function allFailed(what: string, failed: readonly MirrorFailure[], summary = (n: number) => `every mirror failed (${n})`): HotPatchError {
  const notFound = failed.length > 0 && failed.every((f) => f.code === 'NOT_FOUND');
  const first = failed.find((f) => f.code !== 'NOT_FOUND') ?? failed[0];
  const code: ErrorCode = notFound ? 'NOT_FOUND' : first === undefined || first.code === 'INTERNAL' ? 'IO' : first.code;
  const list = failed.map((f) => `${f.mirror}: ${f.code} ${f.reason}`).join('; ');
  return new HotPatchError(code, `${what}: ${summary(failed.length)}: ${list}`, { detail: { failures: failed.map((f) => ({ ...f })) } });
}

/** `bytes`, once `accept` (when given) has taken them. */
function checked(bytes: Uint8Array, accept: ((bytes: Uint8Array) => void) | undefined): Uint8Array {
  accept?.(bytes);
  return bytes;
}

import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { HotPatchError } from '../core/index.js';
import { readFileBounded, removeStaleTempFiles, writeFileAtomic } from '../repo/index.js';
import { emptyState, parseStateFile, type StateFile } from './state-file.js';

const MAX_STATE_BYTES = 16 * 1024 * 1024;
/** Failed patch ids kept per target (the newest): the list must not grow without bound. */
export const MAX_FAILED_PER_TARGET = 1000;

/**
 * The one writer of `state.json`. Updates are serialised (a promise chain) and each is a
 * whole-file crash-safe write (temp, fsync, rename, fsync dir), so the file on disk is always
 * one complete state, old or new — never a mix. The in-memory copy changes only after the
 * write succeeded.
 */
export class StateStore {
  readonly dir: string;
  readonly path: string;
  #state: StateFile | undefined;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(stateDir: string) {
    this.dir = stateDir;
    this.path = join(stateDir, 'state.json');
  }

  /** Reads state.json (missing = empty). Leftover temp files of a crashed write are removed. */
  async load(): Promise<StateFile> {
    try {
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
    } catch (cause) {
      throw new HotPatchError('IO', `cannot create state directory ${this.dir}: ${(cause as Error).message}`, { cause });
    }
    await removeStaleTempFiles(this.dir, 'state.json');
    let bytes: Uint8Array | undefined;
    try {
      bytes = await readFileBounded(this.path, MAX_STATE_BYTES, { what: 'state file' });
    } catch (error) {
      if (!(error instanceof HotPatchError && error.code === 'NOT_FOUND')) throw error;
    }
    this.#state = bytes === undefined ? emptyState() : parseStateFile(bytes, this.path);
    return structuredClone(this.#state);
  }

  /** The last loaded or written state (loads on first use). */
  async read(): Promise<StateFile> {
    if (this.#state === undefined) return this.load();
    return structuredClone(this.#state);
  }

  /**
   * Applies `mutate` to a copy of the current state and writes it; concurrent updates run one
   * after another, each seeing the previous one's result.
   */
  update(mutate: (state: StateFile) => void): Promise<StateFile> {
    const run = async (): Promise<StateFile> => {
      const current = this.#state ?? (await this.load());
      const next = structuredClone(current);
      mutate(next);
      // Bounded here, in the one writer, so no caller can make state.json grow for ever.
      for (const t of Object.values(next.targets)) {
        if (t.failed.length > MAX_FAILED_PER_TARGET) t.failed = t.failed.slice(-MAX_FAILED_PER_TARGET);
      }
      next.updated_at = new Date().toISOString();
      await writeFileAtomic(this.path, `${JSON.stringify(next, null, 2)}\n`, { mode: 0o600 });
      this.#state = next;
      return structuredClone(next);
    };
    const result = this.#queue.then(run, run);
    this.#queue = result.catch(() => undefined); // the caller sees the failure; the queue goes on
    return result;
  }
}

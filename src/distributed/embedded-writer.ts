import { HotPatchError } from '../core/index.js';
import { type StoreState, Transaction, serialize } from './embedded-document.js';
import { WriterLock } from './embedded-lock.js';

/** Where and how an embedded store writes. */
export interface EmbeddedWriterOptions {
  /** `<dir>/store.json`. */
  file: string;
  /** `<dir>/store.lock`. */
  lockFile: string;
  lockStaleMs: number;
  lockTimeoutMs: number;
  maxFileBytes: number;
  /** Reads and checks `store.json` (counted by the store). */
  readState(): Promise<StoreState>;
}

/**
 * The embedded store's one way to change `store.json`: a locked read-modify-write cycle.
 *
 * Steps (see `embedded-lock.ts` for why they are safe even when a lock is broken under a
 * writer that is only paused): step 1 take the in-process mutex (one store never races
 * itself); step 2 take the cross-process lock (`store.lock`, created with `O_CREAT|O_EXCL`,
 * holding `{pid, time, token}`) and fence (remove every other writer's commit temp file);
 * step 3 re-read `store.json`; step 4 expire leases (delete their keys); step 5 apply; step 6
 * (only when something changed) write the new document to our own temp file and fsync it,
 * check the lock still holds our token, rename the temp onto `store.json` and fsync the
 * directory, so a reader sees the old or the new document, never a torn one; step 7 release
 * the lock (only if it still holds our token). A writer fenced at step 6 (its lock was broken
 * and another writer took it) has written nothing: it runs steps 2-7 again on the new state,
 * so a compare-and-swap is evaluated again, never applied to the state it read first. The
 * caller is answered only after the rename and the directory fsync.
 */
export class EmbeddedWriter {
  #mutex: Promise<void> = Promise.resolve();

  constructor(private readonly options: EmbeddedWriterOptions) {}

  /** Resolves once no cycle is running (a cycle started meanwhile is waited for too). */
  async settled(): Promise<void> {
    await this.#mutex;
  }

  /**
   * Runs one cycle. `apply` may throw; nothing is written then. `apply` must only change `tx`:
   * a fenced cycle runs it again.
   */
  async mutate<T>(apply: (tx: Transaction, now: number) => T): Promise<{ result: T; state: StoreState }> {
    const previous = this.#mutex;
    let unlock!: () => void;
    this.#mutex = new Promise<void>((resolve) => {
      unlock = resolve;
    });
    // step 1
    await previous;
    try {
      const { lockTimeoutMs, lockStaleMs, lockFile } = this.options;
      const deadline = Date.now() + lockTimeoutMs;
      for (let fenced = 1; ; fenced += 1) {
        const outcome = await this.#cycle(apply, deadline);
        if (outcome !== undefined) return outcome;
        // Our lock was broken under us (another writer may have committed since our read):
        // nothing was written, and the whole cycle runs again on the state as it is now.
        if (Date.now() > deadline) {
          throw new HotPatchError(
            'IO',
            `cannot write the store: ${lockFile} was broken under this writer ${fenced} time(s) in ${lockTimeoutMs} ms (a pause longer than lockStaleMs ${lockStaleMs} ms?); nothing written`,
            { detail: { lock: lockFile, fenced } },
          );
        }
      }
    } finally {
      unlock();
    }
  }

  /** Steps 2-7 once; undefined when this writer was fenced (nothing written). */
  async #cycle<T>(apply: (tx: Transaction, now: number) => T, deadline: number): Promise<{ result: T; state: StoreState } | undefined> {
    const { file, lockFile, lockStaleMs, lockTimeoutMs, maxFileBytes } = this.options;
    // step 2
    const lock = await WriterLock.acquire({ storeFile: file, lockFile, staleMs: lockStaleMs, deadline, timeoutMs: lockTimeoutMs });
    let outcome: { result: T; state: StoreState } | undefined;
    try {
      // step 3
      const state = await this.options.readState();
      const tx = new Transaction(state);
      const now = Date.now();
      // step 4
      tx.expire(now);
      // step 5
      const result = apply(tx, now);
      // step 6
      if (!tx.changed) {
        outcome = { result, state };
      } else {
        tx.commitEvents();
        const text = serialize(state);
        const size = Buffer.byteLength(text, 'utf8');
        if (size > maxFileBytes) {
          throw new HotPatchError('TOO_LARGE', `store file ${file} would grow to ${size} bytes, more than the limit of ${maxFileBytes}; nothing written`, {
            detail: { limit: maxFileBytes, size },
          });
        }
        if (await lock.commit(text)) outcome = { result, state };
      }
    } catch (error) {
      // step 7 (on failure): the primary error wins; a failing release is secondary
      await lock.release().catch(() => undefined);
      throw error;
    }
    // step 7
    await lock.release();
    return outcome;
  }
}

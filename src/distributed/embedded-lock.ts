import { randomBytes, randomInt } from 'node:crypto';
import { constants, promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { HotPatchError, isPlainObject } from '../core/index.js';
import { checkWritableTarget, fsyncDirectory } from '../repo/index.js';
import { asHotPatchError, errnoOf, messageOf, sleep } from './store-checks.js';

/**
 * How a writer of the embedded store commits: a lock file for progress, fencing for safety.
 *
 * The lock (`store.lock`, created with `O_CREAT|O_EXCL`, holding `{pid, time, token}`) keeps
 * writers from running over each other, but a lock can be broken (its pid is dead, or it is
 * older than `lockStaleMs`) while its holder is only paused (SIGSTOP, swap, a stalled disk):
 * the holder later resumes with the state it read before. So the lock alone never decides
 * whether a write lands; a fence does:
 *
 * - a writer's permission to commit is its own temp file, `.store.json.<token>.tmp`; the
 *   commit is `rename(temp, store.json)`, which fails with `ENOENT` once the temp is gone;
 * - right after taking the lock, before reading the state, a writer *fences*: it lists the
 *   directory and removes every commit temp file there. Whoever holds a temp while someone
 *   else took the lock is a writer whose lock was broken: its rename can no longer succeed;
 * - a writer creates its temp after its read, then checks that `store.lock` still holds its
 *   token (a lock file is never put back once removed, so a token is at `store.lock` during
 *   one interval at most), and only then renames.
 *
 * Why that is enough: say W and X both commit and X's rename falls between W's read and W's
 * rename (the lost update). W's fence ran before its read, hence before X's rename; had it
 * started after X created its temp it would have removed it, so it started before. Likewise
 * X's fence started before W created its temp. So each lock was created before the other
 * writer checked its own: both tokens were at `store.lock` at one instant, which cannot be.
 * Unlink and rename of one name in one directory are atomic against each other (a local file
 * system; not NFS), so there is no window left in between.
 *
 * A writer that finds itself fenced (token gone at the check, or `ENOENT` at the rename) has
 * written nothing; the caller re-runs its whole cycle from a fresh read. Fencing also removes
 * the leftovers of a writer that crashed (its temp file, stale-lock files of older versions).
 * Waiting writers hold no temp file, so fencing never costs a healthy writer anything.
 */

export interface LockInfo {
  pid?: number;
  time?: number;
  token?: string;
}

/** Where a commit can be held by the test hook: temp written (before the token check) or checked (before the rename). */
export type CommitStage = 'written' | 'verified';

let commitHook: ((stage: CommitStage, storeFile: string) => void | Promise<void>) | undefined;

/**
 * @internal Tests only (not exported by the package): runs `hook` inside every commit of this
 * process, after the state was read and the temp file written, so a test can hold a writer
 * exactly there (and stop it with SIGSTOP) while its lock goes stale.
 */
export function setCommitHookForTests(hook: ((stage: CommitStage, storeFile: string) => void | Promise<void>) | undefined): void {
  commitHook = hook;
}

function pidAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return errnoOf(error) === 'EPERM';
  }
}

function parseLock(raw: string): LockInfo {
  try {
    const parsed = JSON.parse(raw) as unknown;
    if (!isPlainObject(parsed)) return {};
    return {
      ...(Number.isSafeInteger(parsed.pid) && (parsed.pid as number) > 0 ? { pid: parsed.pid as number } : {}),
      ...(Number.isSafeInteger(parsed.time) ? { time: parsed.time as number } : {}),
      ...(typeof parsed.token === 'string' ? { token: parsed.token } : {}),
    };
  } catch {
    // an empty or partial lock (its creator crashed before writing it): judged by mtime
    return {};
  }
}

async function readLock(file: string): Promise<{ info: LockInfo; mtimeMs: number; ino: number } | undefined> {
  let handle: FileHandle | undefined;
  try {
    // One open file for content and stat, so both describe the same lock.
    handle = await fsp.open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
    const [raw, st] = await Promise.all([handle.readFile('utf8'), handle.stat()]);
    return { info: parseLock(raw), mtimeMs: st.mtimeMs, ino: st.ino };
  } catch (error) {
    if (errnoOf(error) === 'ENOENT') return undefined;
    throw new HotPatchError('IO', `cannot read lock ${file}: ${messageOf(error)}`, { cause: error });
  } finally {
    await handle?.close().catch(() => undefined);
  }
}

/** Why a lock is stale, or undefined when it is held. */
function staleReason(lock: { info: LockInfo; mtimeMs: number }, staleMs: number, now: number): string | undefined {
  const { pid } = lock.info;
  if (pid !== undefined && !pidAlive(pid)) return `its holder pid ${pid} is not running`;
  const time = lock.info.time ?? lock.mtimeMs;
  if (now - time > staleMs) return `it is ${now - time} ms old (limit ${staleMs} ms)`;
  return undefined;
}

/**
 * Removes a lock judged stale. If a fresh lock replaced it meanwhile (the inode check narrows
 * that window but cannot close it), the fresh one goes too: harmless, as its holder is then
 * fenced by the next writer (it redoes its cycle). A lock is never put back: the safety
 * argument needs each token at `store.lock` during a single interval.
 */
async function breakLock(file: string, ino: number): Promise<void> {
  try {
    if ((await fsp.lstat(file)).ino !== ino) return; // replaced already: judge the new one
    await fsp.unlink(file);
  } catch (error) {
    if (errnoOf(error) === 'ENOENT') return; // someone else broke or released it
    throw asHotPatchError(error, `cannot break stale lock ${file}`);
  }
}

export interface WriterLockOptions {
  /** The store document, e.g. `<dir>/store.json`; commits rename onto it. */
  storeFile: string;
  lockFile: string;
  staleMs: number;
  /** Time (ms since the epoch) after which taking the lock fails with `IO`. */
  deadline: number;
  /** Lock timeout, for the error message. */
  timeoutMs: number;
}

/** One writer's hold on the store: taken and fenced by `acquire`, then `commit` at most once, then `release`. */
export class WriterLock {
  private readonly dir: string;
  private readonly temp: string;

  private constructor(
    private readonly options: WriterLockOptions,
    private readonly token: string,
  ) {
    this.dir = path.dirname(options.storeFile);
    this.temp = path.join(this.dir, `.${path.basename(options.storeFile)}.${token}.tmp`);
  }

  /** Takes the lock (breaking a stale one), then fences; fails with `IO` past the deadline. */
  static async acquire(options: WriterLockOptions): Promise<WriterLock> {
    const { lockFile, staleMs, deadline } = options;
    const token = randomBytes(12).toString('hex');
    let wait = 2;
    for (;;) {
      let handle: FileHandle | undefined;
      try {
        handle = await fsp.open(lockFile, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY | constants.O_NOFOLLOW, 0o600);
      } catch (error) {
        if (errnoOf(error) !== 'EEXIST') throw asHotPatchError(error, `cannot create lock ${lockFile}`);
      }
      if (handle !== undefined) {
        try {
          await handle.writeFile(JSON.stringify({ pid: process.pid, time: Date.now(), token }));
        } finally {
          await handle.close();
        }
        const lock = new WriterLock(options, token);
        try {
          await lock.fence();
        } catch (error) {
          await lock.release().catch(() => undefined);
          throw error;
        }
        return lock;
      }
      const held = await readLock(lockFile);
      if (held === undefined) continue; // released meanwhile: try again at once
      const now = Date.now();
      if (staleReason(held, staleMs, now) !== undefined) {
        await breakLock(lockFile, held.ino);
        continue;
      }
      if (now > deadline) {
        const { pid, time } = held.info;
        throw new HotPatchError(
          'IO',
          `cannot lock the store: ${lockFile} is held by pid ${pid ?? '?'} since ${time === undefined ? '?' : new Date(time).toISOString()}; gave up after ${options.timeoutMs} ms`,
          { detail: { lock: lockFile, ...(pid === undefined ? {} : { pid }) } },
        );
      }
      await sleep(wait + randomInt(0, wait + 1));
      wait = Math.min(wait * 2, 25);
    }
  }

  /** Commit temp files (any writer's, any version's) and stale-lock leftovers of older versions. */
  private isFenced(name: string): boolean {
    const base = path.basename(this.options.storeFile);
    return (name.startsWith(`.${base}.`) && name.endsWith('.tmp')) || name.startsWith(`${path.basename(this.options.lockFile)}.stale.`);
  }

  /** Revokes every other writer's permission to commit (see the module comment). */
  private async fence(): Promise<void> {
    let names: string[];
    try {
      names = await fsp.readdir(this.dir);
    } catch (error) {
      throw new HotPatchError('IO', `cannot list store directory ${this.dir}: ${messageOf(error)}`, { cause: error });
    }
    await Promise.all(
      names
        .filter((name) => this.isFenced(name))
        .map(async (name) => {
          try {
            await fsp.unlink(path.join(this.dir, name));
          } catch (error) {
            if (errnoOf(error) !== 'ENOENT') {
              throw new HotPatchError('IO', `cannot remove ${name} from store directory ${this.dir}: ${messageOf(error)}`, { cause: error });
            }
          }
        }),
    );
  }

  /** Does `store.lock` still hold our token? */
  private async holds(): Promise<boolean> {
    const current = await readLock(this.options.lockFile);
    return current?.info.token === this.token;
  }

  /**
   * Writes `text` as the new store document: temp file (ours, `O_EXCL`, mode 0600), fsync,
   * token check, rename, fsync of the directory. Resolves true once the document is durable
   * and visible; false when this writer was fenced (nothing written: re-run the cycle).
   */
  async commit(text: string): Promise<boolean> {
    const { storeFile } = this.options;
    // A link or non-regular store.json is refused (INVALID) rather than replaced.
    await checkWritableTarget(storeFile, 'store file');
    let handle: FileHandle | undefined;
    try {
      handle = await fsp.open(this.temp, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY | constants.O_NOFOLLOW, 0o600);
    } catch (error) {
      throw new HotPatchError('IO', `cannot create a temporary file in ${this.dir} for ${storeFile}: ${messageOf(error)}`, { cause: error });
    }
    let renamed = false;
    try {
      try {
        // open(2) masks the mode with the umask; the store is private to its owner.
        await handle.chmod(0o600);
        await handle.writeFile(text, 'utf8');
        await handle.sync();
      } finally {
        await handle.close();
      }
      await commitHook?.('written', storeFile);
      if (!(await this.holds())) return false;
      await commitHook?.('verified', storeFile);
      try {
        await fsp.rename(this.temp, storeFile);
      } catch (error) {
        if (errnoOf(error) === 'ENOENT') return false; // fenced: a newer writer removed our temp
        throw error;
      }
      renamed = true;
    } catch (error) {
      throw asHotPatchError(error, `cannot write ${storeFile}`);
    } finally {
      if (!renamed) await fsp.rm(this.temp, { force: true }).catch(() => undefined);
    }
    await fsyncDirectory(this.dir);
    return true;
  }

  /** Removes the lock if it is still ours (it may have been broken as stale). */
  async release(): Promise<void> {
    if (!(await this.holds())) return;
    try {
      await fsp.unlink(this.options.lockFile);
    } catch (error) {
      if (errnoOf(error) !== 'ENOENT') {
        throw new HotPatchError('IO', `cannot remove lock ${this.options.lockFile}: ${messageOf(error)}`, { cause: error });
      }
    }
  }
}

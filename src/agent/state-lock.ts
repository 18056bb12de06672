import { readFileSync } from 'node:fs';
import { readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { HotPatchError } from '../core/index.js';
import { writeFileExclusive } from '../repo/index.js';

export interface StateLock {
  readonly path: string;
  release(): Promise<void>;
}

/**
 * One agent per state directory: two processes restoring, journaling and auditing the same
 * files would corrupt each other's view. The lock is `agent.lock` holding the owner's pid,
 * created exclusively; a lock whose pid no longer runs (a SIGKILLed agent, a zombie not yet
 * reaped) or is this very process's pid (a container's PID 1 restarted) is broken. (A pid
 * recycled by another process could keep a dead agent's lock alive: then remove agent.lock
 * by hand.)
 */
export async function lockStateDir(stateDir: string): Promise<StateLock> {
  const path = join(stateDir, 'agent.lock');
  const body = `${JSON.stringify({ pid: process.pid, startedAt: new Date().toISOString() })}\n`;
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await writeFileExclusive(path, body, { mode: 0o600 });
      return {
        path,
        release: async () => {
          await unlink(path).catch((error: NodeJS.ErrnoException) => {
            if (error.code !== 'ENOENT') throw error;
          });
        },
      };
    } catch (error) {
      if (!(error instanceof HotPatchError && error.detail?.exists === true)) throw error;
    }
    const owner = await readOwner(path);
    if (owner !== undefined && isAlive(owner)) {
      throw new HotPatchError('INVALID', `another agent (pid ${owner}) is using the state directory ${stateDir}`, { detail: { pid: owner } });
    }
    await unlink(path).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOENT') throw error;
    });
  }
  throw new HotPatchError('INVALID', `could not lock the state directory ${stateDir}: another agent keeps taking it`);
}

async function readOwner(path: string): Promise<number | undefined> {
  try {
    const pid = (JSON.parse(await readFile(path, 'utf8')) as { pid?: unknown }).pid;
    return typeof pid === 'number' && Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
  } catch (error) {
    // Gone meanwhile, or torn by a crash mid-write: either way nobody holds it.
    if ((error as NodeJS.ErrnoException).code === 'ENOENT' || error instanceof SyntaxError) return undefined;
    throw new HotPatchError('IO', `cannot read ${path}: ${(error as Error).message}`, { cause: error });
  }
}

function isAlive(pid: number): boolean {
  // Our own pid in the lock is a previous life of this process's pid, not us (we are taking
  // it): in a container the service is PID 1 after every restart, so a lock left by a killed
  // PID 1 names the new one.
  if (pid === process.pid) return false;
  try {
    process.kill(pid, 0);
  } catch (error) {
    // EPERM: it runs, under another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
  // A killed agent its parent has not reaped yet is a zombie: it holds nothing.
  return !isZombie(pid);
}

function isZombie(pid: number): boolean {
  try {
    // /proc/<pid>/stat: "pid (comm) S …"; comm may hold spaces and parentheses, the state follows the last ')'.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z';
  } catch {
    return false; // no /proc (not Linux), or gone meanwhile: judged by kill(0) alone
  }
}

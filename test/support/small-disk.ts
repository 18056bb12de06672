/*
 * A real, small file system (tmpfs) for disk-full tests: `fill()` takes every free byte, so
 * the code under test meets a genuine ENOSPC from the kernel, and `free()` gives the space
 * back. Mounting needs root (CI runs the tests as root); a test that cannot mount fails
 * saying so rather than skipping.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, open, rm, rmdir, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface SmallDisk {
  /** The mount point (mode 0700), empty at first. */
  dir: string;
  /** Writes a filler file until the kernel answers ENOSPC: the disk is then full to the byte. */
  fill(): Promise<void>;
  /** Removes the filler: the space is back. */
  free(): Promise<void>;
  /** Unmounts and removes the mount point. */
  close(): Promise<void>;
}

export async function smallDisk(sizeBytes = 8 * 1024 * 1024): Promise<SmallDisk> {
  const dir = await mkdtemp(join(tmpdir(), 'hotpatch-small-disk-'));
  try {
    await run('mount', ['-t', 'tmpfs', '-o', `size=${sizeBytes},mode=0700`, 'tmpfs', dir]);
  } catch (error) {
    await rmdir(dir).catch(() => undefined);
    throw new Error(
      `disk-full tests mount a ${sizeBytes}-byte tmpfs and need root (or CAP_SYS_ADMIN): run the tests as root, as CI does. mount said: ${(error as Error).message}`,
    );
  }
  const filler = join(dir, 'filler');
  return {
    dir,
    async fill() {
      const handle = await open(filler, 'a');
      try {
        // Big chunks first, then ever smaller ones, so not even a page is left.
        for (let chunk = 1024 * 1024; chunk >= 1; chunk = Math.floor(chunk / 2)) {
          const bytes = Buffer.alloc(chunk, 0x2e);
          for (;;) {
            try {
              await handle.write(bytes);
            } catch (error) {
              if ((error as NodeJS.ErrnoException).code === 'ENOSPC') break;
              throw error;
            }
          }
        }
      } finally {
        await handle.close();
      }
    },
    async free() {
      await unlink(filler).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== 'ENOENT') throw error;
      });
    },
    async close() {
      await run('umount', ['-l', dir]);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { HotPatchError, messageOf } from '../core/index.js';

/**
 * The bytes of a file holding a secret (a PIN, a private key), checked on the one file opened so
 * nothing can be swapped in between the check and the read: a regular file (O_NONBLOCK, so a FIFO
 * put there cannot hold the start), readable by its owner only, at most `maxBytes`. NOT_FOUND: no
 * such file; INVALID: not a regular file, or readable by group or others; TOO_LARGE; IO.
 * The caller zeroes the returned buffer once it has what it needs.
 */
export async function readSecretFile(file: string, what: string, maxBytes: number): Promise<Buffer> {
  if (typeof file !== 'string' || file.length === 0) throw new HotPatchError('INVALID', `a ${what} must be a non-empty path`);
  const handle = await open(file, constants.O_RDONLY | constants.O_NONBLOCK).catch((cause: unknown) => {
    const missing = (cause as NodeJS.ErrnoException)?.code === 'ENOENT';
    throw new HotPatchError(missing ? 'NOT_FOUND' : 'IO', `${what} ${file} ${missing ? 'does not exist' : `cannot be opened: ${messageOf(cause)}`}`, {
      cause,
    });
  });
  const buffer = Buffer.alloc(maxBytes + 1);
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw new HotPatchError('INVALID', `${what} ${file} is not a regular file`);
    if ((info.mode & 0o077) !== 0) {
      throw new HotPatchError('INVALID', `${what} ${file} is readable by group or others (mode ${(info.mode & 0o777).toString(8)}): make it 0600`);
    }
    if (info.size > maxBytes) throw new HotPatchError('TOO_LARGE', `${what} ${file} is over ${maxBytes} bytes`);
    let length = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
      if (length > maxBytes) throw new HotPatchError('TOO_LARGE', `${what} ${file} is over ${maxBytes} bytes`);
    }
    return Buffer.from(buffer.subarray(0, length));
  } catch (error) {
    throw error instanceof HotPatchError ? error : new HotPatchError('IO', `${what} ${file} cannot be read: ${messageOf(error)}`, { cause: error });
  } finally {
    buffer.fill(0);
    await handle.close();
  }
}

import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { HotPatchError, messageOf } from '../core/index.js';

const MAX_PIN_FILE_BYTES = 4096;

/**
 * A token's user PIN from a file (never a flag or an option in a config: it would sit in the
 * process list, the shell history or a world-readable file), its last line break dropped. A PIN
 * file others may read is INVALID, a missing one NOT_FOUND, an empty one INVALID.
 */
export async function readPinFile(file: string): Promise<string> {
  if (typeof file !== 'string' || file.length === 0) throw new HotPatchError('INVALID', 'a PIN file must be a non-empty path');
  // O_NONBLOCK: a FIFO put there must not hold the start; it is refused below as no regular file.
  const handle = await open(file, constants.O_RDONLY | constants.O_NONBLOCK).catch((cause: unknown) => {
    const missing = (cause as NodeJS.ErrnoException)?.code === 'ENOENT';
    throw new HotPatchError(missing ? 'NOT_FOUND' : 'IO', `PIN file ${file} ${missing ? 'does not exist' : `cannot be opened: ${messageOf(cause)}`}`, {
      cause,
    });
  });
  let pin: string;
  try {
    // The mode and the bytes of the one file opened.
    const info = await handle.stat();
    const { mode, size } = info;
    if (!info.isFile()) throw new HotPatchError('INVALID', `PIN file ${file} is not a regular file`);
    if ((mode & 0o077) !== 0)
      throw new HotPatchError('INVALID', `PIN file ${file} is readable by group or others (mode ${(mode & 0o777).toString(8)}): make it 0600`);
    if (size > MAX_PIN_FILE_BYTES) throw new HotPatchError('TOO_LARGE', `PIN file ${file} is over ${MAX_PIN_FILE_BYTES} bytes`);
    const buffer = Buffer.alloc(MAX_PIN_FILE_BYTES + 1);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
    if (bytesRead > MAX_PIN_FILE_BYTES) throw new HotPatchError('TOO_LARGE', `PIN file ${file} is over ${MAX_PIN_FILE_BYTES} bytes`);
    pin = buffer
      .subarray(0, bytesRead)
      .toString('utf8')
      .replace(/\r?\n$/, '');
    buffer.fill(0);
  } catch (error) {
    throw error instanceof HotPatchError ? error : new HotPatchError('IO', `PIN file ${file} cannot be read: ${messageOf(error)}`, { cause: error });
  } finally {
    await handle.close();
  }
  if (pin.length === 0) throw new HotPatchError('INVALID', `PIN file ${file} is empty`);
  return pin;
}

import { open } from 'node:fs/promises';
import { HotPatchError } from '../core/index.js';

/** A policy file larger than this is refused (TOO_LARGE) without being read whole. */
export const MAX_POLICY_FILE_BYTES = 1024 * 1024;

/**
 * The one I/O edge of the security module: reads at most `MAX_POLICY_FILE_BYTES + 1` bytes,
 * so an endless or huge file (a FIFO, /dev/zero) is detected without reading it all.
 * ENOENT → NOT_FOUND; a longer file → TOO_LARGE; any other failure → IO.
 */
export async function readPolicyFile(path: string, maxBytes = MAX_POLICY_FILE_BYTES): Promise<Uint8Array> {
  if (typeof path !== 'string' || path.length === 0) {
    throw new HotPatchError('INVALID', `policy file path must be a non-empty string, got ${typeof path}`);
  }
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (cause) {
    throw ioError(cause, path);
  }
  try {
    const buffer = new Uint8Array(maxBytes + 1);
    let length = 0;
    while (length < buffer.length) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, null);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    if (length > maxBytes) {
      throw new HotPatchError('TOO_LARGE', `policy file ${path} is larger than ${maxBytes} bytes`, {
        detail: { path, maxBytes },
      });
    }
    return buffer.subarray(0, length);
  } catch (cause) {
    if (cause instanceof HotPatchError) throw cause;
    throw ioError(cause, path);
  } finally {
    await handle.close();
  }
}

function ioError(cause: unknown, path: string): HotPatchError {
  const code = (cause as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT') {
    return new HotPatchError('NOT_FOUND', `policy file ${path} does not exist`, { cause, detail: { path } });
  }
  return new HotPatchError('IO', `cannot read policy file ${path}: ${(cause as Error)?.message ?? String(cause)}`, {
    cause,
    detail: { path, errno: code },
  });
}

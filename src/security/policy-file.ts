import { HotPatchError } from '../core/index.js';
import { readFileBounded } from '../repo/index.js';

/** A policy file larger than this is refused (TOO_LARGE) without being read whole. */
export const MAX_POLICY_FILE_BYTES = 1024 * 1024;

/**
 * The one I/O edge of the security module, through the repository's bounded reader: at most
 * `maxBytes + 1` bytes are read, a FIFO or device is refused at once (O_NONBLOCK, regular
 * files only), ENOENT → NOT_FOUND, a longer file → TOO_LARGE, any other failure → IO.
 */
export async function readPolicyFile(path: string, maxBytes = MAX_POLICY_FILE_BYTES): Promise<Uint8Array> {
  if (typeof path !== 'string' || path.length === 0) {
    throw new HotPatchError('INVALID', `policy file path must be a non-empty string, got ${typeof path}`);
  }
  return readFileBounded(path, maxBytes, { noFollow: false, what: 'policy file' });
}

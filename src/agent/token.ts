import { stat } from 'node:fs/promises';
import { timingSafeEqual, createHash } from 'node:crypto';
import { HotPatchError } from '../core/index.js';
import { readFileBounded } from '../repo/index.js';

/**
 * Reads the bearer token for the loopback HTTP endpoint. The file must be readable by its
 * owner only (0600 or stricter): a token others can read protects nothing.
 */
export async function readTokenFile(path: string): Promise<string> {
  let mode: number;
  try {
    mode = (await stat(path)).mode;
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code === 'ENOENT' ? 'NOT_FOUND' : 'IO';
    throw new HotPatchError(code, `token file ${path}: ${(cause as Error).message}`, { cause });
  }
  if ((mode & 0o077) !== 0) {
    throw new HotPatchError('INVALID', `token file ${path} has mode ${(mode & 0o777).toString(8)}: it must be 0600 (readable by its owner only)`);
  }
  const token = new TextDecoder().decode(await readFileBounded(path, 4096, { noFollow: false, what: 'token file' })).trim();
  if (token.length < 16) throw new HotPatchError('INVALID', `token file ${path} holds a token of ${token.length} characters; at least 16 are needed`);
  return token;
}

/** Constant-time comparison of an Authorization header against the expected bearer token. */
export function bearerMatches(header: string | undefined, token: string): boolean {
  // The scheme is case-insensitive (RFC 9110 §11.1): "bearer", "BEARER" and "Bearer" alike.
  const m = header === undefined ? null : /^bearer[ \t]+(.*)$/is.exec(header);
  if (m === null) return false;
  // Hashing both sides gives equal lengths, so timingSafeEqual never leaks the token's length.
  const given = createHash('sha256').update(m[1]!.trim()).digest();
  const want = createHash('sha256').update(token).digest();
  return timingSafeEqual(given, want);
}

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

/** The endpoint's bearer tokens: the operator's may do everything, the read-only one only read. */
export interface AgentTokens {
  operator: string;
  read?: string;
}

/** What a request's token lets it do. */
export type Role = 'operate' | 'read';

/**
 * Reads the operator token and, when given, the read-only one (same file rules). Equal tokens
 * are refused: a read-only token that is also the operator's would grant everything.
 */
export async function readAgentTokens(files: { tokenFile: string; readTokenFile?: string }): Promise<AgentTokens> {
  const operator = await readTokenFile(files.tokenFile);
  if (files.readTokenFile === undefined) return { operator };
  const read = await readTokenFile(files.readTokenFile);
  if (sameSecret(operator, read)) {
    throw new HotPatchError('INVALID', `the read-only token (${files.readTokenFile}) is the operator token (${files.tokenFile}): they must differ, or the read-only token could do everything`);
  }
  return { operator, read };
}

/**
 * The role a request's Authorization header grants, or undefined (401). Both tokens are
 * always compared, so the time taken tells nothing about which one, if any, matched.
 */
export function roleOf(header: string | undefined, tokens: AgentTokens): Role | undefined {
  const operator = bearerMatches(header, tokens.operator);
  const read = tokens.read !== undefined && bearerMatches(header, tokens.read);
  return operator ? 'operate' : read ? 'read' : undefined;
}

/** Constant-time comparison of an Authorization header against the expected bearer token. */
export function bearerMatches(header: string | undefined, token: string): boolean {
  // The scheme is case-insensitive (RFC 9110 §11.1): "bearer", "BEARER" and "Bearer" alike.
  const m = header === undefined ? null : /^bearer[ \t]+(.*)$/is.exec(header);
  if (m === null) return false;
  return sameSecret(m[1]!.trim(), token);
}

function sameSecret(a: string, b: string): boolean {
  // Hashing both sides gives equal lengths, so timingSafeEqual never leaks the token's length.
  return timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest());
}

import { stat } from 'node:fs/promises';
import { timingSafeEqual, createHash } from 'node:crypto';
import { HotPatchError, asObject, describe, rejectUnknownFields } from '../core/index.js';
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

/** What a request's token lets it do. */
export type Role = 'operate' | 'read';
const ROLES: readonly Role[] = ['operate', 'read'];

/** One named bearer token of the HTTP endpoint, as given in `http.tokens`. */
export interface HttpTokenOption {
  /** Recorded in every request it makes (`token: name`): 1–64 of `[A-Za-z0-9._-]`, starting with a letter or digit. */
  name: string;
  /** The token's file: mode 0600, at least 16 characters. */
  file: string;
  /** `operate`: every endpoint; `read`: status, plans, events, metrics only. */
  role: Role;
}

/** How a token is recorded: `token:<name>`, or operator-token / read-token for the two legacy files. */
export type TokenCredential = 'operator-token' | 'read-token' | `token:${string}`;

/** A token the endpoint accepts, read and checked. */
export interface AgentToken {
  readonly name: string;
  readonly role: Role;
  /** What a `Requested` record says admitted the caller: `token:<name>` (`operator-token`, `read-token` for the two legacy files). */
  readonly credential: TokenCredential;
  readonly file: string;
  readonly token: string;
  /** SHA-256 of the token: what requests are compared with. */
  readonly digest: Buffer;
}

/** The endpoint's bearer tokens, each distinct, each with a distinct name. */
export type AgentTokenSet = readonly AgentToken[];

/** The two tokens of the original options (`tokenFile`, `readTokenFile`), as `roleOf` takes them. */
export interface AgentTokens {
  operator: string;
  read?: string;
}

const MAX_TOKENS = 64;
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const TOKEN_FIELDS = ['name', 'file', 'role'];

const sha256 = (text: string): Buffer => createHash('sha256').update(text).digest();

/** How a token is named in messages: never its value. */
function label(t: AgentToken): string {
  if (t.credential === 'operator-token') return `operator token (${t.file})`;
  if (t.credential === 'read-token') return `read-only token (${t.file})`;
  return `token "${t.name}" (${t.file})`;
}

/** Checks `http.tokens` entries before any file is read. */
function tokenOptions(value: unknown): HttpTokenOption[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw new HotPatchError('INVALID', `http.tokens must be an array, got ${describe(value)}`);
  if (value.length > MAX_TOKENS) throw new HotPatchError('INVALID', `http.tokens lists ${value.length} tokens; at most ${MAX_TOKENS} are allowed`);
  return value.map((entry: unknown, i) => {
    const where = `http.tokens[${i}]`;
    const e = asObject(entry, where);
    rejectUnknownFields(e, TOKEN_FIELDS, where);
    if (typeof e.name !== 'string' || !NAME.test(e.name))
      throw new HotPatchError('INVALID', `${where}.name must be 1–64 of [A-Za-z0-9._-] starting with a letter or digit, got ${describe(e.name)}`);
    if (typeof e.file !== 'string' || e.file.length === 0)
      throw new HotPatchError('INVALID', `${where}.file must be a non-empty path, got ${describe(e.file)}`);
    if (!ROLES.includes(e.role as Role)) throw new HotPatchError('INVALID', `${where}.role must be "operate" or "read", got ${describe(e.role)}`);
    return { name: e.name, file: e.file, role: e.role as Role };
  });
}

/**
 * Reads every token of the HTTP endpoint: `tokenFile` (named "operator", role operate),
 * `readTokenFile` (named "read", role read) and each of `tokens`. Same file rules for all;
 * at least one token; names and token values must be distinct — two names for one token
 * would make the record lie about who called, and a read token equal to an operating one
 * would grant everything. Messages name files and names, never a token.
 */
export async function readAgentTokens(http: { tokenFile?: string; readTokenFile?: string; tokens?: readonly HttpTokenOption[] }): Promise<AgentTokenSet> {
  const specs: (HttpTokenOption & { credential: TokenCredential })[] = [];
  if (http.tokenFile !== undefined) specs.push({ name: 'operator', file: http.tokenFile, role: 'operate', credential: 'operator-token' });
  if (http.readTokenFile !== undefined) specs.push({ name: 'read', file: http.readTokenFile, role: 'read', credential: 'read-token' });
  for (const t of tokenOptions(http.tokens)) specs.push({ ...t, credential: `token:${t.name}` });
  if (specs.length === 0) throw new HotPatchError('INVALID', 'the HTTP endpoint needs at least one token: http.tokenFile, http.readTokenFile or http.tokens');
  const names = new Set<string>();
  for (const s of specs) {
    if (names.has(s.name))
      throw new HotPatchError('INVALID', `two tokens are named "${s.name}" (tokenFile is named "operator", readTokenFile "read"): names must be distinct`);
    names.add(s.name);
  }
  const out: AgentToken[] = [];
  for (const s of specs) {
    const token = await readTokenFile(s.file);
    const t: AgentToken = { name: s.name, role: s.role, credential: s.credential, file: s.file, token, digest: sha256(token) };
    const same = out.find((o) => timingSafeEqual(o.digest, t.digest));
    if (same !== undefined) {
      throw new HotPatchError(
        'INVALID',
        `the ${label(t)} is the ${label(same)}: they must differ, or the records could not tell them apart (and a read-only token could do everything)`,
      );
    }
    out.push(t);
  }
  return out;
}

/**
 * The token a request's Authorization header presents, or undefined (401). The presented
 * token is hashed once and compared with every token, always all of them, with no early exit:
 * the time taken tells nothing about which one, if any, matched.
 */
export function matchToken(header: string | undefined, tokens: AgentTokenSet): AgentToken | undefined {
  const presented = bearerOf(header);
  const digest = sha256(presented ?? '');
  // Tokens are distinct, so at most one matches: `found` is its index + 1, computed without a branch.
  let found = 0;
  for (let i = 0; i < tokens.length; i++) found += (i + 1) * Number(timingSafeEqual(digest, tokens[i]!.digest));
  return presented === undefined || found === 0 ? undefined : tokens[found - 1];
}

/**
 * The role a request's Authorization header grants with the two original tokens, or
 * undefined (401). Both are always compared.
 */
export function roleOf(header: string | undefined, tokens: AgentTokens): Role | undefined {
  const set: AgentToken[] = [
    { name: 'operator', role: 'operate', credential: 'operator-token', file: '', token: tokens.operator, digest: sha256(tokens.operator) },
  ];
  if (tokens.read !== undefined) set.push({ name: 'read', role: 'read', credential: 'read-token', file: '', token: tokens.read, digest: sha256(tokens.read) });
  return matchToken(header, set)?.role;
}

/** Constant-time comparison of an Authorization header against the expected bearer token. */
export function bearerMatches(header: string | undefined, token: string): boolean {
  const presented = bearerOf(header);
  return presented !== undefined && timingSafeEqual(sha256(presented), sha256(token));
}

/** The token of a `Bearer` Authorization header; the scheme is case-insensitive (RFC 9110 §11.1). */
function bearerOf(header: string | undefined): string | undefined {
  const m = header === undefined ? null : /^bearer[ \t]+(.*)$/is.exec(header);
  return m === null ? undefined : m[1]!.trim();
}

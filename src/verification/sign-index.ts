import {
  HotPatchError,
  MANIFEST_PAYLOAD_TYPE,
  decodeEnvelope,
  encodeEnvelope,
  isHotPatchError,
  pae,
  parseManifest,
  parseRfc3339,
  type PatchId,
} from '../core/index.js';
import { PrivateKey } from '../crypto-agile/index.js';
import { keyProviderOf, type KeyProvider } from '../keys/index.js';
import { FileSystemRepository } from '../repo/index.js';
import { checkPayloadStream } from './payload-check.js';
import { INDEX_PAYLOAD_TYPE, MAX_INDEX_LIFETIME_MS, parseRepositoryIndex, sha256Text, type IndexEntry, type RepositoryIndex } from './repository-index.js';

/** How long a new index lives by default: 7 days (re-sign it before; a stale index stops agents). */
export const DEFAULT_INDEX_LIFETIME_MS = 7 * 24 * 60 * 60 * 1000;

const KEYID = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/;

export interface SignIndexOptions {
  keyid: string;
  /**
   * Add this signature to the index already in the directory (threshold > 1: each index key
   * signs the same body) instead of building a new one.
   */
  addSignature?: boolean;
  /** RFC 3339 expiry of a new index (default: DEFAULT_INDEX_LIFETIME_MS from now). */
  expires?: string;
  /** Version of a new index (default: the current one + 1, or 1); never at or below the current one. */
  version?: number;
  signal?: AbortSignal;
}

export interface SignedIndex {
  version: number;
  expires: string;
  patches: number;
  /** Key ids of every signature the index now carries. */
  signatures: string[];
}

/**
 * Writes the signed repository index of a directory (what `hotpatch index` does). A new index
 * lists every patch of the directory — each one's manifest checked against its payload first,
 * since the index vouches for both — under the next version, signed by this key alone; with
 * `addSignature` the key signs the index already there. Replaced atomically.
 *
 * Errors: `INVALID` (a bad key id or version, an unreadable index to add to, a patch whose
 * manifest does not parse or names another id), `SIZE_MISMATCH` / `HASH_MISMATCH` (a payload
 * drifted: nothing is written), `IO`.
 */
export async function signRepositoryIndex(directory: string, privateKey: PrivateKey | KeyProvider, options: SignIndexOptions): Promise<SignedIndex> {
  if (!(privateKey instanceof PrivateKey) && typeof (privateKey as Partial<KeyProvider> | undefined)?.sign !== 'function') {
    throw new HotPatchError('INVALID', 'privateKey must be a PrivateKey or a KeyProvider');
  }
  const signer = keyProviderOf(privateKey);
  const keyid = options?.keyid;
  if (typeof keyid !== 'string' || !KEYID.test(keyid)) throw new HotPatchError('INVALID', `key id ${JSON.stringify(keyid)} must be 1-128 of [A-Za-z0-9._:@-]`);
  const repo = new FileSystemRepository(directory);
  const existing = await readExisting(repo, options.signal);
  let body: Uint8Array;
  let signatures = existing?.signatures ?? [];
  if (options.addSignature === true) {
    if (existing === undefined) throw new HotPatchError('INVALID', `${directory} has no index to add a signature to`);
    // A co-signer vouches for what the directory holds, not for whatever index.json says: the
    // entries are rebuilt from the directory and must be the index's, exactly.
    await checkEntries(repo, existing.index, options.signal);
    body = existing.body;
    signatures = signatures.filter((s) => s.keyid !== keyid);
  } else {
    const index = await buildIndex(repo, existing?.index.version, options);
    body = new TextEncoder().encode(JSON.stringify(index));
    signatures = [];
  }
  // A key on a token or in a KMS signs there (KeyProvider); a file key in this process.
  signatures.push({ keyid, sig: await signer.sign(pae(INDEX_PAYLOAD_TYPE, body)) });
  await repo.writeIndex(encodeEnvelope({ payloadType: INDEX_PAYLOAD_TYPE, payload: body, signatures }), options.signal);
  const index = parseRepositoryIndex(body);
  return { version: index.version, expires: index.expires, patches: Object.keys(index.patches).length, signatures: signatures.map((s) => s.keyid) };
}

async function readExisting(repo: FileSystemRepository, signal: AbortSignal | undefined) {
  let bytes: Uint8Array;
  try {
    bytes = await repo.fetchIndex(signal);
  } catch (error) {
    if (isHotPatchError(error, 'NOT_FOUND')) return undefined;
    throw error;
  }
  try {
    const envelope = decodeEnvelope(bytes);
    if (envelope.payloadType !== INDEX_PAYLOAD_TYPE) throw new HotPatchError('INVALID', `its payloadType is ${envelope.payloadType}`);
    return { body: envelope.payload, index: parseRepositoryIndex(envelope.payload), signatures: envelope.signatures };
  } catch (error) {
    throw new HotPatchError('INVALID', `the repository's index.json is not a signed index (${(error as Error).message}); move it away to start a new one`, {
      cause: error,
    });
  }
}

async function buildIndex(repo: FileSystemRepository, current: number | undefined, options: SignIndexOptions): Promise<RepositoryIndex> {
  const version = options.version ?? (current ?? 0) + 1;
  // Errors of a value the caller chose name it (detail.option): `hotpatch index` makes them usage errors.
  const refuse = (option: 'version' | 'expires', message: string): HotPatchError => new HotPatchError('INVALID', message, { detail: { option } });
  if (!Number.isSafeInteger(version) || version < 1) throw refuse('version', `index version must be an integer >= 1, got ${String(version)}`);
  if (current !== undefined && version <= current) {
    throw refuse('version', `index version ${version} is not above the current version ${current}: clients would refuse it as a rollback`);
  }
  const expires = options.expires ?? new Date(Date.now() + DEFAULT_INDEX_LIFETIME_MS).toISOString();
  let expiresMs: number;
  try {
    expiresMs = parseRfc3339(expires, 'index expires');
  } catch (error) {
    throw refuse('expires', (error as Error).message);
  }
  if (expiresMs <= Date.now()) throw refuse('expires', `index expires ${expires} is in the past`);
  if (expiresMs > Date.now() + MAX_INDEX_LIFETIME_MS) throw refuse('expires', `index expires ${expires} is more than 366 days away: readers refuse it`);
  const patches = await entriesOf(repo, options.signal);
  // Re-parsed so a written index is always one the reader accepts (UTC expiry, field checks).
  return parseRepositoryIndex({ version, expires: new Date(parseRfc3339(expires, 'index expires')).toISOString(), patches });
}

async function entriesOf(repo: FileSystemRepository, signal: AbortSignal | undefined): Promise<Record<string, IndexEntry>> {
  const patches: Record<string, IndexEntry> = Object.create(null) as Record<string, IndexEntry>;
  for (const id of await repo.list(signal)) patches[id] = await entryOf(repo, id, signal);
  return patches;
}

/** The index's entries are exactly the directory's (each patch, its manifest hash, payload hash and size). */
async function checkEntries(repo: FileSystemRepository, index: RepositoryIndex, signal: AbortSignal | undefined): Promise<void> {
  const actual = await entriesOf(repo, signal);
  const ids = new Set([...Object.keys(actual), ...Object.keys(index.patches)]);
  const differ = [...ids].filter((id) => JSON.stringify(actual[id] ?? null) !== JSON.stringify(index.patches[id] ?? null)).sort();
  if (differ.length > 0) {
    throw new HotPatchError(
      'INVALID',
      `index version ${index.version} does not list what the directory holds (${differ.slice(0, 5).join(', ')}${differ.length > 5 ? ` and ${differ.length - 5} more` : ''} differ): not signed; write a new index instead`,
    );
  }
}

async function entryOf(repo: FileSystemRepository, id: PatchId, signal: AbortSignal | undefined): Promise<IndexEntry> {
  const envelope = decodeEnvelope(await repo.fetchEnvelope(id, signal));
  if (envelope.payloadType !== MANIFEST_PAYLOAD_TYPE) throw new HotPatchError('INVALID', `${id}.json is not a hot-patch manifest envelope`);
  const { manifest, facts } = parseManifest(envelope.payload);
  if (manifest.id !== id) throw new HotPatchError('INVALID', `${id}.json holds the manifest of ${manifest.id}`);
  await checkPayloadStream(manifest, facts, repo.openPayload(id, manifest.payload_size + 1, signal));
  return {
    target: manifest.target,
    version: manifest.version,
    manifest_hash: sha256Text(envelope.payload),
    payload_hash: manifest.payload_hash,
    payload_size: manifest.payload_size,
  };
}

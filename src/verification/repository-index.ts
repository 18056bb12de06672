import { createHash } from 'node:crypto';
import {
  HotPatchError,
  asObject,
  canonicalVersion,
  decodeEnvelope,
  decodeJson,
  describe,
  integerInRange,
  isPatchId,
  paeFor,
  parseRfc3339,
  parseTargetName,
  payloadHashText,
  rejectUnknownFields,
  utcTimestamp,
  type Envelope,
  type PatchId,
} from '../core/index.js';
import { defaultCryptoPolicy, type CryptoPolicy } from '../crypto-agile/index.js';
import { checkSignatures, distinctValidKeys, shortfallCode, signatureNotes, summarize } from './signature-check.js';
import type { TrustStore } from './trust-store.js';

/** The payloadType of a signed repository index (a DSSE envelope, like a manifest's). */
export const INDEX_PAYLOAD_TYPE = 'application/vnd.xps.hotpatch.index+json';

/** The policy component an index signature is checked under (crypto policy rules by component). */
export const INDEX_COMPONENT = 'repository-index';

/**
 * Longest an index may live (its expires past now): an index that never expires could never
 * show a frozen mirror, whoever signed it.
 */
export const MAX_INDEX_LIFETIME_MS = 366 * 24 * 60 * 60 * 1000;

/** Highest index version (far above any real use; keeps "the next version" a safe integer). */
const MAX_INDEX_VERSION = 2 ** 40;

/** Most patches one index may list (an index past it is refused, not truncated). */
export const MAX_INDEX_ENTRIES = 100_000;

/** What the index says of one patch: a manifest that differs in any of it is refused. */
export interface IndexEntry {
  target: string;
  version: string;
  /** `sha256:<hex>` of the manifest (the envelope's payload bytes, not its signatures). */
  manifest_hash: string;
  payload_hash: string;
  payload_size: number;
}

/**
 * A repository index (README "Signed repository index"): every patch the repository holds,
 * a version that never goes down, and an expiry. TUF's snapshot and timestamp roles in one
 * document: the version defeats rollback to an older index, the expiry defeats a mirror that
 * freezes on one, the per-patch manifest hash defeats mix-and-match.
 */
export interface RepositoryIndex {
  version: number;
  expires: string;
  patches: Record<string, IndexEntry>;
}

/** An index whose signatures, expiry and version passed. */
export interface VerifiedIndex {
  index: RepositoryIndex;
  /** `sha256:<hex>` of the index body: two different bodies under one version are a fork. */
  hash: string;
  expiresMs: number;
  /** Key ids whose signatures counted. */
  signers: string[];
}

/** The highest index a client has accepted (what a newer read is held to). */
export interface IndexFloor {
  version: number;
  hash: string;
}

export interface VerifyIndexOptions {
  /** Reference time (default now). */
  now?: number;
  /** The highest index accepted before: a lower version is a rollback, the same version with another body a fork. */
  floor?: IndexFloor;
  cryptoPolicy?: CryptoPolicy;
  /** Tolerated clock difference for `expires` (default 60 s). */
  clockSkewMs?: number;
}

const INDEX_FIELDS = new Set(['version', 'expires', 'patches']);
const ENTRY_FIELDS = new Set(['target', 'version', 'manifest_hash', 'payload_hash', 'payload_size']);
const indexPae = paeFor(INDEX_PAYLOAD_TYPE);

/** `sha256:<hex>` of some bytes (a manifest's or an index's body). */
export function sha256Text(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** An index body (JSON bytes, text or value) → checked index. Pure; refuses unknown fields. */
export function parseRepositoryIndex(input: Uint8Array | string | unknown): RepositoryIndex {
  const value = input instanceof Uint8Array || typeof input === 'string' ? decodeJson(input, 'repository index') : input;
  const obj = asObject(value, 'repository index');
  rejectUnknownFields(obj, INDEX_FIELDS, 'repository index');
  const version = integerInRange(obj.version, 'repository index version', 1, MAX_INDEX_VERSION);
  const expires = utcTimestamp(obj.expires, 'repository index expires');
  const raw = asObject(obj.patches, 'repository index patches');
  const ids = Object.keys(raw);
  if (ids.length > MAX_INDEX_ENTRIES) throw new HotPatchError('TOO_LARGE', `repository index lists ${ids.length} patches, more than ${MAX_INDEX_ENTRIES}`);
  // No prototype: a patch id such as "constructor" is looked up as itself, never inherited.
  const patches: Record<string, IndexEntry> = Object.create(null) as Record<string, IndexEntry>;
  for (const id of ids) {
    if (!isPatchId(id)) throw new HotPatchError('INVALID', `repository index patches: ${describe(id.slice(0, 200))} is not a patch id`);
    const field = `repository index patches.${id}`;
    const e = asObject(raw[id], field);
    rejectUnknownFields(e, ENTRY_FIELDS, field);
    patches[id] = {
      target: parseTargetName(e.target, `${field}.target`),
      version: canonicalVersion(e.version, `${field}.version`),
      manifest_hash: sha256Field(e.manifest_hash, `${field}.manifest_hash`),
      payload_hash: payloadHashText(typeof e.payload_hash === 'string' ? e.payload_hash.toLowerCase() : String(e.payload_hash), `${field}.payload_hash`),
      payload_size: integerInRange(e.payload_size, `${field}.payload_size`, 0),
    };
  }
  return { version, expires, patches };
}

/**
 * Checks a signed index (the bytes of `index.json`, a DSSE envelope) in this order: envelope
 * type; signatures by the trust store's `index` role, `threshold` distinct keys; body parse;
 * expiry (`EXPIRED`: a frozen mirror); version against the floor (`DOWNGRADE`: an older index
 * replayed; the same version with another body: `INVALID`, a fork). Pure.
 */
export function verifyRepositoryIndex(bytes: Uint8Array, trust: TrustStore, options: VerifyIndexOptions = {}): VerifiedIndex {
  const now = options.now ?? Date.now();
  const skew = options.clockSkewMs ?? 60_000;
  const role = trust.index;
  if (role === undefined) throw new HotPatchError('INVALID', 'the trust store has no index role: nobody may sign a repository index');
  let envelope: Envelope;
  try {
    envelope = decodeEnvelope(bytes);
  } catch (error) {
    throw new HotPatchError('INVALID', `the repository index is not a signed envelope: ${(error as Error).message}`, { cause: error });
  }
  if (envelope.payloadType !== INDEX_PAYLOAD_TYPE) {
    throw new HotPatchError('INVALID', `repository index payloadType is ${describe(envelope.payloadType)}, expected ${JSON.stringify(INDEX_PAYLOAD_TYPE)}`);
  }
  const checked = checkSignatures(
    envelope.signatures,
    indexPae(envelope.payload),
    trust,
    options.cryptoPolicy ?? defaultCryptoPolicy,
    INDEX_COMPONENT,
    now,
    'ignored',
  );
  const roleKeys = new Set(role.keys);
  const signers = distinctValidKeys(checked, (id) => roleKeys.has(id));
  if (signers.length < role.threshold) {
    const roleChecked = checked.filter((c) => roleKeys.has(c.keyid));
    const code = shortfallCode(roleChecked, signers.length > 0 ? 'THRESHOLD_NOT_MET' : 'UNTRUSTED_KEY');
    const notes = signatureNotes(roleChecked)
      .map((n) => `; ${n}`)
      .join('');
    throw new HotPatchError(code, `repository index signed by ${signers.length} of ${role.threshold} required index keys: ${summarize(checked)}${notes}`, {
      detail: { valid: signers.length, required: role.threshold },
    });
  }
  const index = parseRepositoryIndex(envelope.payload);
  const hash = sha256Text(envelope.payload);
  const expiresMs = parseRfc3339(index.expires, 'repository index expires');
  if (expiresMs + skew <= now) {
    throw new HotPatchError('EXPIRED', `repository index version ${index.version} expired at ${index.expires}: a mirror serving it is stale or frozen`, {
      detail: { version: index.version, expires: index.expires },
    });
  }
  if (expiresMs > now + MAX_INDEX_LIFETIME_MS + skew) {
    throw new HotPatchError(
      'INVALID',
      `repository index version ${index.version} expires ${index.expires}, more than 366 days away: an index must expire to show a frozen mirror`,
    );
  }
  const floor = options.floor;
  if (floor !== undefined && index.version < floor.version) {
    throw new HotPatchError('DOWNGRADE', `repository index version ${index.version} is older than version ${floor.version} already seen: a replayed index`, {
      detail: { version: index.version, floor: floor.version },
    });
  }
  if (floor !== undefined && index.version === floor.version && hash !== floor.hash) {
    throw new HotPatchError(
      'INVALID',
      `repository index version ${index.version} differs from the version ${floor.version} already seen: two indexes under one version`,
      {
        detail: { version: index.version },
      },
    );
  }
  return { index, hash, expiresMs, signers };
}

/**
 * Whether a manifest (the envelope's payload bytes) is exactly the one the index lists for
 * `id`: throws HASH_MISMATCH naming what differs (a mix-and-match of an index and a manifest).
 */
export function checkManifestAgainstIndex(id: PatchId, manifestBytes: Uint8Array, entry: IndexEntry, indexVersion: number): void {
  const hash = sha256Text(manifestBytes);
  if (hash === entry.manifest_hash) return;
  let differs = 'its bytes';
  try {
    const m = JSON.parse(new TextDecoder().decode(manifestBytes)) as Record<string, unknown>;
    const fields = (['target', 'version', 'payload_hash', 'payload_size'] as const).filter(
      (f) => String(m[f]).toLowerCase() !== String(entry[f]).toLowerCase(),
    );
    if (fields.length > 0) differs = fields.join(', ');
  } catch {
    // Not JSON at all: "its bytes" is all there is to say (the verifier will refuse it anyway).
  }
  throw new HotPatchError(
    'HASH_MISMATCH',
    `manifest ${id} does not match its entry in repository index version ${indexVersion} (${differs} differ): a mix-and-match`,
    {
      detail: { id, index_version: indexVersion, expected: entry.manifest_hash, got: hash },
    },
  );
}

function sha256Field(value: unknown, field: string): string {
  if (typeof value !== 'string' || !/^sha256:[0-9a-f]{64}$/.test(value))
    throw new HotPatchError('INVALID', `${field} must be sha256:<64 lowercase hex>, got ${describe(value)}`);
  return value;
}

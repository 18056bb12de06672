import { createReadStream } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import {
  HotPatchError,
  MANIFEST_PAYLOAD_TYPE,
  encodeEnvelope,
  parseManifest,
  type Manifest,
  type ManifestConstraints,
  type ManifestFacts,
  type PayloadType,
} from '../core/index.js';
import { HASH_ALGORITHMS, hashProvider, isHashAlgorithm, type HashAlgorithm, type PayloadRecipient } from '../crypto-agile/index.js';
import { encryptPayloadFile } from './encrypted-pack.js';
import { FileSystemRepository, type PayloadSource } from './filesystem-repository.js';

/** `expires` when none is given: this long after `created_at`. */
export const DEFAULT_PATCH_LIFETIME_MS = 90 * 86_400_000;

export interface PackPatchOptions {
  /** The patch id: the repository files are `<id>.json` and `<id>.bin`. */
  id: string;
  /** The target the patch replaces, e.g. `xps.crypto.hash.sha256`. */
  target: string;
  /** The patch's semver version. */
  version: string;
  type: PayloadType;
  /** The payload: a file (streamed, never read whole) or its bytes. */
  payload: PayloadSource;
  /** Hash of the payload recorded in the manifest; default `sha256`. */
  hash?: HashAlgorithm;
  /** RFC 3339; default now, in whole seconds. */
  createdAt?: string;
  /** RFC 3339; default 90 days after `createdAt`; `null`: the manifest carries no expiry. */
  expires?: string | null;
  /** Key ids whose signatures may count (empty: any trusted key). */
  signers?: readonly string[];
  constraints?: ManifestConstraints;
  metadata?: Readonly<Record<string, string>>;
  /** Replace a patch already in the repository (its signatures are lost); default false. */
  force?: boolean;
  /**
   * Encrypt the payload to these recipients (README "Encrypted payloads"): `<id>.bin` is then
   * the ciphertext, which `payload_hash` / `payload_size` describe, and the manifest's
   * `encryption` carries the wrapped data keys and the plaintext's hash and size.
   */
  encryptTo?: readonly PayloadRecipient[];
  /** Plaintext bytes per encrypted chunk (default 1 MiB). */
  chunkSize?: number;
}

export interface PackedPatch {
  manifest: Manifest;
  facts: ManifestFacts;
  /** The repository directory written to. */
  repository: string;
  /** Whether an existing patch of that id was replaced (`force`). */
  replaced: boolean;
}

/**
 * Puts a payload and its unsigned manifest into a filesystem repository (what `hotpatch
 * pack` does): `<id>.bin` is the payload, `<id>.json` a DSSE envelope with no signatures yet
 * whose manifest records the payload's size and hash. Sign it with `signPatch`.
 *
 * Every manifest field is checked by the parser the verifier uses before anything is written
 * (the repository directory is created, if missing, only then); the copy is hashed while it
 * is written and renamed into place only if it matches what was hashed, so a source file
 * that changes meanwhile leaves the repository untouched.
 *
 * Errors: `INVALID` with `detail.option` naming the option for a bad option, a payload file
 * that is not a regular file (`payload`), or an existing patch without `force` (`force`);
 * `NOT_FOUND` for a missing payload file; `IO`; `SIZE_MISMATCH` / `HASH_MISMATCH` when the
 * payload changed while it was copied.
 */
export async function packPatch(repository: string | FileSystemRepository, options: PackPatchOptions): Promise<PackedPatch> {
  if (typeof options !== 'object' || options === null) throw optionError('options', 'packPatch options must be an object');
  const hashAlg = options.hash ?? 'sha256';
  if (!isHashAlgorithm(hashAlg)) {
    throw optionError('hash', `hash must be one of ${HASH_ALGORITHMS.join(', ')}, got ${JSON.stringify(hashAlg)}`);
  }
  const createdAt = options.createdAt ?? new Date(Math.floor(Date.now() / 1000) * 1000).toISOString().replace('.000Z', 'Z');
  const createdMs = typeof createdAt === 'string' ? Date.parse(createdAt) : Number.NaN;
  const expires =
    options.expires === null
      ? undefined
      : (options.expires ?? (Number.isNaN(createdMs) ? undefined : new Date(createdMs + DEFAULT_PATCH_LIFETIME_MS).toISOString().replace('.000Z', 'Z')));

  // Size and hash first, from the source; every field is then checked by the same strict
  // parser the verifier uses, before anything is written to the repository.
  const { size, digestHex } = await hashPayload(options.payload, hashAlg);
  const draft: Record<string, unknown> = {
    id: options.id,
    target: options.target,
    version: options.version,
    created_at: createdAt,
    expires,
    signers: options.signers === undefined ? [] : [...options.signers],
    payload_hash: `${hashAlg}:${digestHex}`,
    payload_size: size,
    payload_type: options.type,
  };
  if (options.constraints !== undefined) draft.constraints = options.constraints;
  if (options.metadata !== undefined) draft.metadata = options.metadata;
  let parsed;
  try {
    parsed = parseManifest(draft);
  } catch (error) {
    if (error instanceof HotPatchError && error.code === 'INVALID') throw optionError('manifest', error.message, error);
    throw error;
  }
  let { manifest } = parsed;

  const repo = typeof repository === 'string' ? new FileSystemRepository(repository) : repository;
  if (!(repo instanceof FileSystemRepository)) {
    throw optionError('repository', 'repository must be a directory or a FileSystemRepository');
  }
  try {
    await mkdir(repo.root, { recursive: true });
  } catch (cause) {
    throw new HotPatchError('IO', `cannot create repository directory ${repo.root}: ${(cause as Error).message}`, { cause });
  }
  const exists = (await repo.list()).includes(manifest.id);
  if (exists && options.force !== true) {
    throw optionError('force', `patch ${manifest.id} already exists in ${repo.root} (replacing it loses its signatures)`);
  }
  // Encrypted: the fields were checked against the plaintext above; the manifest is then the
  // ciphertext's, with the encryption field, checked again by the same parser.
  const encrypted =
    options.encryptTo === undefined
      ? undefined
      : await encryptPayloadFile(repo.root, options.payload, options.encryptTo, {
          patchId: manifest.id,
          alg: hashAlg,
          ...(options.chunkSize === undefined ? {} : { chunkSize: options.chunkSize }),
        });
  try {
    if (encrypted !== undefined) {
      try {
        parsed = parseManifest({ ...draft, payload_hash: `${hashAlg}:${encrypted.digestHex}`, payload_size: encrypted.size, encryption: encrypted.encryption });
      } catch (error) {
        // The recipients came from the caller (their kids, their count): a bad one is theirs.
        if (error instanceof HotPatchError && error.code === 'INVALID') throw optionError('encryptTo', error.message, error);
        throw error;
      }
      manifest = parsed.manifest;
    }
    const body = new TextEncoder().encode(JSON.stringify(manifest));
    const envelopeJson = encodeEnvelope({ payloadType: MANIFEST_PAYLOAD_TYPE, payload: body, signatures: [] });
    await repo.publish(manifest.id, envelopeJson, encrypted === undefined ? options.payload : { fromFile: encrypted.file }, {
      expectedSize: encrypted?.size ?? size,
      ...(hashAlg === 'sha256' ? { expectedSha256: encrypted?.digestHex ?? digestHex } : {}),
    });
  } finally {
    await encrypted?.remove();
  }
  return { manifest, facts: parsed.facts, repository: repo.root, replaced: exists };
}

function optionError(option: string, message: string, cause?: unknown): HotPatchError {
  return new HotPatchError('INVALID', message, { ...(cause === undefined ? {} : { cause }), detail: { option } });
}

async function hashPayload(payload: PayloadSource, alg: HashAlgorithm): Promise<{ size: number; digestHex: string }> {
  const hasher = hashProvider(alg).create();
  if (payload instanceof Uint8Array) {
    hasher.update(payload);
    return { size: payload.byteLength, digestHex: Buffer.from(hasher.digest()).toString('hex') };
  }
  const path = typeof payload === 'object' && payload !== null ? (payload as { fromFile?: unknown }).fromFile : undefined;
  if (typeof path !== 'string' || path.length === 0) {
    throw optionError('payload', 'payload must be a Uint8Array or { fromFile: path }');
  }
  let info;
  try {
    info = await stat(path);
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new HotPatchError('NOT_FOUND', `payload file ${path} does not exist`, { cause });
    throw new HotPatchError('IO', `cannot read payload file ${path}: ${(cause as Error).message}`, { cause });
  }
  // stat, not open: a FIFO is refused at once instead of blocking the open.
  if (!info.isFile()) throw optionError('payload', `payload ${path} is not a regular file`);
  let size = 0;
  try {
    for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
      const bytes = chunk as Buffer;
      size += bytes.byteLength;
      hasher.update(bytes);
    }
  } catch (cause) {
    throw new HotPatchError('IO', `cannot read payload file ${path}: ${(cause as Error).message}`, { cause });
  }
  return { size, digestHex: Buffer.from(hasher.digest()).toString('hex') };
}

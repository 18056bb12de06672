import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { describe, errnoOf, HotPatchError, messageOf, PAYLOAD_TYPES, type Manifest, type ManifestFacts, type PayloadType } from '../core/index.js';
import { decryptPayload, hashProvider, timingSafeEqualBytes, type DecryptionKey } from '../crypto-agile/index.js';
import { concatBytes, fileError, fsyncDirectory, openRegularFile, readFileChunks, throwIfAborted, withCleanupFailure, writeFileAtomic } from '../repo/index.js';
import { checkedPayload } from './checked-payload.js';
import type { StagedPayload } from './types.js';

/*
 * Content-addressed staging (docs/ARCHITECTURE.md "staging/": `staging/<sha256>.<ext>`, read-only,
 * crash-safe). Two digests are computed while the payload is copied: SHA-256, which names the
 * file whatever the manifest uses, and the manifest's own algorithm, which is what the signed
 * manifest vouches for. Nothing reaches the final name unless both the size and the manifest's
 * digest matched.
 */

/** File extension per payload type: Node decides how to import a file by its extension. */
export const STAGED_EXTENSIONS: Readonly<Record<PayloadType, string>> = Object.freeze({
  esm: 'mjs',
  wasm: 'wasm',
  native: 'node',
});

/** Mode of a staged file: read-only for everyone, so nothing edits it in place by accident. */
export const STAGED_MODE = 0o444;

/**
 * Re-reading a staged file has no manifest to bound it; this only keeps the byte count a safe
 * integer (the file was bounded by its manifest's payload_size when it was staged).
 */
const MAX_STAGED_BYTES = Number.MAX_SAFE_INTEGER - 1;

const SHA256_HEX = /^[0-9a-f]{64}$/;

// --- argument checks ---

/** A SHA-256 content address: 64 hex digits, any case, returned in lowercase. */
export function checkSha256(value: unknown, name = 'sha256'): string {
  const lower = typeof value === 'string' ? value.toLowerCase() : undefined;
  if (lower === undefined || !SHA256_HEX.test(lower)) {
    throw new HotPatchError('INVALID', `${name} must be 64 hex digits (a SHA-256 digest), got ${describe(value)}`);
  }
  return lower;
}

export function checkPayloadType(value: unknown, name = 'type'): PayloadType {
  if (!(PAYLOAD_TYPES as readonly unknown[]).includes(value)) {
    throw new HotPatchError('INVALID', `${name} must be one of ${PAYLOAD_TYPES.join(', ')}, got ${describe(value)}`);
  }
  return value as PayloadType;
}

function checkStageArguments(manifest: unknown, facts: unknown, payload: unknown, signal: unknown): void {
  if (typeof manifest !== 'object' || manifest === null) {
    throw new HotPatchError('INVALID', `manifest must be a parsed Manifest, got ${describe(manifest)}`);
  }
  const m = manifest as Partial<Manifest>;
  checkPayloadType(m.payload_type, 'manifest.payload_type');
  if (typeof m.payload_size !== 'number' || !Number.isSafeInteger(m.payload_size) || m.payload_size < 0) {
    throw new HotPatchError('INVALID', `manifest.payload_size must be a non-negative integer, got ${describe(m.payload_size)}`);
  }
  if (typeof facts !== 'object' || facts === null) {
    throw new HotPatchError('INVALID', `facts must be the ManifestFacts parsed with the manifest, got ${describe(facts)}`);
  }
  const f = facts as Partial<ManifestFacts>;
  if (typeof f.hashHex !== 'string' || !/^(?:[0-9a-f]{2})+$/.test(f.hashHex)) {
    throw new HotPatchError('INVALID', `facts.hashHex must be lowercase hex of even length, got ${describe(f.hashHex)}`);
  }
  if (!(payload instanceof Uint8Array) && !isAsyncIterable(payload)) {
    throw new HotPatchError('INVALID', `payload must be a Uint8Array or an AsyncIterable of Uint8Array chunks, got ${describe(payload)}`);
  }
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new HotPatchError('INVALID', `signal must be an AbortSignal, got ${describe(signal)}`);
  }
}

function isAsyncIterable(value: unknown): value is AsyncIterable<Uint8Array> {
  return typeof value === 'object' && value !== null && typeof (value as { [Symbol.asyncIterator]?: unknown })[Symbol.asyncIterator] === 'function';
}

// --- reading a staged file back ---

export interface StagedDigest {
  sha256: string;
  size: number;
  /** The bytes that were hashed, when asked for (wasm is compiled from exactly these). */
  bytes?: Uint8Array;
}

/**
 * SHA-256 and size of the regular file `file`, never following a symbolic link. Errors:
 * `NOT_FOUND` (missing), `INVALID` (a link or not a regular file), `IO`.
 */
export async function digestStagedFile(file: string, keepBytes: boolean): Promise<StagedDigest> {
  const hasher = hashProvider('sha256').create();
  const kept: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of readFileChunks(file, MAX_STAGED_BYTES, { noFollow: true, what: 'staged payload' })) {
    hasher.update(chunk);
    size += chunk.byteLength;
    if (keepBytes) kept.push(chunk);
  }
  const sha256 = Buffer.from(hasher.digest()).toString('hex');
  return keepBytes ? { sha256, size, bytes: concatBytes(kept, size) } : { sha256, size };
}

/**
 * Re-hashes `staging/<sha256>.<ext>` and compares it with its name: a staged file is trusted
 * again only when its bytes still are the ones that were checked at staging time (it may have
 * been staged by an earlier process, and the disk is not trusted across a restart).
 */
export async function verifyStagedFile(
  file: string,
  sha256: string,
  type: PayloadType,
  keepBytes: boolean,
): Promise<{ staged: StagedPayload; bytes?: Uint8Array }> {
  const digest = await digestStagedFile(file, keepBytes);
  // Content addresses are public, but comparing digests in constant time everywhere keeps one habit.
  if (!timingSafeEqualBytes(Buffer.from(digest.sha256, 'hex'), Buffer.from(sha256, 'hex'))) {
    throw new HotPatchError('HASH_MISMATCH', `staged payload ${file} now hashes to sha256:${digest.sha256}, not the sha256:${sha256} it was staged as`, {
      detail: { algorithm: 'sha256', expected: sha256, actual: digest.sha256, path: file },
    });
  }
  const staged: StagedPayload = { path: file, sha256, size: digest.size, type };
  return digest.bytes === undefined ? { staged } : { staged, bytes: digest.bytes };
}

// --- staging ---

/**
 * Writes `payload` to `stagingDir/<sha256>.<ext>` after checking it against the manifest.
 *
 * step 1 check the arguments; `mkdir -p` the staging directory;
 * step 2 stream the payload through the size and digest checks into a uniquely named temp
 *        file in the staging directory (`writeFileAtomic`: O_CREAT|O_EXCL, mode 0444, fsync,
 *        rename, fsync the directory). The final name depends on the content, so it is known
 *        only once the stream has ended: hence a temp name first, then step 3;
 * step 3 commit: a symbolic link or non-regular file at the final name is refused (`INVALID`,
 *        never followed); an existing regular file whose bytes hash right is reused (the temp
 *        is removed); a missing or corrupted one is replaced with rename(2), which is atomic,
 *        then the directory is fsynced.
 * On any failure the temp file is removed and nothing half-written exists under the final name.
 */
export async function stagePayload(
  stagingDir: string,
  manifest: Manifest,
  facts: ManifestFacts,
  payload: Uint8Array | AsyncIterable<Uint8Array>,
  signal: AbortSignal | undefined,
  decryptionKeys: readonly DecryptionKey[] = [],
): Promise<StagedPayload> {
  // step 1
  checkStageArguments(manifest, facts, payload, signal);
  const what = `staging payload of patch ${manifest.id}`;
  const checked = checkedPayload(payload, manifest, facts, signal);
  throwIfAborted(signal, what);
  try {
    // 0700: a decrypted payload is written nowhere else. mkdir's mode applies only to a new
    // directory: one made looser by an older version is tightened before plaintext goes in.
    await fsp.mkdir(stagingDir, { recursive: true, mode: 0o700 });
    if (manifest.encryption !== undefined && ((await fsp.stat(stagingDir)).mode & 0o077) !== 0) await fsp.chmod(stagingDir, 0o700);
  } catch (error) {
    throw new HotPatchError('IO', `cannot create the staging directory ${stagingDir}: ${messageOf(error)}`, { cause: error });
  }

  await removeDeadTemps(stagingDir);

  // step 2
  const temp = path.join(stagingDir, `.stage-${process.pid}-${randomBytes(12).toString('hex')}.tmp`);
  try {
    // An encrypted payload: the ciphertext is checked against the manifest as it streams, then
    // decrypted chunk by chunk (each authenticated); the plaintext's MAC and size are checked at
    // its end, before anything is committed. The staged file is the plaintext, named by its SHA-256.
    const encryption = manifest.encryption;
    const plain = encryption === undefined ? undefined : hashing(decryptPayload(encryption, manifest.id, decryptionKeys, checked.chunks));
    await writeFileAtomic(temp, plain?.chunks ?? checked.chunks, { mode: STAGED_MODE, ...(signal === undefined ? {} : { signal }) });
    const { sha256, size } = plain === undefined ? checked.result() : plain.result();
    const type = manifest.payload_type;
    const final = path.join(stagingDir, `${sha256}.${STAGED_EXTENSIONS[type]}`);
    throwIfAborted(signal, what);
    // step 3
    await commitStaged(temp, final, sha256, stagingDir);
    return { path: final, sha256, size, type };
  } catch (error) {
    throw await removeTemp(temp, error);
  }
}

const STAGE_TEMP = /^\.stage-(\d+)-[0-9a-f]{24}\.tmp$/;

/**
 * Removes the temp files of staging processes that died mid-write (a crash leaves its temp file,
 * perhaps decrypted plaintext, behind): a temp file is this process's or a live one's, never
 * touched, or a dead process's, removed.
 */
async function removeDeadTemps(stagingDir: string): Promise<void> {
  let names: string[];
  try {
    names = await fsp.readdir(stagingDir);
  } catch (error) {
    throw fileError(error, 'list', stagingDir, 'staging directory', false);
  }
  for (const name of names) {
    const pid = Number(STAGE_TEMP.exec(name)?.[1]);
    if (!Number.isSafeInteger(pid) || pid === process.pid || isAlive(pid)) continue;
    await fsp.rm(path.join(stagingDir, name), { force: true });
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return errnoOf(error) === 'EPERM'; // it exists, owned by someone else
  }
}

/** Chunks passed through while their SHA-256 and size are taken (the decrypted plaintext's content address). */
function hashing(chunks: AsyncIterable<Uint8Array>): { chunks: AsyncIterable<Uint8Array>; result(): { sha256: string; size: number } } {
  const hasher = hashProvider('sha256').create();
  let size = 0;
  return {
    chunks: (async function* () {
      for await (const chunk of chunks) {
        hasher.update(chunk);
        size += chunk.byteLength;
        yield chunk;
      }
    })(),
    result: () => ({ sha256: Buffer.from(hasher.digest()).toString('hex'), size }),
  };
}

/** Step 3 of `stagePayload`. Leaves `temp` in place only when it throws. */
async function commitStaged(temp: string, final: string, sha256: string, stagingDir: string): Promise<void> {
  let existing;
  try {
    existing = await fsp.lstat(final);
  } catch (error) {
    if (errnoOf(error) !== 'ENOENT') throw fileError(error, 'stat', final, 'staged payload', false);
    existing = undefined;
  }
  if (existing !== undefined) {
    if (existing.isSymbolicLink()) {
      throw new HotPatchError('INVALID', `staged payload ${final} is a symbolic link, which is never followed`, { detail: { path: final } });
    }
    if (!existing.isFile()) {
      throw new HotPatchError('INVALID', `staged payload ${final} exists and is not a regular file`, { detail: { path: final } });
    }
    if (await hashesAs(final, sha256)) {
      // Idempotent: the same content is already staged. Make sure it is still read-only.
      await ensureReadOnly(final);
      await unlinkTemp(temp);
      return;
    }
    // Wrong bytes under a content address (a crash mid-copy by an older writer, or tampering):
    // the verified temp replaces them below; rename(2) swaps the name atomically.
  }
  try {
    await fsp.rename(temp, final);
  } catch (error) {
    throw new HotPatchError('IO', `cannot move the staged payload into place at ${final}: ${messageOf(error)}`, { cause: error });
  }
  await fsyncDirectory(stagingDir);
}

/** Whether the regular file `file` hashes to `sha256`; false when it vanished meanwhile. */
async function hashesAs(file: string, sha256: string): Promise<boolean> {
  let digest: StagedDigest;
  try {
    digest = await digestStagedFile(file, false);
  } catch (error) {
    if (error instanceof HotPatchError && error.code === 'NOT_FOUND') return false;
    throw error;
  }
  return timingSafeEqualBytes(Buffer.from(digest.sha256, 'hex'), Buffer.from(sha256, 'hex'));
}

/** chmod 0444 through an O_NOFOLLOW handle, so a link swapped in meanwhile is never chmod'ed. */
async function ensureReadOnly(file: string): Promise<void> {
  const { handle } = await openRegularFile(file, { noFollow: true, what: 'staged payload' });
  let primary: unknown;
  try {
    const st = await handle.stat();
    if ((st.mode & 0o7777) !== STAGED_MODE) await handle.chmod(STAGED_MODE);
  } catch (error) {
    primary = new HotPatchError('IO', `cannot make staged payload ${file} read-only: ${messageOf(error)}`, { cause: error });
  }
  try {
    await handle.close();
  } catch (closeError) {
    if (primary !== undefined) throw withCleanupFailure(primary, closeError, `closing ${file}`);
    throw new HotPatchError('IO', `cannot close staged payload ${file}: ${messageOf(closeError)}`, { cause: closeError });
  }
  if (primary !== undefined) throw primary;
}

async function unlinkTemp(temp: string): Promise<void> {
  try {
    await fsp.unlink(temp);
  } catch (error) {
    throw new HotPatchError('IO', `cannot remove the temporary file ${temp}: ${messageOf(error)}`, { cause: error });
  }
}

/**
 * Removes `temp` after `error` and returns the error to throw: a HotPatchError as is (any other
 * failure becomes `IO`), with a cleanup failure attached rather than dropped.
 */
async function removeTemp(temp: string, error: unknown): Promise<HotPatchError> {
  const primary = error instanceof HotPatchError ? error : new HotPatchError('IO', `cannot stage the payload: ${messageOf(error)}`, { cause: error });
  try {
    await fsp.unlink(temp);
  } catch (unlinkError) {
    // ENOENT: the temp was never created (the writer failed first) or was already moved away.
    if (errnoOf(unlinkError) !== 'ENOENT') return withCleanupFailure(primary, unlinkError, `removing ${temp}`);
  }
  return primary;
}

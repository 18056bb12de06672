import { join } from 'node:path';
import { HotPatchError, decodeEnvelope, emitRedactedWarning, parsePatchId, type LoadedModule, type PatchInstaller, type PatchVerifier } from '../core/index.js';
import { readFileBounded, readFileChunks } from '../repo/index.js';
import type { TargetState, VersionRecord } from '../rollback/index.js';
import type { RuntimeVersion } from './runtime-version.js';
import type { Target } from './target.js';
import { withoutPlaintextHash } from './plaintext-hash.js';

const MAX_KEPT_MANIFEST_BYTES = 1024 * 1024;

/** How the runtime turns a loaded module into one of its versions (wired to its disposal). */
export type VersionOfModule = (
  target: Target<object>,
  mod: LoadedModule,
  init: { version: string; patchId: string; sha256: string; type: RuntimeVersion['type'] },
) => RuntimeVersion;

/**
 * Loads, after a restart, the versions state.json records: the staged file re-hashed by the
 * installer, the kept signed manifest re-verified when a verifier is given, the module loaded
 * with `restored: true`, then its self-tests — the same bar a fresh apply clears before it
 * serves a call.
 */
export class RecordedVersions {
  readonly #installer: PatchInstaller;
  readonly #stateDir: string;
  readonly #versionOf: VersionOfModule;
  readonly #retire: (target: Target<object>, version: RuntimeVersion) => Promise<unknown>;

  constructor(
    installer: PatchInstaller,
    stateDir: string,
    versionOf: VersionOfModule,
    retire: (target: Target<object>, version: RuntimeVersion) => Promise<unknown>,
  ) {
    this.#installer = installer;
    this.#stateDir = stateDir;
    this.#versionOf = versionOf;
    this.#retire = retire;
  }

  /** The version `record` names, loaded and self-tested (the built-in for a record of it). */
  async load(target: Target<object>, record: VersionRecord, verifier: PatchVerifier | undefined): Promise<RuntimeVersion> {
    if (record.id === null || record.sha256 === undefined || record.type === undefined) return target.builtin;
    const staged = await this.#installer.verifyStaged(record.sha256, record.type);
    if (verifier !== undefined) await this.#reverify(target, record, staged.path, verifier);
    const mod = await this.#installer.load(staged, target.loadOptions({ version: record.version, patchId: record.id, restored: true }));
    const version = this.#versionOf(target, mod, { version: record.version, patchId: record.id, sha256: record.sha256, type: record.type });
    try {
      await runSelfTests(target, version);
    } catch (error) {
      // Refused: it never serves, so it goes now (an isolated one takes its worker or child with it).
      await this.#retire(target, version);
      throw error;
    }
    return version;
  }

  /**
   * What a restart brings back for one target whose state.json names an active patch: the
   * newest intact good version — the active record (unless it died inside its probation),
   * then last good, then the previous version if it was good, each tried once (a corrupt file
   * is not tried twice) — or the built-in. `loaded`: the record actually loaded (its promotion
   * data comes back with it); `resumeMs`: probation left by a graceful stop; `dropReason`: why
   * the active record is not what serves now (undefined when it is); `refused`: ids of records
   * that cannot come back (corrupt, revoked, not the signed bytes); `unreachable`: ids that
   * could not be checked now (IO, UNAUTHENTICATED: a KMS or token that does not answer, a disk
   * error) — not a verdict on the version.
   */
  async loadNewestGood(
    target: Target<object>,
    saved: TargetState & { active: VersionRecord },
    verifier: PatchVerifier | undefined,
  ): Promise<{
    version: RuntimeVersion;
    loaded: VersionRecord | undefined;
    resumeMs: number | undefined;
    dropReason: string | undefined;
    refused: Set<string>;
    unreachable: Set<string>;
  }> {
    const active = saved.active;
    let dropReason: string | undefined;
    let chosen: VersionRecord | null = active;
    // Only a running process can mark a version good, by surviving its probation; one that
    // is not marked good died inside its probation, however long ago that was.
    // A graceful stop inside the probation left its remaining time: resume it, not revert.
    const resumeMs = active.good !== true ? active.probation_left_ms : undefined;
    if (active.good !== true && resumeMs === undefined) {
      const probation = active.probation_ms === undefined ? 'its probation' : `its ${active.probation_ms} ms probation`;
      dropReason = `the process stopped inside ${probation} (promoted ${active.promoted_at ?? 'at an unknown time'}) without a graceful shutdown, so it was never confirmed good`;
      chosen = saved.last_good;
    }
    const tried = new Set<string>();
    const refused = new Set<string>();
    const unreachable = new Set<string>();
    for (const candidate of [chosen, saved.last_good, saved.previous?.good === true ? saved.previous : null]) {
      if (candidate === null || candidate.id === null) continue;
      const key = `${candidate.id}\u0000${candidate.sha256 ?? ''}`;
      if (tried.has(key)) continue;
      tried.add(key);
      try {
        return { version: await this.load(target, candidate, verifier), loaded: candidate, resumeMs, dropReason, refused, unreachable };
      } catch (error) {
        const code = error instanceof HotPatchError ? error.code : undefined;
        (code === 'IO' || code === 'UNAUTHENTICATED' ? unreachable : refused).add(candidate.id);
        let why = `${candidate.version} (${candidate.id}) could not be restored: ${(error as Error).message}`;
        if (await this.#mayBeEncrypted(candidate.id)) why = withoutPlaintextHash(why, candidate.sha256);
        dropReason = dropReason === undefined ? why : `${dropReason}; ${why}`;
      }
    }
    return { version: target.builtin, loaded: undefined, resumeMs, dropReason, refused, unreachable };
  }

  /**
   * The recorded previous version, loaded to be kept warm (so a rollback after a restart is
   * the same routing flip as before it); undefined, with a warning, when it cannot be.
   */
  async warm(target: Target<object>, record: VersionRecord | null, verifier: PatchVerifier | undefined): Promise<RuntimeVersion | undefined> {
    if (record === null) return undefined;
    if (record.id === null) return record.version === target.builtin.version ? target.builtin : undefined;
    try {
      return await this.load(target, record, verifier);
    } catch (error) {
      emitRedactedWarning(
        `${target.name}: the previous version ${record.version} (${record.id}) could not be kept warm: ${(error as Error).message}; a rollback will need { to }`,
        {
          code: 'HOTPATCH_PREVIOUS_NOT_WARM',
        },
      );
      return undefined;
    }
  }

  /**
   * Whether the kept manifest of `id` says its payload is encrypted (its staged file is then named
   * by the plaintext's hash, kept out of messages). Read unverified, only to decide that; a
   * manifest that cannot be read counts as encrypted (the hash is left out when in doubt).
   */
  async #mayBeEncrypted(id: string): Promise<boolean> {
    try {
      const bytes = await readFileBounded(join(this.#stateDir, 'manifests', `${parsePatchId(id)}.json`), MAX_KEPT_MANIFEST_BYTES, {
        noFollow: true,
        what: 'kept manifest',
      });
      const manifest: unknown = JSON.parse(new TextDecoder().decode(decodeEnvelope(bytes).payload));
      return typeof manifest !== 'object' || manifest === null || 'encryption' in manifest;
    } catch {
      return true; // unreadable or not a manifest: in doubt, leave the hash out
    }
  }

  /**
   * The whole trust pipeline again for a version about to be restored: the signed manifest
   * kept in manifests/<id>.json must still verify now (signatures, threshold, expiry, under
   * the current trust store), name this target, version and type, and the staged file must
   * match its signed hash and size (an encrypted patch's plaintext: its signed MAC and size) —
   * so write access to the state directory alone never gets code run, and a revoked or expired
   * patch does not come back.
   */
  async #reverify(target: Target<object>, record: VersionRecord, stagedPath: string, verifier: PatchVerifier): Promise<void> {
    const id = parsePatchId(record.id);
    const bytes = await readFileBounded(join(this.#stateDir, 'manifests', `${id}.json`), MAX_KEPT_MANIFEST_BYTES, { noFollow: true, what: 'kept manifest' });
    const verified = verifier.verifyEnvelope(bytes, { now: Date.now() });
    const m = verified.manifest;
    if (m.id !== id || m.target !== target.name || m.version !== record.version || m.payload_type !== record.type) {
      throw new HotPatchError('INVALID', `the kept manifest of ${id} names ${m.id} ${m.target} ${m.version} (${m.payload_type}), not what state.json records`);
    }
    if (m.encryption === undefined) {
      await verifier.verifyPayload(verified, readFileChunks(stagedPath, m.payload_size + 1, { noFollow: true, what: 'staged payload' }));
      return;
    }
    // Encrypted: the payload hash covers the ciphertext, which is not kept; the staged plaintext
    // is checked against the signed plaintext MAC under the data key, unwrapped again.
    if (this.#installer.checkDecrypted === undefined) {
      throw new HotPatchError('DECRYPT_FAILED', `${id} is encrypted and the ${this.#installer.kind} installer cannot check a decrypted payload`);
    }
    const plaintext = readFileChunks(stagedPath, m.encryption.plaintext_size + 1, { noFollow: true, what: 'staged payload' });
    await this.#installer.checkDecrypted(m, plaintext);
  }
}

/** The promotion figures of a record that come back with its version (promotion time, probation, good). */
export function restoredMeta(record: Partial<VersionRecord>): Partial<VersionRecord> {
  const meta: Partial<VersionRecord> = {};
  if (record.promoted_at !== undefined) meta.promoted_at = record.promoted_at;
  if (record.probation_ms !== undefined) meta.probation_ms = record.probation_ms;
  if (record.good !== undefined) meta.good = record.good;
  return meta;
}

/** The payload's own selfTest(), then the host's known-answer tests against the candidate alone. */
export async function runSelfTests(target: Target<object>, version: RuntimeVersion): Promise<void> {
  try {
    await version.hooks.selfTest?.();
    await target.declaration.selfTest?.(target.apiOf(version));
  } catch (cause) {
    throw new HotPatchError('SELF_TEST_FAILED', `self-test of ${target.name} ${version.label} failed: ${(cause as Error).message}`, { cause });
  }
}

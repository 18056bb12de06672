import path from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  describe,
  HotPatchError,
  messageOf,
  parseTargetName,
  type Manifest,
  type ManifestFacts,
  type PatchInstaller,
  type PayloadType,
} from '../core/index.js';
import { checkDecryptedPayload, checkUnwraps, unwrapProviderOf, type DecryptionKey, type UnwrapKeyProvider } from '../crypto-agile/index.js';
import { checkAdapter, checkApi, checkLoadOptions, esmLoadedModule, loadFailed, webAssembly, type LoadSubject } from './loaders.js';
import { loadIsolated, resolveIsolation } from './isolate/index.js';
import { STAGED_EXTENSIONS, checkPayloadType, checkSha256, stagePayload, verifyStagedFile } from './staging.js';
import type { DynamicInstallerOptions, LoadedModule, LoadOptions, StagedPayload, WasmInstance, WasmModule } from './types.js';

export const DEFAULT_MAX_LIVE_VERSIONS_PER_TARGET = 16;

export const NATIVE_REFUSAL =
  "native (.node) payloads can neither be unloaded from a process nor contained in it: they run only in a target declared with isolation: 'process'";

/** The distinct payload versions one target holds in this process. */
interface LiveVersions {
  /** sha256 of every esm file imported for the target: counted forever (see `liveVersions`). */
  readonly esm: Set<string>;
  /** sha256 → wasm instances not yet released; an entry is removed when its count reaches 0. */
  readonly wasm: Map<string, number>;
}

/**
 * Stages verified payloads under `<stageDir>/staging/<sha256>.<ext>` and loads them into the
 * running process, one loader per payload type (docs/ARCHITECTURE.md "Payloads and live swap").
 *
 * Memory accounting. ES modules can never be unloaded from a Node.js process: the module map
 * keeps every imported module (and whatever it references) until the process exits. So every
 * distinct esm file imported for a target counts against `maxLiveVersionsPerTarget` for good,
 * while importing the same content-addressed file again returns the cached module and adds
 * nothing. A wasm instance is ordinary garbage once dropped, so it counts only until `release`.
 * Counts are per installer instance: a process should use one installer (one state directory).
 */
export class DynamicInstaller implements PatchInstaller {
  readonly kind = 'dynamic' as const;
  /** `<stageDir>/staging`, with `stageDir` made absolute (import URLs need absolute paths). */
  readonly stagingDir: string;
  readonly maxLiveVersionsPerTarget: number;
  readonly #live = new Map<string, LiveVersions>();
  #decryptionKeys: readonly UnwrapKeyProvider[];

  constructor(stageDir: string, options: DynamicInstallerOptions = {}) {
    if (typeof stageDir !== 'string' || stageDir.length === 0 || stageDir.includes('\0')) {
      throw new HotPatchError('INVALID', `stageDir must be a non-empty path without NUL characters, got ${describe(stageDir)}`);
    }
    if (typeof options !== 'object' || options === null) {
      throw new HotPatchError('INVALID', `options must be an object, got ${describe(options)}`);
    }
    const cap = options.maxLiveVersionsPerTarget ?? DEFAULT_MAX_LIVE_VERSIONS_PER_TARGET;
    if (typeof cap !== 'number' || !Number.isSafeInteger(cap) || cap < 1) {
      throw new HotPatchError('INVALID', `options.maxLiveVersionsPerTarget must be a positive integer, got ${describe(cap)}`);
    }
    this.stagingDir = path.join(path.resolve(stageDir), 'staging');
    this.maxLiveVersionsPerTarget = cap;
    const keys = options.decryptionKeys ?? [];
    if (!Array.isArray(keys)) {
      throw new HotPatchError('INVALID', 'options.decryptionKeys must be a list of recipient private keys (importRecipientPrivateKey) or unwrap providers');
    }
    this.#decryptionKeys = keys.map(unwrapProviderOf);
  }

  /**
   * Copies `payload` into `staging/<sha256>.<ext>` (read-only), checking its size and the
   * manifest's digest on the way. Idempotent: staging the same content again returns the same
   * file. Errors: SIZE_MISMATCH, HASH_MISMATCH, ALGORITHM_DISALLOWED (a manifest hash algorithm
   * that is not ours), INVALID (bad arguments, a link or non-regular file at the final name),
   * ABORTED, IO (with the file-system error as cause). Nothing is left behind on failure.
   */
  stage(manifest: Manifest, facts: ManifestFacts, payload: Uint8Array | AsyncIterable<Uint8Array>, signal?: AbortSignal): Promise<StagedPayload> {
    return stagePayload(this.stagingDir, manifest, facts, payload, signal, this.#decryptionKeys);
  }

  /**
   * Adds keys that staging tries after the ones it has (what `startAgent({ runtime,
   * decryptionKeys })` does for the agent's lifetime); returns the function that removes them.
   */
  addDecryptionKeys(keys: readonly DecryptionKey[]): () => void {
    if (!Array.isArray(keys)) throw new HotPatchError('INVALID', 'decryption keys must be a list');
    const added = keys.map(unwrapProviderOf);
    this.#decryptionKeys = [...this.#decryptionKeys, ...added];
    return () => {
      this.#decryptionKeys = this.#decryptionKeys.filter((k) => !added.includes(k));
    };
  }

  /**
   * Checks the staged plaintext of an encrypted patch against its signed manifest after a
   * restart (its payload hash covers the ciphertext, which is not kept): the data key is
   * unwrapped again with this installer's keys and the plaintext's size and MAC must match.
   * DECRYPT_FAILED: no key of this installer unwraps it; SIZE_MISMATCH / HASH_MISMATCH.
   */
  async checkDecrypted(manifest: Manifest, plaintext: AsyncIterable<Uint8Array>): Promise<void> {
    if (manifest.encryption === undefined) throw new HotPatchError('INVALID', `${manifest.id} is not encrypted`);
    await checkDecryptedPayload(manifest.encryption, manifest.id, this.#decryptionKeys, plaintext);
  }

  /** Whether this installer's keys unwrap an encrypted patch's data key (zeroed at once): DECRYPT_FAILED if not. */
  async checkDecryptable(manifest: Manifest): Promise<void> {
    if (manifest.encryption === undefined) return;
    await checkUnwraps(manifest.encryption, manifest.id, this.#decryptionKeys);
  }

  /** `staging/<sha256>.<ext>` (ext: esm → mjs, wasm → wasm, native → node). */
  stagedPathFor(sha256: string, type: PayloadType): string {
    const sha = checkSha256(sha256);
    return path.join(this.stagingDir, `${sha}.${STAGED_EXTENSIONS[checkPayloadType(type)]}`);
  }

  /**
   * Re-hashes a staged file (e.g. after a restart) and returns it when its bytes still match
   * its name. Errors: NOT_FOUND (missing), HASH_MISMATCH (changed on disk), INVALID (a symbolic
   * link, which is never followed, or not a regular file), IO.
   */
  async verifyStaged(sha256: string, type: PayloadType): Promise<StagedPayload> {
    const sha = checkSha256(sha256);
    const t = checkPayloadType(type);
    return (await verifyStagedFile(this.stagedPathFor(sha, t), sha, t, false)).staged;
  }

  /**
   * Loads a staged payload into this process — or, with `options.isolation`, into a worker
   * thread or child process of its own — and returns what it provides. The staged file is
   * re-verified first: bytes are never imported or compiled unless they hash to their name.
   * Errors: LOAD_FAILED (the payload failed to import / compile / initialise, lacks a required
   * function, is native outside isolation 'process', is wasm in isolation, its isolate died or
   * timed out while loading, or the target is at its live-version cap), the verification errors of
   * `verifyStaged`, INVALID (bad arguments).
   */
  async load(staged: StagedPayload, options: LoadOptions): Promise<LoadedModule> {
    const { sha256, type } = this.#checkStaged(staged);
    const opts = checkLoadOptions(options);
    const subject: LoadSubject = { target: opts.target, version: opts.version, patchId: opts.patchId, sha256 };
    if (opts.isolation !== undefined) {
      resolveIsolation(opts.isolation, 'options.isolation');
      // Re-verified like an inline load: bytes never run unless they hash to their name. An
      // isolated version is not counted as live: retiring it ends its isolate, memory and all.
      const { staged: checked } = await verifyStagedFile(this.stagedPathFor(sha256, type), sha256, type, false);
      return loadIsolated(checked, opts, subject);
    }
    switch (type) {
      case 'native':
        // Refused before reading anything: there is no safe way to run it in-process.
        throw loadFailed(subject, NATIVE_REFUSAL);
      case 'wasm':
        return this.#loadWasm(subject, opts);
      case 'esm':
        return this.#loadEsm(subject, opts);
    }
  }

  /** Distinct payload versions of `target` currently holding memory in this process. */
  liveVersions(target: string): number {
    parseTargetName(target, 'target');
    const live = this.#live.get(target);
    return live === undefined ? 0 : live.esm.size + live.wasm.size;
  }

  /**
   * Tells the installer that one wasm instance of `sha256` for `target` was disposed, so it no
   * longer counts. ES modules always keep counting (they cannot be unloaded), so releasing one
   * changes nothing; nor does releasing a version that holds no instance (release is
   * idempotent per version, so a dispose path may call it without bookkeeping).
   */
  release(target: string, sha256: string): void {
    parseTargetName(target, 'target');
    const sha = checkSha256(sha256);
    const live = this.#live.get(target);
    const instances = live?.wasm.get(sha);
    if (live === undefined || instances === undefined) return;
    if (instances <= 1) live.wasm.delete(sha);
    else live.wasm.set(sha, instances - 1);
  }

  // --- loaders ---

  /**
   * esm: step 1 re-verify the staged file; step 2 reserve a live slot (the cap is checked
   * before importing); step 3 import it; step 4 check its exports; step 5 `await init(ctx)`.
   *
   * Node caches a module by URL, failed or not: importing the same file again returns the
   * cached namespace (init runs again, once per load, on the same module instance) or rethrows
   * the cached evaluation error without running the module again. A failed import is not
   * counted as live (step 3 undoes its reservation) although Node keeps its record; a module
   * that imported but failed step 4 or 5 stays counted, because its code has run and its
   * module cannot be unloaded.
   *
   * There is a short window between step 1 and the import in which the file could be swapped
   * by someone who can write to the staging directory; such a party controls the state
   * directory anyway, and the file itself is read-only.
   */
  async #loadEsm(subject: LoadSubject, opts: LoadOptions): Promise<LoadedModule> {
    // step 1
    const { staged } = await verifyStagedFile(this.stagedPathFor(subject.sha256, 'esm'), subject.sha256, 'esm', false);
    // step 2 (synchronous up to the import, so concurrent loads cannot both take the last slot)
    const undo = this.#reserve(subject, 'esm');
    // step 3
    let namespace: Record<string, unknown>;
    try {
      namespace = (await import(pathToFileURL(staged.path).href)) as Record<string, unknown>;
    } catch (cause) {
      undo();
      throw loadFailed(subject, `importing ${staged.path} failed: ${messageOf(cause)}`, { cause });
    }
    // step 4
    const { loaded, init } = esmLoadedModule(namespace, opts.requiredFunctions, subject);
    // step 5
    if (init !== undefined) {
      try {
        await init(opts.initContext ?? {});
      } catch (cause) {
        throw loadFailed(subject, `its init(ctx) threw: ${messageOf(cause)}`, { cause });
      }
    }
    return loaded;
  }

  /**
   * wasm: step 1 the target's adapter is required; step 2 read and verify the staged bytes
   * (compiled from exactly the bytes hashed, no second read); step 3 reserve a live slot;
   * step 4 compile, instantiate with the adapter's imports, and map the exports to the api
   * through the adapter; step 5 check the api. A failure in steps 4-5 drops the instance, so
   * its reservation is undone.
   */
  async #loadWasm(subject: LoadSubject, opts: LoadOptions): Promise<LoadedModule> {
    // step 1
    if (opts.adapter === undefined) {
      throw loadFailed(subject, "wasm payloads need the target's adapter (LoadOptions.adapter) to turn the instance's exports into its api");
    }
    const adapter = checkAdapter(opts.adapter);
    const wasm = webAssembly();
    // step 2
    const { bytes } = await verifyStagedFile(this.stagedPathFor(subject.sha256, 'wasm'), subject.sha256, 'wasm', true);
    if (bytes === undefined) throw new Error('verifyStagedFile returned no bytes although they were asked for');
    // step 3
    const undo = this.#reserve(subject, 'wasm');
    try {
      // step 4
      let module: WasmModule;
      try {
        module = await wasm.compile(bytes);
      } catch (cause) {
        throw loadFailed(subject, `it is not a valid WebAssembly module: ${messageOf(cause)}`, { cause });
      }
      let instance: WasmInstance;
      try {
        instance = await wasm.instantiate(module, adapter.imports ?? {});
      } catch (cause) {
        throw loadFailed(subject, `instantiating the WebAssembly module failed: ${messageOf(cause)}`, { cause });
      }
      let api: unknown;
      try {
        api = adapter.toApi(instance.exports, instance);
      } catch (cause) {
        throw loadFailed(subject, `the target's adapter threw in toApi: ${messageOf(cause)}`, { cause });
      }
      // step 5
      return { api: checkApi(api, opts.requiredFunctions, subject, "the adapter's api") };
    } catch (error) {
      undo();
      throw error;
    }
  }

  // --- live-version accounting ---

  /**
   * Counts one more load of `subject` and returns how to take it back. A version that is
   * already live never hits the cap (it adds no memory for esm, and one more instance of a
   * version already counted for wasm); a new distinct version past the cap is refused.
   */
  #reserve(subject: LoadSubject, type: 'esm' | 'wasm'): () => void {
    let live = this.#live.get(subject.target);
    if (live === undefined) {
      live = { esm: new Set(), wasm: new Map() };
      this.#live.set(subject.target, live);
    }
    const versions = live;
    const sha = subject.sha256;
    const alreadyLive = type === 'esm' ? versions.esm.has(sha) : versions.wasm.has(sha);
    if (!alreadyLive) {
      const count = versions.esm.size + versions.wasm.size;
      if (count >= this.maxLiveVersionsPerTarget) {
        throw loadFailed(
          subject,
          `${subject.target} already has ${count} live versions in this process, the cap is ${this.maxLiveVersionsPerTarget} ` +
            '(maxLiveVersionsPerTarget); ES modules cannot be unloaded, so only a process restart reclaims their memory',
          { detail: { live: count, cap: this.maxLiveVersionsPerTarget } },
        );
      }
    }
    if (type === 'esm') {
      if (alreadyLive) return () => undefined;
      versions.esm.add(sha);
      return () => {
        versions.esm.delete(sha);
      };
    }
    versions.wasm.set(sha, (versions.wasm.get(sha) ?? 0) + 1);
    return () => {
      this.release(subject.target, sha);
    };
  }

  #checkStaged(staged: unknown): { sha256: string; type: PayloadType } {
    if (typeof staged !== 'object' || staged === null) {
      throw new HotPatchError('INVALID', `staged must be a StagedPayload returned by stage() or verifyStaged(), got ${describe(staged)}`);
    }
    const s = staged as Partial<StagedPayload>;
    const sha256 = checkSha256(s.sha256, 'staged.sha256');
    const type = checkPayloadType(s.type, 'staged.type');
    const expected = this.stagedPathFor(sha256, type);
    // Only files in this installer's staging directory are ever loaded: a record pointing
    // elsewhere (another state dir, a hand-made path) is a caller bug, not something to import.
    if (s.path !== expected) {
      throw new HotPatchError('INVALID', `staged.path ${describe(s.path)} is not where this installer stages sha256:${sha256} (${expected})`);
    }
    return { sha256, type };
  }
}

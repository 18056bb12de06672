import { emitRedactedWarning, type PatchInstaller } from '../core/index.js';
import type { RuntimeVersion } from './runtime-version.js';
import type { Target } from './target.js';

export interface DrainReport {
  version: string;
  drained: boolean;
  inflight: number;
}

/**
 * The disposal of a runtime's retired versions: each once its in-flight calls are done, and a
 * loaded module's own `dispose()` only once no version over it is left.
 */
export class VersionDisposal {
  readonly #installer: PatchInstaller | undefined;
  /** Versions over loaded payloads not yet disposed (any target: a module may serve several). */
  readonly #modules = new Set<RuntimeVersion>();

  /** `installer` releases a disposed payload (nothing to release without one). */
  constructor(installer: PatchInstaller | undefined) {
    this.#installer = installer;
  }

  /** Counts `version` among those over a loaded module, until it is disposed. */
  track(version: RuntimeVersion): void {
    this.#modules.add(version);
  }

  /**
   * Disposes a version once its in-flight calls are done. A drain timeout is reported (a
   * process warning and the returned report), never forced: disposal then waits on.
   */
  async whenDrained(target: Target<object>, version: RuntimeVersion, timeoutMs: number): Promise<DrainReport> {
    if (version === target.active || version === target.previous || version.disposed) {
      return { version: version.version, drained: true, inflight: version.inflight };
    }
    let drained = await version.waitDrained(timeoutMs);
    if (!drained) {
      emitRedactedWarning(
        `${target.name} ${version.label}: ${version.inflight} calls still in flight after ${timeoutMs} ms; dispose postponed until they finish`,
        {
          code: 'HOTPATCH_DRAIN_TIMEOUT',
        },
      );
      const report = { version: version.version, drained: false, inflight: version.inflight };
      void version.waitDrained(2 ** 31 - 1).then(() => this.#dispose(target, version));
      return report;
    }
    await this.#dispose(target, version);
    drained = true;
    return { version: version.version, drained, inflight: 0 };
  }

  async #dispose(target: Target<object>, version: RuntimeVersion): Promise<void> {
    // A version that became active or previous again (re-promoted) must stay alive.
    if (version.disposed || version === target.active || version === target.previous) return;
    version.disposed = true;
    this.#modules.delete(version);
    // ES modules are cached per file: a re-applied payload (A → B → A) gives a new version
    // over the same module — maybe still loading or self-testing. The module's dispose()
    // runs only when the last version over it goes.
    // An isolated version has an isolate of its own, ended by its dispose, whoever shares the file.
    if (version.isolate === undefined) {
      if (version.sha256 !== undefined && [...this.#modules].some((v) => v.sha256 === version.sha256)) return;
      if (version.patchId !== null && version.sha256 !== undefined) this.#installer?.release(target.name, version.sha256);
    }
    try {
      await version.hooks.dispose?.();
    } catch (error) {
      emitRedactedWarning(`dispose() of ${target.name} ${version.label} threw: ${error instanceof Error ? error.message : String(error)}`, {
        code: 'HOTPATCH_DISPOSE_FAILED',
      });
    }
  }
}

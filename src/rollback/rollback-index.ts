import { emptyTargetState, type VersionRecord } from './state-file.js';
import type { StateStore } from './state-store.js';

/** Last known good version per target, persisted in state.json (seed: setLastGood / getLastGood). */
export class RollbackIndex {
  readonly #store: StateStore;

  constructor(store: StateStore) {
    this.#store = store;
  }

  async setLastGood(target: string, record: VersionRecord): Promise<void> {
    await this.#store.update((s) => {
      const t = (s.targets[target] ??= emptyTargetState());
      t.last_good = { ...record };
    });
  }

  async getLastGood(target: string): Promise<VersionRecord | undefined> {
    const s = await this.#store.read();
    return s.targets[target]?.last_good ?? undefined;
  }
}

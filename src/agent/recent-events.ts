import type { EventBus, HotPatchEvent } from '../core/index.js';

/**
 * The last events the agent published (default 500), oldest first: what a dashboard opened
 * now shows before its event stream delivers new ones. In memory only; the audit log keeps
 * them all.
 */
export class RecentEvents {
  readonly #events: HotPatchEvent[] = [];
  readonly #max: number;
  readonly #off: () => void;

  constructor(bus: EventBus, max = 500) {
    this.#max = max;
    this.#off = bus.subscribe((event) => {
      this.#events.push(event);
      if (this.#events.length > this.#max) this.#events.splice(0, this.#events.length - this.#max);
    });
  }

  /** The kept events, of one target or all, at most `limit` of the newest. */
  list(target: string | undefined, limit: number): HotPatchEvent[] {
    const of = target === undefined ? this.#events : this.#events.filter((e) => e.target === target);
    return of.slice(Math.max(0, of.length - limit));
  }

  close(): void {
    this.#off();
  }
}

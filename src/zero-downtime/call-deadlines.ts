/** One async candidate call waiting for its answer or its deadline. */
interface Pending {
  /** When the call started; its deadline is `started + deadlineMs` as the deadline stands now. */
  started: number;
  settled: boolean;
  onTimeout: () => void;
}

/**
 * Deadlines of async candidate calls during a canary: one sweeper timer for all of them (no
 * timer per call). A call still pending past its deadline is handed to its `onTimeout` (it
 * counts as an error; with `retryOnBaseline` the caller is answered by the baseline); its
 * late answer, if it ever comes, is ignored by the caller's promise. The sweeper outlives
 * the canary until every watched call is settled or expired, then stops.
 */
export class CallDeadlines {
  readonly #pending = new Set<Pending>();
  #timer: NodeJS.Timeout | undefined;
  /**
   * The deadline of every watched call (ms), measured from its start. It may be lowered once
   * the baseline's latency is measured: calls already pending are then held to the new one.
   */
  deadlineMs: number;

  constructor(deadlineMs: number) {
    this.deadlineMs = deadlineMs;
  }

  /** Starts watching a call; returns the handle its settlement must mark with `settle`. */
  watch(onTimeout: () => void): Pending {
    const entry: Pending = { started: performance.now(), settled: false, onTimeout };
    this.#pending.add(entry);
    this.#ensureTimer();
    return entry;
  }

  /** True if the call settled in time (the caller gets its answer); false if its deadline already passed. */
  settle(entry: Pending): boolean {
    if (entry.settled) return false;
    entry.settled = true;
    this.#pending.delete(entry);
    return true;
  }

  get pending(): number {
    return this.#pending.size;
  }

  #ensureTimer(): void {
    if (this.#timer !== undefined) return;
    const tick = Math.min(250, Math.max(10, this.deadlineMs / 4));
    // Not unref'd: a caller awaiting a candidate call is owed an answer at its deadline, and
    // the sweeper stops by itself once nothing is pending.
    this.#timer = setInterval(() => this.#sweep(), tick);
  }

  #sweep(): void {
    const now = performance.now();
    for (const entry of this.#pending) if (now - entry.started >= this.deadlineMs) this.#expire(entry);
    if (this.#pending.size === 0 && this.#timer !== undefined) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }

  #expire(entry: Pending): void {
    if (entry.settled) return;
    entry.settled = true;
    this.#pending.delete(entry);
    entry.onTimeout();
  }
}

export type DeadlineHandle = ReturnType<CallDeadlines['watch']>;

/**
 * The probation timers of a runtime, one per target: when each ends (so `status()` and a
 * graceful stop can say what is left), and what to do when one runs out. Long probations are
 * chained: Node keeps no timer beyond 2^31 − 1 ms.
 */
export class ProbationClock {
  readonly #timers = new Map<string, NodeJS.Timeout>();
  readonly #ends = new Map<string, number>();

  /** Runs `onEnd` after `ms` unless cleared or restarted first; replaces the target's running one. */
  start(target: string, ms: number, onEnd: () => void): void {
    this.clear(target);
    const ends = Date.now() + ms;
    this.#ends.set(target, ends);
    const arm = (): void => {
      const left = ends - Date.now();
      const timer = setTimeout(
        () => {
          if (ends - Date.now() > 0) return arm(); // a chained long probation: not over yet
          this.#timers.delete(target);
          this.#ends.delete(target);
          onEnd();
        },
        Math.min(Math.max(0, left), 2 ** 31 - 1),
      );
      timer.unref();
      this.#timers.set(target, timer);
    };
    arm();
  }

  clear(target: string): void {
    clearTimeout(this.#timers.get(target));
    this.#timers.delete(target);
    this.#ends.delete(target);
  }

  /** Targets whose probation runs now. */
  running(): string[] {
    return [...this.#timers.keys()];
  }

  /** When the target's running probation ends (epoch ms), or undefined. */
  endsAt(target: string): number | undefined {
    return this.#ends.get(target);
  }

  clearAll(): void {
    for (const target of this.running()) this.clear(target);
  }
}

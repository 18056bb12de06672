/*
 * canary-judge, part 2: the load a service puts on a target while a patch is canaried.
 *
 * Sync targets: batches of calls with a setImmediate yield between batches (so the judge's
 * timers run, as they would between requests). The async target: a fixed number of calls in
 * flight, a new one issued as each settles. Inputs are `${prefix}${i}`: varied, so a patch
 * wrong on a share of inputs meets some of them. Every answer is checked by the client itself
 * (`checker`), and what a caller would have seen is counted: calls issued, calls that threw or
 * rejected, wrong answers, and at stop the async calls still unsettled after `settleMs`.
 */
import { checker, type TargetName } from './canary-judge-patches.js';

export interface LoadStats {
  issued: number;
  ok: number;
  /** Calls that threw (sync) or rejected (async), as the caller saw them. */
  threw: number;
  /** Answers the client found wrong. */
  wrong: number;
  /** Async calls still unsettled `settleMs` after stop (filled in by stop()). */
  unsettled: number;
  /** Async calls in flight right now. */
  inflight: number;
  /** performance.now() at which each unsettled call was issued (filled in by stop(); at most 1000). */
  unsettledIssuedAt: number[];
  firstFailure: string | undefined;
}

export interface LoadOptions {
  target: TargetName;
  /** The target's routed method, e.g. `(s) => api.digest(s)`. */
  call: (input: string) => unknown;
  async: boolean;
  prefix: string;
  /** Sync calls between two event-loop turns. */
  batch: number;
  /** Async calls kept in flight. */
  concurrency: number;
  /** How long stop() waits for in-flight async calls before counting them as unsettled. */
  settleMs: number;
}

export interface Load {
  readonly stats: LoadStats;
  /** Client-visible failures so far (unsettled calls are counted only at stop). */
  failures(): number;
  /** Stops issuing, waits for in-flight calls (at most settleMs), returns the final figures. */
  stop(): Promise<LoadStats>;
}

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const message = (error: unknown): string => (error instanceof Error ? error.message : String(error));

export function startLoad(o: LoadOptions): Load {
  const check = checker(o.target);
  const stats: LoadStats = { issued: 0, ok: 0, threw: 0, wrong: 0, unsettled: 0, inflight: 0, unsettledIssuedAt: [], firstFailure: undefined };
  let running = true;
  let i = 0;
  const threw = (error: unknown): void => {
    stats.threw += 1;
    stats.firstFailure ??= `threw: ${message(error)}`;
  };
  const answered = (input: string, output: unknown): void => {
    if (check(input, output)) stats.ok += 1;
    else {
      stats.wrong += 1;
      stats.firstFailure ??= `wrong answer for ${input}: ${String(output).slice(0, 80)}`;
    }
  };

  let loop: Promise<void> = Promise.resolve();
  /** Async calls in flight: id → performance.now() when issued. */
  const pendingSince = new Map<number, number>();
  let onSettled: (() => void) | undefined;
  if (!o.async) {
    loop = (async () => {
      while (running) {
        for (let j = 0; j < o.batch; j++) {
          const input = o.prefix + i++;
          stats.issued += 1;
          let output: unknown;
          try {
            output = o.call(input);
          } catch (error) {
            threw(error);
            continue;
          }
          answered(input, output);
        }
        await turn();
      }
    })();
  } else {
    const settled = (id: number): void => {
      pendingSince.delete(id);
      stats.inflight -= 1;
      if (running) issue();
      else if (stats.inflight === 0) onSettled?.();
    };
    const issue = (): void => {
      while (running && stats.inflight < o.concurrency) {
        const id = i++;
        const input = o.prefix + id;
        stats.issued += 1;
        stats.inflight += 1;
        pendingSince.set(id, performance.now());
        let pending: unknown;
        try {
          pending = o.call(input);
        } catch (error) {
          threw(error);
          pendingSince.delete(id);
          stats.inflight -= 1;
          continue;
        }
        Promise.resolve(pending).then(
          (output) => {
            answered(input, output);
            settled(id);
          },
          (error: unknown) => {
            threw(error);
            settled(id);
          },
        );
      }
    };
    issue();
  }

  let stopped: Promise<LoadStats> | undefined;
  return {
    stats,
    failures: () => stats.threw + stats.wrong,
    stop: () =>
      (stopped ??= (async () => {
        running = false;
        await loop;
        if (stats.inflight > 0) {
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, o.settleMs);
            onSettled = () => {
              clearTimeout(timer);
              resolve();
            };
          });
        }
        stats.unsettled = stats.inflight;
        stats.unsettledIssuedAt = [...pendingSince.values()].slice(0, 1000);
        if (stats.unsettled > 0) stats.firstFailure ??= `${stats.unsettled} calls unsettled ${o.settleMs} ms after the verdict`;
        return { ...stats };
      })()),
  };
}

/*
 * CPU time (user + system, this process) spent by a synchronous computation: what a "this is
 * fast" test bounds instead of wall-clock time, which other processes on a busy machine stretch
 * (CPU time only grows with the work done here).
 */

/** Runs `fn` and returns its result with the milliseconds of CPU time it took. */
export function cpuTimeOf<T>(fn: () => T): { result: T; cpuMs: number } {
  const before = process.cpuUsage();
  const result = fn();
  const used = process.cpuUsage(before);
  return { result, cpuMs: (used.user + used.system) / 1000 };
}

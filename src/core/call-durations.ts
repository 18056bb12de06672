/*
 * How long a call ran where it ran, by the promise its caller holds. An isolated version
 * answers across a boundary (a worker's message port, a child's IPC pipe) whose cost belongs to
 * the host's choice of isolation mode, the same for every version, not to the patch; so the
 * canary times such calls by the time they ran inside (reported by the isolate), and an isolated
 * target's built-in by the time its function ran, making the two comparable.
 */
const durations = new WeakMap<object, number>();

/** Records that the call which returned `promise` ran for `ms` (set before the promise settles). */
export function recordCallMs(promise: object, ms: number): void {
  durations.set(promise, ms);
}

/** The recorded running time of the call that returned `promise` (ms), if one was recorded. */
export function recordedCallMs(promise: object): number | undefined {
  return durations.get(promise);
}

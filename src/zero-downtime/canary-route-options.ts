/**
 * The options a canary route is built with, apart from the route (canary-route.ts): their
 * shape and `latencyShare`, which `twoPhaseApply` derives once per canary. Nothing here runs
 * on a routed call, so the route's per-call code loses nothing by reading it from here.
 */

/** Checks a candidate's output for a target whose outputs cannot be compared (see TargetDeclaration.validate). */
export type OutputValidator = (output: unknown, args: readonly unknown[], method: string) => boolean | void;

export interface CanaryRouteOptions {
  /** Salt of sticky routing: the same key buckets differently for each patch (as CodePush). */
  patchId: string;
  deterministic: boolean;
  differentialSampleRate: number;
  retryOnBaseline: boolean;
  routingKey: ((args: readonly unknown[]) => string) | undefined;
  random: () => number;
  /** Candidate calls not timed at the start (V8 has not optimised the candidate yet). */
  warmupCalls: number;
  /**
   * Steps with a smaller share time neither side for the latency test (see `latencyShare`):
   * a candidate that runs on one call in four, let alone one in twenty, runs colder than a
   * baseline that runs on the rest, so its timings would measure its rarity, not its code.
   */
  latencyShare: number;
  confidence: number;
  /** Deadline of async candidate calls (ms); updated as the baseline's latency is measured. */
  deadlineMs: number;
  validate: OutputValidator | undefined;
  methodNames: readonly string[];
}

/**
 * The smallest share at which the latency test times the sides (unless no step below 1
 * reaches it): an even split, the only share at which identical code reads identical. Between
 * two calls of a rarely-run side the service's other work evicts its code and data from the
 * CPU caches, so the rarer side reads slower: measured with the same code on both sides and
 * 1 MiB of other memory traffic between calls, ×2.3 at 5 % and ×1.4–1.6 at 25 % (beyond the
 * default ×1.3 tolerance: good patches were rolled back), ×0.9–1.0 at 50 %.
 */
const LATENCY_SHARE = 0.5;

/**
 * The share from which a canary with these steps times its sides for the latency test: 0.5,
 * or the last step below 1 when every such step is smaller (so a latency verdict is always
 * possible before promotion). Errors, deadlines and outputs are judged from the first step.
 */
export function latencyShare(steps: readonly number[]): number {
  const below = steps.filter((s) => s < 1);
  return below.length === 0 ? 1 : Math.min(LATENCY_SHARE, Math.max(...below));
}

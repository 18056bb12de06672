import { MAX_TIMER_MS } from './options.js';

/**
 * Length of canary interval `n` (0-based, counting inconclusive extensions too): the first is
 * `canaryInterval`, each next one `backoffFactor` times longer, each jittered by ±`jitterRatio`
 * so a fleet that started together does not step together.
 */
export function canaryIntervalMs(n: number, options: { canaryInterval: number; backoffFactor: number; jitterRatio: number }, random: () => number): number {
  const base = options.canaryInterval * options.backoffFactor ** n;
  const jitter = (random() * 2 - 1) * options.jitterRatio;
  // Capped at the longest delay a Node timer keeps: a longer one would fire after 1 ms.
  return Math.min(MAX_TIMER_MS, Math.max(0, base * (1 + jitter)));
}

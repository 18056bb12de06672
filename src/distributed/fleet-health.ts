import { HotPatchError, describe } from '../core/index.js';
import type { HotPatchRuntime, Target } from '../zero-downtime/index.js';
import type { TargetReport } from './agent-registration.js';
import type { FleetHealth } from './fleet-documents.js';

export interface FleetHealthOptions {
  /** Only these targets are reported (default: every target of the runtime). */
  targets?: readonly string[];
  /**
   * Error rate above which a target's active version is unhealthy (default 0.01), judged over
   * windows of at least `minCalls` calls (default 20). Only this option sets it: the canary's
   * `maxErrorRate` is an absolute ceiling that is off by default (1), so it does not stand in
   * for the fleet's health rule.
   */
  maxErrorRate?: number;
  minCalls?: number;
  /** Replaces the default health rule. */
  health?: (target: Target<object>) => FleetHealth | { health: FleetHealth; reason?: string };
}

interface HealthWindow {
  version: object;
  calls: number;
  errors: number;
  verdict: FleetHealth;
  reason?: string;
}

/**
 * What an agent reports to its fleet, per target: the active version and its health. A
 * version is `unhealthy` when the calls it served since the last judged window (at least
 * `minCalls` of them) failed above `maxErrorRate`; otherwise `healthy` — a version that passed
 * its self-test and canary and serves no traffic shows no harm. A window with fewer calls
 * keeps the previous verdict.
 */
export function fleetHealthReporter(runtime: HotPatchRuntime, options: FleetHealthOptions = {}): () => TargetReport[] {
  const maxErrorRate = options.maxErrorRate ?? 0.01;
  const minCalls = options.minCalls ?? 20;
  if (!(maxErrorRate >= 0 && maxErrorRate <= 1)) throw new HotPatchError('INVALID', `maxErrorRate must be in [0, 1], got ${describe(maxErrorRate)}`);
  if (!Number.isSafeInteger(minCalls) || minCalls < 1) throw new HotPatchError('INVALID', `minCalls must be a positive integer, got ${describe(minCalls)}`);
  if (options.health !== undefined && typeof options.health !== 'function')
    throw new HotPatchError('INVALID', `health must be a function, got ${describe(options.health)}`);
  const windows = new Map<string, HealthWindow>();

  const defaultHealth = (target: Target<object>): { health: FleetHealth; reason?: string } => {
    const v = target.active;
    let w = windows.get(target.name);
    if (w === undefined || w.version !== v) {
      w = { version: v, calls: 0, errors: 0, verdict: 'healthy' };
      windows.set(target.name, w);
    }
    const calls = v.calls - w.calls;
    if (calls >= minCalls) {
      const errors = v.errors - w.errors;
      const rate = errors / calls;
      w.verdict = rate > maxErrorRate ? 'unhealthy' : 'healthy';
      if (w.verdict === 'unhealthy')
        w.reason = `${v.label} failed ${errors} of ${calls} calls (${(rate * 100).toFixed(1)}% > ${(maxErrorRate * 100).toFixed(1)}%)`;
      else delete w.reason;
      w.calls = v.calls;
      w.errors = v.errors;
    }
    return w.reason === undefined ? { health: w.verdict } : { health: w.verdict, reason: w.reason };
  };

  return () => {
    const targets = options.targets === undefined ? runtime.list() : options.targets.map((t) => runtime.get(t));
    return targets.map((t) => {
      const verdict = options.health === undefined ? defaultHealth(t) : options.health(t);
      const h: { health: FleetHealth; reason?: string } = typeof verdict === 'string' ? { health: verdict } : verdict;
      const r: TargetReport = { target: t.name, version: t.active.version, patchId: t.active.patchId, health: h.health };
      if (h.reason !== undefined) r.reason = h.reason;
      return r;
    });
  };
}

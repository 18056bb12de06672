import { failureOf, readyFor, runsRollout, type RolloutState, type StoredAgent, type StoredRollout } from './fleet-rollout.js';

/**
 * The ring rules of a rollout, as a pure function of the rollout document, the alive agents'
 * reports and the time: what the controller writes next, if anything. The controller owns the
 * when (leadership, watch, timers) and the how (compare-and-swap); this owns the what.
 */

/** What one pass does for one rollout. */
export interface RolloutStep {
  /** States to write in order, each by compare-and-swap on the document the previous one wrote; a failed swap ends the list. */
  writes: RolloutState[];
  /** Look again after this long (a soak under way), once `writes` all landed. */
  wakeAfterMs?: number;
}

/** The statuses a controller acts on; `paused`, `completed`, `rolled-back` and `aborted` are left alone. */
export const ACTIVE_ROLLOUT_STATUSES: readonly string[] = ['running', 'halted', 'rolling-back'];

/**
 * Per active rollout (see `FleetController` for the rules in words):
 *  1. a failure anywhere halts (then rolling-back); `halted` becomes `rolling-back`;
 *     `rolling-back` becomes `rolled-back` once no alive agent runs the patch or is busy with it;
 *  2. the current ring's alive agents all ready → the soak clock starts; one not ready → it is cleared;
 *  3. soaked `soakMs` (at once when 0) → the next ring opens, or after the last `completed`;
 *  4. a ring with no alive agent waits (`emptyRings: 'wait'`) or is skipped (`'skip'`).
 */
export function nextStep(r: StoredRollout, agents: readonly StoredAgent[], now: number, by: string): RolloutStep | undefined {
  const at = new Date(now).toISOString();
  const state = (status: RolloutState['status'], reason: string | undefined, extra: Partial<RolloutState> = {}): RolloutState => {
    const s: RolloutState = { status, ring: r.state.ring, by, updatedAt: at, ...extra };
    if (r.state.ringStartedAt !== undefined && s.ringStartedAt === undefined) s.ringStartedAt = r.state.ringStartedAt;
    if (reason !== undefined) s.reason = reason;
    return s;
  };
  const advance = (reason: string): RolloutStep => {
    const next = r.state.ring + 1;
    if (next >= r.rings) return { writes: [{ ...state('completed', `${reason}; all ${r.rings} ring(s) done`), ring: r.rings }] };
    return { writes: [{ ...state('running', `${reason}; ring ${next} opened`), ring: next, ringStartedAt: at }] };
  };

  if (r.state.status === 'halted') return { writes: [state('rolling-back', r.state.reason)] };

  if (r.state.status === 'rolling-back') {
    const pending = agents.some((a) => {
      const rep = a.targets[r.target];
      return runsRollout(rep, r) || (rep?.rollout === r.id && (rep.phase === 'applying' || rep.phase === 'rolling-back'));
    });
    return pending ? undefined : { writes: [state('rolled-back', r.state.reason)] };
  }

  if (r.state.status !== 'running') return undefined;

  // step 1: a failure anywhere halts, then every ring rolls back.
  for (const a of agents) {
    const why = failureOf(a.targets[r.target], r);
    if (why === undefined) continue;
    const halted = state('halted', `agent ${a.agentId} (ring ${a.ring}) failed ${r.patchId}: ${why}`);
    return { writes: [halted, { ...halted, status: 'rolling-back' }] };
  }

  const ring = r.state.ring;
  const members = agents.filter((a) => a.ring === ring);
  // step 4: an empty ring waits or is skipped.
  if (members.length === 0) {
    if (r.emptyRings === 'skip') return advance(`ring ${ring} has no alive agent: skipped`);
    const reason = `waiting: ring ${ring} has no alive agent`;
    return r.state.reason !== reason || r.state.healthySince !== undefined ? { writes: [state('running', reason)] } : undefined;
  }
  // step 2: every agent of the ring ready, or the soak clock is cleared.
  const waiting = members.filter((a) => !readyFor(a.targets[r.target], r)).length;
  if (waiting > 0) {
    if (r.state.healthySince !== undefined || r.state.reason?.startsWith('waiting: ring') === true) {
      return { writes: [state('running', `ring ${ring}: ${waiting}/${members.length} agent(s) not yet promoted and healthy`)] };
    }
    return undefined;
  }
  if (r.soakMs === 0) return advance(`ring ${ring} passed: ${members.length} agent(s) promoted and healthy (no soak)`);
  if (r.state.healthySince === undefined) {
    const reason = `ring ${ring}: all ${members.length} agent(s) promoted and healthy; soaking ${r.soakMs} ms`;
    return { writes: [state('running', reason, { healthySince: at })], wakeAfterMs: r.soakMs };
  }
  // step 3: soaked long enough → next ring (or completed).
  const soaked = now - Date.parse(r.state.healthySince);
  if (soaked >= r.soakMs) return advance(`ring ${ring} passed: ${members.length} agent(s) healthy for ${soaked} ms`);
  return { writes: [], wakeAfterMs: r.soakMs - soaked };
}

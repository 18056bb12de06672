import { HotPatchError, isErrorCode, messageOf, type ErrorCode } from '../../core/index.js';
import {
  FINAL_ROLLOUT_STATUSES,
  RolloutVerifier,
  fleetKeys,
  listAgents,
  type AgentTargetState,
  type FleetStoreOptions,
  type KvStore,
  type RolloutDocument,
  type RolloutStatus,
  type StoredAgent,
} from '../../distributed/index.js';
import type { TrustStore } from '../../verification/index.js';
import { EXIT_OK, EXIT_REJECTED, exitCodeFor } from '../cli-error.js';
import type { Output } from '../output.js';
import { printable, ringText, statesOf, type HistoryEntry } from './fleet-format.js';
import { followStore, interruption } from './fleet-watch.js';

/**
 * `hotpatch fleet rollout --watch`: after creating a rollout, follows it until it is final,
 * printing every state it goes through (taken from the signed trail too, so a state that
 * lasted less than a read is not missed) and every change of an agent working on it. With
 * --json one object per line: `{"event":"rollout",…}`, `{"event":"agent",…}`, then the
 * usual last line. Exit 0 when it completed; 1 when it was halted, rolled back or aborted
 * (also when interrupted while halted or rolling back: it failed, whatever comes next).
 */

/** Statuses that mean the rollout failed, final or not. */
const FAILED: readonly RolloutStatus[] = ['halted', 'rolling-back', 'rolled-back', 'aborted'];

interface Read {
  rollout: RolloutDocument | undefined;
  /**
   * Why the document at the rollout's key is not believed (following goes on): it does not
   * verify, or it is another rollout's (signed, but copied under this key).
   */
  problem: string | undefined;
  /** The rollout is gone from the store (deleted by someone): nothing more to follow. */
  deleted: boolean;
  agents: StoredAgent[];
}

/** What is shown of one agent's work on the rollout's target (report times left out). */
function agentKey(t: AgentTargetState | undefined): string {
  if (t === undefined) return 'gone';
  return JSON.stringify([t.phase, t.health, t.version, t.patchId ?? null, t.reason ?? null]);
}

/**
 * The halt reason the ring rules write (rollout-progress.ts) when an agent's apply failed:
 * `agent A (ring N) failed PATCH: plan P failed (CODE): …`, the agent's own reason after the colon.
 */
const AGENT_FAILURE = /^agent \S+ \(ring \d+\) failed \S+: plan \S+ [a-z-]+ \(([A-Z][A-Z_]*)\)/;

/**
 * The code a failed rollout ends with: an operator's abort is ABORTED; a halt by the ring rules
 * is the failing agent's code when its report carries one (`SELF_TEST_FAILED`, `LOAD_FAILED`,
 * …), else the canary's verdict, CANARY_FAILED (an agent that turned unhealthy, or a reason
 * without a code).
 */
export function failureCode(doc: Pick<RolloutDocument, 'state'>): ErrorCode {
  if (doc.state.status === 'aborted') return 'ABORTED';
  const code = AGENT_FAILURE.exec(doc.state.reason ?? '')?.[1];
  // An agent's IO or NOT_FOUND is its own trouble, not this command's: exit 1 (the rollout failed), not 3.
  return code !== undefined && isErrorCode(code) && exitCodeFor(new HotPatchError(code, '')) === EXIT_REJECTED ? code : 'CANARY_FAILED';
}

/** The end of a followed rollout: the last line and the exit status. */
function outcome(doc: RolloutDocument, interrupted: boolean): { error: HotPatchError } | { message: string } {
  const where = `${doc.state.status} at ring ${ringText(doc, doc.state)}${doc.state.reason === undefined ? '' : `: ${doc.state.reason}`}`;
  if (FAILED.includes(doc.state.status)) {
    const code = failureCode(doc);
    return {
      error: new HotPatchError(code, printable(`rollout ${doc.id} ${where}`), { detail: { rollout: doc.id, status: doc.state.status, ring: doc.state.ring } }),
    };
  }
  return { message: printable(interrupted ? `stopped following rollout ${doc.id}: it is ${where}` : `rollout ${doc.id} ${where}`) };
}

export async function followRollout(
  store: KvStore,
  out: Output,
  created: RolloutDocument,
  options: FleetStoreOptions & { trust: TrustStore },
  onFailure: (error: unknown) => unknown,
): Promise<number> {
  const keys = fleetKeys(options.prefix);
  const key = `${keys.rollouts}${created.id}`;
  const verifier = new RolloutVerifier(options.trust, options.cryptoPolicy, keys.prefix);
  const emit = (event: string, fields: Record<string, unknown>, human: string): void => {
    if (out.json) out.raw(`${JSON.stringify({ event, ...fields })}\n`);
    else out.line(printable(human));
  };
  let doc = created;
  let lastSeq = -1;
  let lastProblem: string | undefined;
  const agents = new Map<string, { ring: number; key: string }>();

  const showState = (s: HistoryEntry): void => {
    const fields = { rollout: doc.id, ...s, rings: doc.rings };
    const by = s.actor === undefined ? s.by : `${s.by}, ${s.actor}`;
    emit('rollout', fields, `rollout ${doc.id} #${s.seq} ${s.status} at ring ${ringText(doc, s)} (by ${by})${s.reason === undefined ? '' : `: ${s.reason}`}`);
  };
  const showAgents = (list: StoredAgent[]): void => {
    const seen = new Set<string>();
    for (const a of list) {
      const t = a.targets[doc.target];
      // Only the agents working on this rollout: the rest of the fleet is `fleet status`'s.
      if (t?.rollout !== doc.id) continue;
      seen.add(a.agentId);
      const k = agentKey(t);
      if (agents.get(a.agentId)?.key === k) continue;
      agents.set(a.agentId, { ring: a.ring, key: k });
      const { updatedAt: _updatedAt, ...report } = t;
      const fields = { rollout: doc.id, agent: a.agentId, ring: a.ring, target: doc.target, ...report };
      const reason = t.reason === undefined ? '' : `: ${t.reason}`;
      emit('agent', fields, `  agent ${a.agentId} (ring ${a.ring}) ${t.phase}, ${t.health}, ${t.version}${reason}`);
    }
    // An agent that left the fleet (its lease ran out) or turned to another rollout.
    for (const [id, a] of agents) {
      if (seen.has(id) || a.key === 'gone') continue;
      agents.set(id, { ring: a.ring, key: 'gone' });
      emit('agent', { rollout: doc.id, agent: id, ring: a.ring, target: doc.target, gone: true }, `  agent ${id} (ring ${a.ring}) is gone`);
    }
  };

  /**
   * A verified read: newer states are shown (each state since the last shown, from the trail);
   * an older one put back (a replay) is not news. An operators' abort is taken whatever its seq:
   * it may have been written over a damaged state (see abortRollout), and it is final.
   */
  const believe = (next: RolloutDocument): void => {
    if (next.seq > doc.seq || lastSeq < 0) {
      doc = next;
      for (const s of statesOf(doc)) if (s.seq > lastSeq) showState(s);
      lastSeq = doc.seq;
    } else if (next.state.status === 'aborted' && doc.state.status !== 'aborted') {
      doc = next;
      showState(statesOf(doc).at(-1)!);
      lastSeq = Math.max(lastSeq, doc.seq);
    }
  };

  const read = async (): Promise<Read> => {
    const [raw, listed] = await Promise.all([store.get(key), listAgents(store, options)]);
    if (raw === undefined) return { rollout: undefined, problem: undefined, deleted: true, agents: listed.agents };
    try {
      const stored = verifier.verify(raw);
      // The controller's and the agents' check (storedRollout): the key names the document.
      if (stored.id !== created.id) {
        return { rollout: undefined, problem: `document id ${JSON.stringify(stored.id)} does not match its key`, deleted: false, agents: listed.agents };
      }
      return { rollout: stored, problem: undefined, deleted: false, agents: listed.agents };
    } catch (error) {
      return { rollout: undefined, problem: messageOf(error), deleted: false, agents: listed.agents };
    }
  };

  const stop = interruption(out);
  let deleted = false;
  try {
    await followStore({
      store,
      prefix: options.prefix,
      signal: stop.signal,
      read,
      onRead: (r) => {
        if (r.deleted) return (deleted = true);
        if (r.rollout === undefined) {
          if (r.problem !== lastProblem) {
            out.warn(printable(`ignored ${key}: rollout ${created.id} as stored now is not believed: ${r.problem}`));
            if (out.json) out.raw(`${JSON.stringify({ event: 'ignored', rollout: created.id, key, error: r.problem })}\n`);
          }
          lastProblem = r.problem;
        } else {
          lastProblem = undefined;
          believe(r.rollout);
        }
        showAgents(r.agents);
        return FINAL_ROLLOUT_STATUSES.includes(doc.state.status);
      },
      onError: (error) => out.warn(`cannot read rollout ${created.id}: ${messageOf(onFailure(error))}`),
    });
  } finally {
    stop.dispose();
  }
  if (deleted) throw new HotPatchError('NOT_FOUND', `rollout ${created.id} was deleted from the store while it was followed`);
  const end = outcome(doc, !FINAL_ROLLOUT_STATUSES.includes(doc.state.status));
  if ('error' in end) throw end.error;
  out.success(end.message, { rollout: doc });
  return EXIT_OK;
}

import type { AgentTargetState, RolloutDocument, RolloutState, RolloutTrailEntry } from '../../distributed/index.js';

/**
 * How `hotpatch fleet` shows rollouts and agents to people. Everything shown comes from the
 * shared store, which any store writer can fill: control and bidirectional characters are
 * replaced, so a reason or an id can never drive the terminal (a `status --watch` redraws it).
 */

/** `text` with control and bidirectional-override characters replaced by `?`. */
export function printable(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, '?');
}

/** `, canary confidence=0.995 minCalls=500` for a rollout that carries canary options. */
export function canaryText(r: RolloutDocument): string {
  if (r.zdt === undefined) return '';
  const fields = Object.entries(r.zdt).map(([k, v]) => `${k}=${Array.isArray(v) ? v.join(',') : String(v)}`);
  return fields.length === 0 ? '' : `, canary ${fields.join(' ')}`;
}

/** `1/3`; a completed rollout shows every ring passed. */
export function ringText(r: Pick<RolloutDocument, 'rings'>, state: Pick<RolloutState, 'status' | 'ring'>): string {
  return state.status === 'completed' ? `${r.rings}/${r.rings}` : `${state.ring}/${r.rings}`;
}

/** One line per rollout, as `fleet status` lists them. */
export function describeRollout(r: RolloutDocument): string {
  const signed = r.signers.length === 0 ? '' : `  signed by ${r.signers.join(', ')}; state ${r.seq} by ${r.state.by ?? 'operator'}`;
  const reason = r.state.reason === undefined ? '' : `  — ${r.state.reason}`;
  return printable(`${r.id}  ${r.target} → ${r.version} (${r.patchId})  ${r.state.status}  ring ${ringText(r, r.state)}${canaryText(r)}${signed}${reason}`);
}

/** One state of a rollout's history: the trail's entries and the current state. */
export interface HistoryEntry {
  seq: number;
  status: RolloutState['status'];
  ring: number;
  by: string;
  actor?: string;
  updatedAt: string;
  reason?: string;
}

/** Every state of a rollout, oldest first: its trail, then the current state. */
export function statesOf(r: RolloutDocument): HistoryEntry[] {
  const current: HistoryEntry = {
    seq: r.seq,
    status: r.state.status,
    ring: r.state.ring,
    by: r.state.by ?? 'operator',
    updatedAt: r.state.updatedAt ?? r.createdAt,
  };
  if (r.state.actor !== undefined) current.actor = r.state.actor;
  if (r.state.reason !== undefined) current.reason = r.state.reason;
  return [...r.trail.map((t: RolloutTrailEntry): HistoryEntry => ({ ...t })), current];
}

/** `#2  running  ring 1/3  by ctl-a  2025-…  — ring 0 soaked`. */
export function describeState(r: Pick<RolloutDocument, 'rings'>, s: HistoryEntry): string {
  const by = s.actor === undefined ? s.by : `${s.by} (${s.actor})`;
  return printable(
    `#${s.seq}  ${s.status.padEnd(12)} ring ${ringText(r, s).padEnd(6)} by ${by}  ${s.updatedAt}${s.reason === undefined ? '' : `  — ${s.reason}`}`,
  );
}

/** `agent-7  xps.crypto.hash.sha256  1.0.1 (patch-1)  promoted  healthy  — reason`. */
export function describeTarget(agentId: string, name: string, t: AgentTargetState): string {
  const patch = t.patchId === undefined ? ' (built-in)' : ` (${t.patchId})`;
  return printable(`${agentId}  ${name}  ${t.version}${patch}  ${t.phase}  ${t.health}${t.reason === undefined ? '' : `  — ${t.reason}`}`);
}

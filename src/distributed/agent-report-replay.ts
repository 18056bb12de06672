import { HotPatchError } from '../core/index.js';

/** What the guard needs of a report read (a `StoredAgent`). */
export interface SequencedReport {
  agentId: string;
  startedAt?: string;
  seq?: number;
  /** Set when the signature was verified: only verified reports are remembered. */
  signedBy?: string;
}

/**
 * What a controller remembers of each agent's signed reports: the run (`startedAt`) and the
 * highest `seq` accepted in it. Every report is signed, but a store writer can still put an
 * older signed text back — an old `failed`, or an old `applying` that clears a ring's soak
 * clock: its `seq` is lower, and it is refused. A later `startedAt` is the agent restarted: a
 * new run, whose `seq` starts again at 1. An earlier one is a report of a run that already
 * ended, and is refused as well (an agent whose clock steps back across a restart is refused
 * until the controller restarts: the safe direction).
 *
 * Only reports whose signature was verified are remembered: in the weaker mode (no agents role)
 * an unverified text could otherwise raise the bar over the agent's genuine reports.
 *
 * Memory lasts as long as the process, kept when an agent's key goes (a delete then a put of an
 * old text is still a replay), and is bounded: the agents heard from least recently are
 * forgotten past `limit`.
 */
export class AgentReportGuard {
  readonly #seen = new Map<string, { startedMs: number; seq: number }>();
  readonly #limit: number;

  constructor(limit = 65_536) {
    this.#limit = limit;
  }

  /** Throws INVALID when `report` goes back on what was already accepted; otherwise remembers it. */
  accept(report: SequencedReport): void {
    if (report.signedBy === undefined || report.seq === undefined || report.startedAt === undefined) return;
    const id = report.agentId;
    const startedMs = Date.parse(report.startedAt);
    const seen = this.#seen.get(id);
    if (seen !== undefined && startedMs < seen.startedMs) {
      throw new HotPatchError(
        'INVALID',
        `agent ${id}: report ${report.seq} is of a run started ${report.startedAt}, before the run already seen (${new Date(seen.startedMs).toISOString()}): a replay`,
        { detail: { agentId: id, seq: report.seq, startedAt: report.startedAt } },
      );
    }
    const sameRun = seen !== undefined && startedMs === seen.startedMs;
    if (sameRun && report.seq < seen.seq) {
      throw new HotPatchError('INVALID', `agent ${id}: report ${report.seq} is older than report ${seen.seq} already seen: a replay`, {
        detail: { agentId: id, seq: report.seq, seen: seen.seq },
      });
    }
    this.#seen.delete(id); // re-inserted below: the Map's order is the order of last use
    this.#seen.set(id, { startedMs, seq: sameRun ? Math.max(report.seq, seen.seq) : report.seq });
    if (this.#seen.size > this.#limit) this.#seen.delete(this.#seen.keys().next().value!);
  }
}

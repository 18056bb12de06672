import { HotPatchError, describe, parseTargetName, type HotPatchEvent } from '../core/index.js';
import type { AuditVerification } from './audit-chain.js';
import { scanAuditLog } from './audit-verify.js';

export { formatHistory, outcomeText, requesterText } from './history-format.js';

/*
 * A target's deployment history from the audit log (verified first, like the report): one
 * row per version episode — a version that served, from when to when, how it ended, who asked
 * — and one per attempt that never served (a canary rolled back, a payload refused at load,
 * a patch refused at verification). Read-only: works on a copy of the state directory, or
 * with the agent down.
 */

/** How a row ended. `serving`: serves still (as far as the log knows). */
export type HistoryOutcome = 'serving' | 'rolled-back' | 'replaced' | 'reverted-at-restart' | 'refused' | 'interrupted' | 'in-progress';

/** How a version came to serve: promoted after its canary, restored after a restart, brought back by a rollback, or serving when the log began. */
export type HistoryStart = 'promoted' | 'restored' | 'rollback' | 'before-log';

/** An operator's request (a `Requested` event) a row is attributed to. */
export interface HistoryRequest {
  action: string;
  ts: string;
  /** Line of audit.log. */
  line: number;
  /** How the caller was admitted: unix-socket, token:<name>, operator-token, read-token. */
  credential: string;
  /** The named token that admitted it (`http.tokens`; "operator" / "read" for the legacy files). */
  token?: string;
  /** Self-declared (`x-hotpatch-actor`): recorded, never trusted. */
  actor?: string;
}

export interface HistoryRow {
  version: string;
  /** The patch id; null when the log does not say (the version serving when the log began). "builtin" is the host's own code. */
  patchId: string | null;
  plan?: string;
  /** First event of the apply that brought it (Staged, CanaryStarted …), when it came by an apply. */
  attemptedAt?: string;
  /** When it started serving; absent when it never served, or served before the log began. */
  servedFrom?: string;
  start?: HistoryStart;
  /** When it stopped serving, or when the attempt ended (refused, interrupted); absent while serving or in progress. */
  endedAt?: string;
  outcome: HistoryOutcome;
  /** The error code of a refusal or a rollback (CANARY_FAILED, LOAD_FAILED, ABORTED, CRASHED …). */
  code?: string;
  /** The reason of the event that decided the outcome (the promotion's while it serves). */
  reason: string;
  /** Who asked for it to serve: the apply request, or the rollback request that brought it back. */
  requestedBy?: HistoryRequest;
  /** Who asked for it to end (a rollback or abort request), when an operator did. */
  endedBy?: HistoryRequest;
  /** Restarts it was restored through, serving on. */
  restarts: number;
  /** First and last audit.log lines the row was built from (0: implied, no line of its own). */
  firstLine: number;
  lastLine: number;
  /** False when a line it was built from is at or after the audit log's first bad line. */
  verified: boolean;
}

export interface TargetHistory {
  target: string;
  stateDir: string;
  generatedAt: string;
  /** The audit log's verification: a broken chain is reported here, never hidden. */
  audit: AuditVerification;
  /** Oldest first; the most recent `limit` when one is given. */
  rows: HistoryRow[];
  /** Rows before `limit` was applied. */
  total: number;
  /** Every target the log mentions (to spot a misspelt one). */
  targets: string[];
}

interface Entry {
  line: number;
  event: HotPatchEvent;
}

const text = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

function requestOf({ line, event }: Entry): HistoryRequest {
  const d = event.detail ?? {};
  const r: HistoryRequest = { action: text(d.action) ?? '?', ts: event.ts, line, credential: text(d.credential) ?? '?' };
  for (const key of ['token', 'actor'] as const) if (text(d[key]) !== undefined) r[key] = text(d[key])!;
  return r;
}

/** Replays one target's events into rows. */
class Replay {
  readonly rows: HistoryRow[] = [];
  #current: HistoryRow | undefined;
  readonly #attempts = new Map<string, HistoryRow>();
  readonly #promoting = new Map<string, string>();
  readonly #planOf = new Map<string, string>();
  readonly #applyByPlan = new Map<string, HistoryRequest>();
  readonly #applyByPatch = new Map<string, HistoryRequest>();
  /** The last row of each patch id, and the last row that served each version (lookups without rescanning). */
  readonly #lastOf = new Map<string | null, HistoryRow>();
  readonly #servedLast = new Map<string, HistoryRow>();
  /** The last rollback or abort request not yet matched with the event it caused. */
  #pendingEnd: HistoryRequest | undefined;

  push(entry: Entry): void {
    const { event: e, line } = entry;
    const d = e.detail ?? {};
    const plan = text(d.plan);
    if (e.type === 'Requested') return this.#request(entry);
    if (plan !== undefined && e.id !== plan) this.#planOf.set(e.id, plan);
    switch (e.type) {
      case 'Staged':
      case 'CanaryStarted':
      case 'CanaryStep':
        this.#touch(this.#attempt(entry), line);
        return;
      case 'Promoted':
        this.#touch(this.#attempt(entry), line);
        this.#promoting.set(e.id, e.reason);
        return;
      case 'Activated':
        // An operator confirmed it good (probation ended early): it serves on.
        if (d.confirmed === true) return this.#current?.patchId === e.id ? this.#touch(this.#current, line) : undefined;
        if (this.#promoting.has(e.id) || typeof d.previous === 'string') return this.#promoted(entry);
        return this.#restored(entry);
      case 'RolledBack':
        if (this.#attempts.has(e.id)) return this.#refuse(entry, text(d.code) ?? 'CANARY_FAILED');
        // The runtime names the version left by its patch id, or "builtin" for the built-in.
        if (
          this.#current !== undefined &&
          this.#current.patchId === (e.id === 'builtin' ? null : e.id) &&
          (text(d.from) ?? this.#current.version) === this.#current.version
        )
          return this.#rolledBack(entry);
        if (this.#merge(entry)) return;
        if (text(d.from) !== undefined) {
          this.#current = this.#implied(text(d.from)!, e.id, line);
          return this.#rolledBack(entry);
        }
        return this.#refuse(entry, text(d.code) ?? 'CANARY_FAILED');
      case 'Aborted':
        if (d.paused === true) {
          const row = this.#attempt(entry);
          row.reason = e.reason;
          return this.#touch(row, line);
        }
        if (this.#attempts.has(e.id) || !this.#merge(entry)) this.#refuse(entry, 'ABORTED');
        return;
      case 'Failed':
        if (text(d.restored) !== undefined) return this.#revertedAtRestart(entry);
        if (this.#attempts.has(e.id) || !this.#merge(entry)) this.#refuse(entry, text(d.code) ?? 'FAILED');
        return;
      default:
        return; // Planned, Fetched, Verified, Approved: the plan link above is all they give
    }
  }

  #request(entry: Entry): void {
    const r = requestOf(entry);
    const d = entry.event.detail ?? {};
    if (r.action === 'apply') {
      if (text(d.plan) !== undefined) this.#applyByPlan.set(text(d.plan)!, r);
      if (text(d.patch) !== undefined) this.#applyByPatch.set(text(d.patch)!, r);
    } else if (r.action === 'rollback' || r.action === 'abort') {
      this.#pendingEnd = r;
    }
    // A rollback or abort request that changed nothing is not credited with a later end.
    if (r.action !== 'rollback' && r.action !== 'abort') this.#pendingEnd = undefined;
  }

  #askedFor(patchId: string, plan: string | undefined): HistoryRequest | undefined {
    return (plan === undefined ? undefined : this.#applyByPlan.get(plan)) ?? this.#applyByPatch.get(patchId);
  }

  #touch(row: HistoryRow, line: number): void {
    row.lastLine = Math.max(row.lastLine, line);
  }

  #add(row: HistoryRow): HistoryRow {
    this.rows.push(row);
    this.#lastOf.set(row.patchId, row);
    return row;
  }

  #serving(row: HistoryRow): void {
    this.#current = row;
    this.#servedLast.set(row.version, row);
  }

  /** A new row about the event's patch; `attribute`: credit the apply request that asked for it. */
  #row(entry: Entry, fields: Partial<HistoryRow> & Pick<HistoryRow, 'outcome' | 'reason'>, attribute = true): HistoryRow {
    const { event: e, line } = entry;
    const plan = text(e.detail?.plan) ?? this.#planOf.get(e.id);
    // A plan that failed before its patch was known carries the plan's id in place of a patch id.
    const patchId = plan !== undefined && e.id === plan && e.version === '' ? null : e.id;
    const row: HistoryRow = { version: e.version, patchId, restarts: 0, firstLine: line, lastLine: line, verified: true, ...fields };
    if (plan !== undefined) row.plan = plan;
    const asked = attribute ? this.#askedFor(e.id, plan) : undefined;
    if (asked !== undefined) row.requestedBy = asked;
    return this.#add(row);
  }

  /** The open attempt of this patch, opened now if there is none (closing another left open: the runtime runs one apply per target). */
  #attempt(entry: Entry): HistoryRow {
    const open = this.#attempts.get(entry.event.id);
    if (open !== undefined) return open;
    this.#interruptAttempts(entry, `no outcome recorded; ${entry.event.id} was applied next`);
    const row = this.#row(entry, { attemptedAt: entry.event.ts, outcome: 'in-progress', reason: entry.event.reason });
    this.#attempts.set(entry.event.id, row);
    return row;
  }

  #interruptAttempts(entry: Entry, reason: string): void {
    for (const row of this.#attempts.values()) this.#end(row, entry, 'interrupted', reason);
    this.#attempts.clear();
  }

  #end(row: HistoryRow, entry: Entry, outcome: HistoryOutcome, reason: string, code?: string): void {
    row.outcome = outcome;
    row.endedAt = entry.event.ts;
    row.reason = reason;
    if (code !== undefined) row.code = code;
    this.#touch(row, entry.line);
  }

  /** A row for a version the log shows only by name (serving when it began): no line of its own. */
  #implied(version: string, patchId: string | null, line: number): HistoryRow {
    const row = this.#add({
      version,
      patchId,
      start: 'before-log',
      outcome: 'serving',
      reason: 'serving when the audit log begins',
      restarts: 0,
      firstLine: 0,
      lastLine: line,
      verified: true,
    });
    this.#servedLast.set(version, row);
    return row;
  }

  #promoted(entry: Entry): void {
    const { event: e } = entry;
    const row = this.#attempt(entry);
    this.#attempts.delete(e.id);
    const previous = text(e.detail?.previous);
    const old = this.#current ?? (previous === undefined ? undefined : this.#implied(previous, null, entry.line));
    if (old !== undefined) this.#end(old, entry, 'replaced', `replaced by ${e.version} (${e.id})`);
    Object.assign(row, { servedFrom: e.ts, start: 'promoted', outcome: 'serving', reason: this.#promoting.get(e.id) ?? e.reason });
    this.#promoting.delete(e.id);
    this.#touch(row, entry.line);
    this.#serving(row);
  }

  #restored(entry: Entry): void {
    const { event: e } = entry;
    this.#interruptAttempts(entry, 'the process restarted during its apply');
    const current = this.#current;
    if (current !== undefined && current.patchId === e.id && current.version === e.version) {
      current.restarts += 1;
      return this.#touch(current, entry.line);
    }
    if (current !== undefined) this.#end(current, entry, 'replaced', `${e.version} (${e.id}) was restored at restart instead`);
    // Nobody asked for a restart: the row credits no request.
    this.#serving(this.#row(entry, { servedFrom: e.ts, start: 'restored', outcome: 'serving', reason: e.reason }, false));
  }

  #rolledBack(entry: Entry): void {
    const { event: e } = entry;
    const d = e.detail ?? {};
    const bad = this.#current!;
    const by = d.phase === 'probation' ? undefined : this.#takeEnd();
    this.#end(bad, entry, 'rolled-back', e.reason, text(d.code));
    if (by !== undefined) bad.endedBy = by;
    const to = text(d.to) ?? e.version;
    // Which patch that version was: the last row that served it.
    const before = this.#servedLast.get(to);
    const reason = `brought back by the rollback of ${bad.version}: ${e.reason}`;
    const row: HistoryRow = {
      version: to,
      patchId: before === bad ? null : (before?.patchId ?? null),
      servedFrom: e.ts,
      start: 'rollback',
      outcome: 'serving',
      reason,
      restarts: 0,
      firstLine: entry.line,
      lastLine: entry.line,
      verified: true,
    };
    if (by !== undefined) row.requestedBy = by;
    this.#serving(this.#add(row));
  }

  #revertedAtRestart(entry: Entry): void {
    const { event: e } = entry;
    // Its promotion may have died with the process before reaching the log: then its attempt is what served.
    const attempt = this.#attempts.get(e.id);
    this.#attempts.delete(e.id);
    this.#interruptAttempts(entry, 'the process restarted during its apply');
    const current = this.#current;
    if (current !== undefined && current.patchId === e.id) {
      this.#end(current, entry, 'reverted-at-restart', e.reason);
      this.#current = undefined;
      return;
    }
    if (attempt !== undefined) this.#end(attempt, entry, 'reverted-at-restart', e.reason);
    else this.#row(entry, { endedAt: e.ts, outcome: 'reverted-at-restart', reason: e.reason });
    // Its promotion never reached the log, so the row serving before it still is what the log
    // knows serves: the restore that follows continues it (or replaces it, if another version
    // came back), rather than leaving it open beside a second row.
  }

  #refuse(entry: Entry, code: string): void {
    const { event: e } = entry;
    const row = this.#attempts.get(e.id) ?? this.#row(entry, { outcome: 'refused', reason: e.reason });
    this.#attempts.delete(e.id);
    this.#end(row, entry, 'refused', e.reason, code);
    if (code === 'ABORTED') {
      const by = this.#takeEnd();
      if (by !== undefined) row.endedBy = by;
    }
  }

  /**
   * A second event about an attempt already ended (an abort's RolledBack after its Aborted; a
   * CRASHED verdict after the restart that interrupted it) adds to that row, not a new one.
   */
  #merge(entry: Entry): boolean {
    const { event: e } = entry;
    const plan = text(e.detail?.plan);
    const row = this.#lastOf.get(e.id);
    if (row === undefined || row.servedFrom !== undefined || (row.outcome !== 'refused' && row.outcome !== 'interrupted')) return false;
    if (plan !== undefined && row.plan !== undefined && plan !== row.plan) return false;
    if (row.outcome === 'interrupted' && e.type === 'Failed') this.#end(row, entry, 'refused', e.reason, text(e.detail?.code) ?? 'FAILED');
    else this.#touch(row, entry.line);
    return true;
  }

  #takeEnd(): HistoryRequest | undefined {
    const by = this.#pendingEnd;
    this.#pendingEnd = undefined;
    return by;
  }
}

/**
 * The history of one target from `<stateDir>/audit.log`, verified first (the verdict is part
 * of the answer; rows built from lines at or after the first bad one are marked unverified).
 * `limit` keeps the most recent rows.
 */
export async function buildHistory(stateDir: string, options: { target: string; limit?: number }): Promise<TargetHistory> {
  if (typeof stateDir !== 'string' || stateDir.length === 0)
    throw new HotPatchError('INVALID', `stateDir must be a non-empty string, got ${describe(stateDir)}`);
  const target = parseTargetName(options?.target, 'target');
  const limit = options.limit;
  if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 1))
    throw new HotPatchError('INVALID', `limit must be a positive integer, got ${describe(limit)}`);
  const replay = new Replay();
  const targets = new Set<string>();
  const audit = await scanAuditLog(stateDir, (entry) => {
    targets.add(entry.event.target);
    if (entry.event.target === target) replay.push(entry);
  });
  const firstBad = audit.firstBad?.line ?? Number.POSITIVE_INFINITY;
  const rows = replay.rows
    .map((row, i) => ({ row, i }))
    .sort((a, b) => a.row.firstLine - b.row.firstLine || a.i - b.i)
    .map(({ row }) => {
      const lines = [row.lastLine, row.requestedBy?.line ?? 0, row.endedBy?.line ?? 0];
      row.verified = lines.every((l) => l < firstBad);
      return row;
    });
  return {
    target,
    stateDir,
    generatedAt: new Date().toISOString(),
    audit,
    rows: limit === undefined ? rows : rows.slice(-limit),
    total: rows.length,
    targets: [...targets].sort(),
  };
}

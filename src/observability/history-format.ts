import { join } from 'node:path';
import type { HistoryRequest, HistoryRow, TargetHistory } from './history.js';

/* The text form of a target's history (`hotpatch history`): one line per row. */

/** Refusal codes in words. */
const REFUSALS: Record<string, string> = {
  CANARY_FAILED: 'canary failed',
  LOAD_FAILED: 'load failed',
  SELF_TEST_FAILED: 'self-test failed',
  ABORTED: 'aborted',
  CRASHED: 'crashed the process',
  APPROVAL_MISSING: 'approval missing',
  POLICY_DENIED: 'policy denied',
  DOWNGRADE: 'downgrade',
};

/** Who asked, in one line: the credential (naming the token), then the declared actor. */
export function requesterText(r: HistoryRequest): string {
  return `${r.credential}${r.actor === undefined ? '' : ` (${r.actor})`}`;
}

export function outcomeText(row: HistoryRow): string {
  const by = row.endedBy === undefined ? '' : ` by ${requesterText(row.endedBy)}`;
  switch (row.outcome) {
    case 'refused':
      return `refused: ${REFUSALS[row.code ?? ''] ?? (row.code ?? 'failed').toLowerCase().replace(/_/g, ' ')}${by}`;
    case 'rolled-back':
      return `rolled back${row.code === 'CANARY_FAILED' ? ' (regressed)' : ''}${by}`;
    default:
      return `${row.outcome.replace(/-/g, ' ')}${by}`;
  }
}

const MAX_REASON = 120;
const oneLine = (s: string): string => s.replace(/[\r\n\t]+/g, ' ').replace(/[\x00-\x1f\x7f]/g, '?');

/** The history as a text table (full reasons are in the JSON). */
export function formatHistory(h: TargetHistory): string {
  const out: string[] = [];
  const log = join(h.stateDir, 'audit.log');
  if (h.audit.ok) out.push(`History of ${h.target} from ${log}: audit log verified (${h.audit.lines} lines, hash chain intact).`);
  else
    out.push(
      `History of ${h.target} from ${log}: AUDIT LOG NOT VERIFIED — first bad line ${h.audit.firstBad?.line ?? '?'}: ${oneLine(h.audit.firstBad?.reason ?? 'unknown')}. Rows from that line on are marked [unverified].`,
    );
  if (h.rows.length === 0) {
    out.push(`No history recorded for ${h.target}${h.targets.length === 0 ? '' : ` (targets in the log: ${h.targets.slice(0, 20).join(', ')})`}.`);
    return `${out.join('\n')}\n`;
  }
  if (h.total > h.rows.length) out.push(`The ${h.rows.length} most recent of ${h.total} rows.`);
  out.push('');
  const table = [['VERSION', 'PATCH', 'SERVED FROM', 'SERVED UNTIL', 'OUTCOME', 'ASKED BY', 'REASON']];
  for (const r of h.rows) {
    const from =
      r.servedFrom !== undefined
        ? `${r.servedFrom} (${r.start ?? '?'})`
        : r.start === 'before-log'
          ? 'before the log'
          : `never (tried ${r.attemptedAt ?? r.endedAt ?? '?'})`;
    const until =
      r.endedAt !== undefined && r.servedFrom !== undefined
        ? r.endedAt
        : r.outcome === 'serving'
          ? 'now'
          : r.endedAt !== undefined && r.start === 'before-log'
            ? r.endedAt
            : '—';
    const reason = oneLine(r.reason);
    table.push([
      r.version === '' ? '—' : oneLine(r.version),
      r.patchId === null ? '—' : oneLine(r.patchId),
      from,
      until,
      `${outcomeText(r)}${r.restarts > 0 ? `, ${r.restarts} restart(s)` : ''}${r.verified ? '' : ' [unverified]'}`,
      r.requestedBy === undefined ? '—' : oneLine(requesterText(r.requestedBy)),
      reason.length > MAX_REASON ? `${reason.slice(0, MAX_REASON - 1)}…` : reason,
    ]);
  }
  const widths = table[0]!.map((_, c) => Math.max(...table.map((row) => row[c]!.length)));
  for (const row of table)
    out.push(
      row
        .map((cell, c) => (c === row.length - 1 ? cell : cell.padEnd(widths[c]!)))
        .join('  ')
        .trimEnd(),
    );
  return `${out.join('\n')}\n`;
}

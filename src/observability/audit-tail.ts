import type { FileHandle } from 'node:fs/promises';
import { MAX_LINE_BYTES, ZERO_HASH, formatHead, parseLine, sha256Hex, type AuditHead } from './audit-chain.js';

/*
 * The end of the audit log as the writer finds it when it opens: the last complete lines, a
 * partial line a crash left, and whether that matches the head state.json records.
 */

/** What `open()` found and did about the end of the log (see `AuditLog.open`). */
export interface AuditReconciliation {
  /** Bytes of an interrupted (never committed) last line that were cut off. */
  truncatedBytes: number;
  /** A complete line whose hash state.json had announced, written just before a crash: now the head. */
  acceptedLine?: number;
  /** False when the end of the log does not match state.json; nothing was repaired (run verify). */
  consistent: boolean;
  reason?: string;
}

interface TailLine {
  hash: string;
  seq: number | undefined;
}

export interface AuditTail {
  lines: TailLine[];
  lastIsFirst: boolean;
  partial: number;
  tooLong: boolean;
}

/** How much of the end of the log `open()` reads: the last two lines and a partial one. */
const TAIL_WINDOW = 3 * (MAX_LINE_BYTES + 1);
const NEWLINE = 0x0a;

/**
 * Where appends continue from, given the recorded head and the tail of the file: the head
 * itself when the last line is it; the last line when state.json had announced it (a crash
 * between the line's fsync and the head update); otherwise inconsistent, with the reason.
 */
export function reconcileTail(head: AuditHead, tail: AuditTail): { reconciliation: AuditReconciliation; seq: number; hash: string } {
  const last = tail.lines.at(-1);
  const beforeLast = tail.lines.length >= 2 ? tail.lines.at(-2) : tail.lastIsFirst ? { hash: ZERO_HASH, seq: 0 } : undefined;
  const r: AuditReconciliation = { truncatedBytes: 0, consistent: false };
  if (last === undefined) {
    // No complete line: consistent only with an empty head.
    r.consistent = head.seq === 0 && !tail.tooLong;
    if (!r.consistent) r.reason = tail.tooLong ? 'the last line is longer than the limit' : `state.json's head covers ${head.seq} lines but audit.log has none`;
    return { reconciliation: r, seq: head.seq, hash: head.hash };
  }
  if (last.seq === head.seq && last.hash === head.hash) {
    r.consistent = true;
    return { reconciliation: r, seq: head.seq, hash: head.hash };
  }
  if (head.pending !== undefined && last.hash === head.pending && last.seq === head.seq + 1 && beforeLast !== undefined && beforeLast.hash === head.hash) {
    // A crash after the line's fsync, before the head moved: the line was announced, so it is ours.
    r.consistent = true;
    r.acceptedLine = last.seq;
    return { reconciliation: r, seq: last.seq, hash: last.hash };
  }
  r.reason = `the last line of audit.log (seq ${last.seq ?? '?'}, SHA-256 ${last.hash}) is not the head state.json records (${formatHead(head)})`;
  return { reconciliation: r, seq: head.seq, hash: head.hash };
}

/** The last (up to) two complete lines of the file and the length of a trailing partial line. */
export async function readTail(handle: FileHandle, size: number): Promise<AuditTail> {
  const start = Math.max(0, size - TAIL_WINDOW);
  const window = Buffer.alloc(size - start);
  let got = 0;
  while (got < window.length) {
    const { bytesRead } = await handle.read(window, got, window.length - got, start + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  const bytes = window.subarray(0, got);
  const lastNewline = bytes.lastIndexOf(NEWLINE);
  if (lastNewline === -1) {
    // No newline in the window: either one partial line (start 0) or a line past every limit.
    return { lines: [], lastIsFirst: false, partial: start === 0 ? bytes.length : 0, tooLong: start > 0 };
  }
  const partial = bytes.length - lastNewline - 1;
  const lines: TailLine[] = [];
  let end = lastNewline;
  let lastIsFirst = false;
  for (let i = 0; i < 2; i++) {
    const prevNewline = end === 0 ? -1 : bytes.lastIndexOf(NEWLINE, end - 1);
    if (prevNewline === -1 && start > 0) break; // the line may begin before the window
    const text = bytes.subarray(prevNewline + 1, end);
    const parsed = parseLine(text);
    lines.unshift({ hash: sha256Hex(text), seq: 'error' in parsed ? undefined : parsed.seq });
    if (prevNewline === -1) {
      lastIsFirst = i === 0;
      break;
    }
    end = prevNewline;
  }
  return { lines, lastIsFirst, partial, tooLong: false };
}

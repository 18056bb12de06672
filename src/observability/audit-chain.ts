import { createHash } from 'node:crypto';
import { EVENT_TYPES, HotPatchError, decodeJsonObject, describe, rejectUnknownFields, type HotPatchEvent } from '../core/index.js';

/**
 * The pure part of the audit log: line encoding, the head kept in state.json, and the chain
 * check. Bytes in, verdict out — no files here (`audit-log.ts` does the I/O).
 *
 * ## Line format (one JSON object per line, UTF-8, `\n`-terminated)
 *
 * ```
 * {"seq":N,"prev":"<hex>","event":{"type":…,"id":…,"target":…,"version":…,"reason":…,"ts":…,"detail":{…}}}
 * ```
 * - `seq` is 1 for the first line, then 2, 3, … with no gap;
 * - `prev` is the SHA-256 (lowercase hex) of the previous line's bytes as stored, without its
 *   newline; 64 zeros for the first line;
 * - `event` is the `HotPatchEvent` (docs/ARCHITECTURE.md "Events"); `detail` only when present.
 * The hash of a line is always taken over the bytes in the file, never over a re-serialisation.
 *
 * ## Head in state.json (`audit_head`)
 *
 * `"<seq>:<sha256 of line seq>"`, or, while an append is in progress,
 * `"<seq>:<sha256 of line seq>+<sha256 of line seq+1>"`: the hash of the next line is
 * announced (write-ahead) before that line is written, and the head moves to it once the line
 * is durable. So a crash between the line's fsync and the head update leaves a line that
 * state.json vouches for, and nothing else: a line appended by someone else, even correctly
 * chained, is never covered (its hash was not announced). An empty log has head `"0:<64 zeros>"`
 * (or no `audit_head` at all).
 */

export const ZERO_HASH = '0'.repeat(64);
/** Longest line accepted (bytes, without the newline); an event's `detail` beyond this is refused. */
export const MAX_LINE_BYTES = 256 * 1024;

const HEX64 = /^[0-9a-f]{64}$/;
const HEAD_PATTERN = /^(0|[1-9][0-9]{0,15}):([0-9a-f]{64})(?:\+([0-9a-f]{64}))?$/;
const LINE_FIELDS = new Set(['seq', 'prev', 'event']);
const EVENT_FIELDS = new Set(['type', 'id', 'target', 'version', 'reason', 'ts', 'detail']);
const EVENT_STRING_FIELDS = ['id', 'target', 'version', 'reason', 'ts'] as const;

export function sha256Hex(bytes: Uint8Array | string): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** The chain position state.json records (see "Head in state.json" above). */
export interface AuditHead {
  /** Number of the last committed line (0: none). */
  seq: number;
  /** SHA-256 of line `seq` (64 zeros when `seq` is 0). */
  hash: string;
  /** Announced SHA-256 of line `seq + 1`, which may or may not have been written. */
  pending?: string;
}

export function formatHead(head: AuditHead): string {
  return `${head.seq}:${head.hash}${head.pending === undefined ? '' : `+${head.pending}`}`;
}

/** Parses `audit_head`; a malformed value is `INVALID` (it is never guessed at). */
export function parseHead(value: string): AuditHead {
  const m = HEAD_PATTERN.exec(value);
  const seq = m === null ? NaN : Number(m[1]);
  if (m === null || !Number.isSafeInteger(seq)) {
    throw new HotPatchError('INVALID', `state.json audit_head must be "<seq>:<sha256 hex>" (optionally "+<sha256 hex>"), got ${describe(value)}`);
  }
  const hash = m[2]!;
  if (seq === 0 && hash !== ZERO_HASH) {
    throw new HotPatchError('INVALID', `state.json audit_head: seq 0 must carry the zero hash, got ${hash}`);
  }
  return m[3] === undefined ? { seq, hash } : { seq, hash, pending: m[3] };
}

/** Checks an event before it is written: a known type, string fields, a JSON-able detail. */
export function checkEvent(event: unknown, name = 'event'): HotPatchEvent {
  if (typeof event !== 'object' || event === null || Array.isArray(event)) {
    throw new HotPatchError('INVALID', `${name} must be an object, got ${describe(event)}`);
  }
  const e = event as Record<string, unknown>;
  if (!(EVENT_TYPES as readonly unknown[]).includes(e.type)) {
    throw new HotPatchError('INVALID', `${name}.type must be one of ${EVENT_TYPES.join(', ')}, got ${describe(e.type)}`);
  }
  for (const field of EVENT_STRING_FIELDS) {
    if (typeof e[field] !== 'string') throw new HotPatchError('INVALID', `${name}.${field} must be a string, got ${describe(e[field])}`);
  }
  if (e.detail !== undefined && (typeof e.detail !== 'object' || e.detail === null || Array.isArray(e.detail))) {
    throw new HotPatchError('INVALID', `${name}.detail must be an object, got ${describe(e.detail)}`);
  }
  return event as HotPatchEvent;
}

export interface EncodedLine {
  /** The line's text, without the newline. */
  text: string;
  /** SHA-256 of the line's UTF-8 bytes. */
  hash: string;
}

/** Builds line `seq` chained to `prev` (only the event's known fields are kept, in a fixed order). */
export function encodeLine(seq: number, prev: string, event: HotPatchEvent): EncodedLine {
  const e = checkEvent(event);
  const body: Record<string, unknown> = {
    type: e.type,
    id: e.id,
    target: e.target,
    version: e.version,
    reason: e.reason,
    ts: e.ts,
  };
  if (e.detail !== undefined) body.detail = e.detail;
  let text: string;
  try {
    text = JSON.stringify({ seq, prev, event: body });
  } catch (cause) {
    throw new HotPatchError('INVALID', `event ${e.type} for ${e.target} cannot be written as JSON: ${(cause as Error).message}`, { cause });
  }
  const size = Buffer.byteLength(text, 'utf8');
  if (size > MAX_LINE_BYTES) {
    throw new HotPatchError('TOO_LARGE', `audit line for ${e.type} of ${e.target} has ${size} bytes, more than the limit of ${MAX_LINE_BYTES}`, {
      detail: { limit: MAX_LINE_BYTES, size },
    });
  }
  return { text, hash: sha256Hex(text) };
}

export interface ParsedLine {
  seq: number;
  prev: string;
  event: HotPatchEvent;
}

/**
 * Parses one line (bytes without the newline), strictly with the core kit; returns why it is
 * malformed instead of throwing. The reason names the line as `name` (`line 7 has unknown
 * field "x" (allowed: seq, prev, event)`).
 */
export function parseLine(bytes: Uint8Array, name = 'the line'): ParsedLine | { error: string } {
  try {
    const obj = decodeJsonObject(bytes, name);
    rejectUnknownFields(obj, LINE_FIELDS, name);
    if (typeof obj.seq !== 'number' || !Number.isSafeInteger(obj.seq) || obj.seq < 1) return { error: `${name} has no valid seq (got ${describe(obj.seq)})` };
    if (typeof obj.prev !== 'string' || !HEX64.test(obj.prev)) return { error: `${name} has no valid prev hash (got ${describe(obj.prev)})` };
    const event = checkEvent(obj.event, `${name}: event`);
    rejectUnknownFields(obj.event as Record<string, unknown>, EVENT_FIELDS, `${name}: event`);
    return { seq: obj.seq, prev: obj.prev, event };
  } catch (error) {
    return { error: (error as Error).message };
  }
}

export interface AuditVerification {
  /** True when every line chains and the last one is covered by state.json's head. */
  ok: boolean;
  /** Complete (newline-terminated) lines in audit.log. */
  lines: number;
  /** SHA-256 of the last complete line (undefined when there is none). */
  head: string | undefined;
  /** `audit_head` as state.json records it (undefined when absent). */
  recordedHead: string | undefined;
  /** The first line that is not trustworthy, 1-based, and why. */
  firstBad?: { line: number; reason: string };
}

/** One parsed line, for reports: `verified` is false from the first bad line on. */
export interface AuditEntry {
  line: number;
  event: HotPatchEvent;
}

/**
 * Checks lines one by one as they stream in, then the end of the chain against the head.
 * Keeps O(1) memory: only the hashes of the lines the head names are remembered.
 */
export class AuditChainChecker {
  readonly #head: AuditHead | undefined;
  readonly #headError: string | undefined;
  readonly #recordedHead: string | undefined;
  #lines = 0;
  #prevHash = ZERO_HASH;
  #chainBad: { line: number; reason: string } | undefined;
  /** SHA-256 of line head.seq and head.seq + 1, captured on the way. */
  #hashAtHead: string | undefined;
  #hashAfterHead: string | undefined;

  /** `recordedHead`: state.json's `audit_head` (undefined: none); `headError`: why state.json could not be read. */
  constructor(recordedHead: string | undefined, headError?: string) {
    this.#recordedHead = recordedHead;
    if (headError !== undefined) {
      this.#headError = headError;
    } else if (recordedHead !== undefined) {
      try {
        this.#head = parseHead(recordedHead);
      } catch (error) {
        this.#headError = (error as Error).message;
      }
    }
  }

  /** Feeds the next complete line (without its newline); returns its entry when it parses. */
  push(bytes: Uint8Array, tooLong = false): AuditEntry | undefined {
    this.#lines += 1;
    const n = this.#lines;
    const hash = sha256Hex(bytes);
    if (this.#head !== undefined) {
      if (n === this.#head.seq) this.#hashAtHead = hash;
      if (n === this.#head.seq + 1) this.#hashAfterHead = hash;
    }
    const expectedPrev = this.#prevHash;
    this.#prevHash = hash;
    if (tooLong) {
      this.#bad(n, `line ${n} is longer than the limit of ${MAX_LINE_BYTES} bytes`);
      return undefined;
    }
    const parsed = parseLine(bytes, `line ${n}`);
    if ('error' in parsed) {
      this.#bad(n, parsed.error);
      return undefined;
    }
    // step 1: sequence numbers run 1, 2, 3, … (a gap = a line dropped; a step back = reordered)
    if (parsed.seq !== n) {
      const why = parsed.seq > n ? `line ${n} was removed or lines were reordered` : `lines were reordered or duplicated`;
      this.#bad(n, `line ${n} has seq ${parsed.seq}, expected ${n} (${why})`);
    } else if (parsed.prev !== expectedPrev) {
      // step 2: each line carries the SHA-256 of the one before: a mismatch means the previous
      // line's bytes changed (or this line's prev did); the earlier line is the one named.
      if (n === 1) this.#bad(1, `line 1 must chain to the zero hash, but its prev is ${parsed.prev}`);
      else this.#bad(n - 1, `line ${n - 1} was modified: its SHA-256 is ${expectedPrev}, but line ${n} records prev ${parsed.prev}`);
    }
    return { line: n, event: parsed.event };
  }

  #bad(line: number, reason: string): void {
    if (this.#chainBad === undefined || line < this.#chainBad.line) this.#chainBad = { line, reason };
  }

  /** The verdict, once every complete line was pushed; `partialTail` = bytes after the last newline. */
  finish(partialTail: number): AuditVerification {
    const n = this.#lines;
    const out: AuditVerification = { ok: false, lines: n, head: n === 0 ? undefined : this.#prevHash, recordedHead: this.#recordedHead };
    const candidates: { line: number; reason: string }[] = [];
    if (this.#chainBad !== undefined) candidates.push(this.#chainBad);
    // step 3: the end of the chain must be the head state.json records (or its announced next line)
    const headBad = this.#headVerdict(partialTail);
    if (headBad !== undefined) candidates.push(headBad);
    if (candidates.length === 0) return { ...out, ok: true };
    const first = candidates.reduce((a, b) => (b.line < a.line ? b : a));
    return { ...out, firstBad: first };
  }

  #headVerdict(partialTail: number): { line: number; reason: string } | undefined {
    const n = this.#lines;
    const partial =
      partialTail > 0
        ? `line ${n + 1} is incomplete (${partialTail} bytes without a final newline: an interrupted append, removed when the log is next opened, or a truncated line)`
        : undefined;
    if (this.#headError !== undefined) return { line: 1, reason: `no line is covered: ${this.#headError}` };
    const head = this.#head;
    if (head === undefined) {
      if (n > 0) return { line: 1, reason: `state.json has no audit_head, so no line of audit.log is covered (the head was removed or the state reset)` };
      return partial === undefined ? undefined : { line: 1, reason: partial };
    }
    if (head.seq > n) {
      return {
        line: n + 1,
        reason:
          `line ${n + 1} is missing: state.json's head covers ${head.seq} lines but audit.log has ${n} complete lines (lines were dropped or truncated)` +
          (partial === undefined ? '' : `; ${partial}`),
      };
    }
    if (head.seq > 0 && this.#hashAtHead !== head.hash) {
      return {
        line: head.seq,
        reason: `line ${head.seq} does not match the head in state.json: its SHA-256 is ${this.#hashAtHead} but the head records ${head.hash} (the line or the head was modified)`,
      };
    }
    let covered = head.seq;
    if (n > covered && head.pending !== undefined && this.#hashAfterHead === head.pending) covered += 1;
    if (n > covered) {
      return {
        line: covered + 1,
        reason: `line ${covered + 1} is not covered by the head in state.json (${covered} lines): it was appended outside the audit writer (a forged line) or the head was rolled back`,
      };
    }
    return partial === undefined ? undefined : { line: n + 1, reason: partial };
  }
}

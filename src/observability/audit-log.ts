import { constants, promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { HotPatchError, type EventBus, type HotPatchEvent } from '../core/index.js';
import { fileError, fsyncDirectory, readFileBounded, readFileChunks, withCleanupFailure } from '../repo/atomic-file.js';
import { StateStore, parseStateFile } from '../rollback/index.js';
import {
  AuditChainChecker,
  MAX_LINE_BYTES,
  ZERO_HASH,
  checkEvent,
  encodeLine,
  formatHead,
  parseHead,
  parseLine,
  sha256Hex,
  type AuditEntry,
  type AuditHead,
  type AuditVerification,
} from './audit-chain.js';

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

export interface AuditLogOptions {
  /**
   * The process's one writer of state.json (e.g. `runtime.store`). Pass it whenever a
   * runtime persists to the same directory: two StateStores on one state.json would each
   * overwrite the other's changes. Without it the log makes its own.
   */
  store?: StateStore;
}

const MAX_STATE_BYTES = 16 * 1024 * 1024;
/** How much of the end of the log `open()` reads: the last two lines and a partial one. */
const TAIL_WINDOW = 3 * (MAX_LINE_BYTES + 1);
const NEWLINE = 0x0a;

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * The tamper-evident audit log: `<stateDir>/audit.log`, one JSON line per event, each carrying
 * the SHA-256 of the line before it (format in `audit-chain.ts`), with the chain's head kept in
 * state.json (`audit_head`) so that dropping or truncating the last lines is detected too.
 *
 * Appends are serialised (a promise chain) and each one is:
 * 1. announced: state.json's head gets the hash of the line about to be written;
 * 2. written with `O_APPEND` in one write and fsynced (the file is created 0600);
 * 3. committed: the head moves to the new line (skipped when another append is already
 *    waiting, whose announcement commits this one).
 * A crash anywhere leaves a log that `verifyAuditLog` accepts once `open()` has reconciled it.
 * One AuditLog per state directory and process: appends from two writers would interleave.
 */
export class AuditLog {
  readonly stateDir: string;
  readonly path: string;
  readonly store: StateStore;
  #handle: FileHandle | undefined;
  #opening: Promise<void> | undefined;
  #queue: Promise<void> = Promise.resolve();
  /** Chain position of the end of the file as this writer knows it. */
  #seq = 0;
  #hash = ZERO_HASH;
  #size = 0;
  /** The file ends with bytes of a line that are not ours (left for verify): start on a new line. */
  #needsNewline = false;
  /** Appends accepted and not yet settled (the running one included). */
  #waiting = 0;
  #failed = 0;
  #broken: HotPatchError | undefined;
  #closed = false;
  #reconciliation: AuditReconciliation | undefined;

  constructor(stateDir: string, options: AuditLogOptions = {}) {
    if (typeof stateDir !== 'string' || stateDir.length === 0) {
      throw new HotPatchError('INVALID', `stateDir must be a non-empty string, got ${typeof stateDir}`);
    }
    if (options.store !== undefined && !(options.store instanceof StateStore)) {
      throw new HotPatchError('INVALID', 'options.store must be a StateStore');
    }
    this.stateDir = stateDir;
    this.path = join(stateDir, 'audit.log');
    this.store = options.store ?? new StateStore(stateDir);
  }

  /** Appends that failed so far (each also rejected its promise or, when attached, raised a warning). */
  get failedAppends(): number {
    return this.#failed;
  }

  /** What `open()` found at the end of the log and did about it; undefined before. */
  get reconciliation(): AuditReconciliation | undefined {
    return this.#reconciliation;
  }

  /** Number of the last line written (the chain position appends continue from). */
  get seq(): number {
    return this.#seq;
  }

  /**
   * Opens (creating if needed) the log and reconciles its end with state.json after a crash:
   * - bytes after the last newline are an append that never completed (its line was never
   *   committed): they are cut off (ftruncate, fsync);
   * - a complete last line whose hash state.json announced (a crash between the line's fsync
   *   and the head update) is accepted and the head moved to it;
   * - anything else (a line state.json never announced, missing lines, a changed line) is left
   *   exactly as it is for `verifyAuditLog` to report, with a `HOTPATCH_AUDIT_INCONSISTENT`
   *   warning; later appends chain from state.json's head, so they never make a tampered log
   *   verify again.
   * Idempotent; appends open the log themselves when needed.
   */
  open(): Promise<void> {
    if (this.#closed) return Promise.reject(new HotPatchError('INVALID', `audit log ${this.path} is closed`));
    return this.#ensureOpen();
  }

  #ensureOpen(): Promise<void> {
    this.#opening ??= this.#open().catch((error: unknown) => {
      this.#opening = undefined;
      throw error;
    });
    return this.#opening;
  }

  async #open(): Promise<void> {
    try {
      await fsp.mkdir(this.stateDir, { recursive: true, mode: 0o700 });
    } catch (cause) {
      throw new HotPatchError('IO', `cannot create state directory ${this.stateDir}: ${messageOf(cause)}`, { cause });
    }
    const state = await this.store.read();
    // A malformed head is refused, never replaced: appending would erase the evidence.
    const head: AuditHead = state.audit_head === undefined ? { seq: 0, hash: ZERO_HASH } : parseHead(state.audit_head);
    const handle = await this.#openFile();
    try {
      const size = (await handle.stat()).size;
      const tail = await readTail(handle, size);
      const last = tail.lines.at(-1);
      const beforeLast = tail.lines.length >= 2 ? tail.lines.at(-2) : tail.lastIsFirst ? { hash: ZERO_HASH, seq: 0 } : undefined;
      const r: AuditReconciliation = { truncatedBytes: 0, consistent: false };
      let seq = head.seq;
      let hash = head.hash;
      if (last === undefined) {
        // No complete line: consistent only with an empty head.
        r.consistent = head.seq === 0 && !tail.tooLong;
        if (!r.consistent) r.reason = tail.tooLong ? 'the last line is longer than the limit' : `state.json's head covers ${head.seq} lines but audit.log has none`;
      } else if (last.seq === head.seq && last.hash === head.hash) {
        r.consistent = true;
      } else if (
        head.pending !== undefined &&
        last.hash === head.pending &&
        last.seq === head.seq + 1 &&
        beforeLast !== undefined &&
        beforeLast.hash === head.hash
      ) {
        // A crash after the line's fsync, before the head moved: the line was announced, so it is ours.
        r.consistent = true;
        r.acceptedLine = last.seq;
        seq = last.seq;
        hash = last.hash;
      } else {
        r.reason =
          `the last line of audit.log (seq ${last.seq ?? '?'}, SHA-256 ${last.hash}) is not the head state.json records ` +
          `(${formatHead(head)})`;
      }
      let end = size;
      if (r.consistent && tail.partial > 0) {
        end = size - tail.partial;
        try {
          await handle.truncate(end);
          await handle.sync();
        } catch (cause) {
          throw new HotPatchError('IO', `cannot cut the interrupted last line of ${this.path}: ${messageOf(cause)}`, { cause });
        }
        r.truncatedBytes = tail.partial;
      }
      if (r.consistent && (head.pending !== undefined || seq !== head.seq)) {
        await this.store.update((s) => {
          s.audit_head = formatHead({ seq, hash });
        });
      }
      if (!r.consistent) {
        process.emitWarning(`audit log ${this.path} does not match state.json: ${r.reason}; left as it is, run audit verify`, {
          code: 'HOTPATCH_AUDIT_INCONSISTENT',
        });
      }
      this.#needsNewline = !r.consistent && tail.partial > 0;
      this.#seq = seq;
      this.#hash = hash;
      this.#size = end;
      this.#handle = handle;
      this.#reconciliation = r;
    } catch (error) {
      throw await closeAfter(handle, error, this.path);
    }
  }

  async #openFile(): Promise<FileHandle> {
    const flags = constants.O_RDWR | constants.O_APPEND | constants.O_NOFOLLOW;
    let handle: FileHandle;
    let created = false;
    try {
      handle = await fsp.open(this.path, flags | constants.O_CREAT | constants.O_EXCL, 0o600);
      created = true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw fileError(error, 'create', this.path, 'audit log');
      try {
        handle = await fsp.open(this.path, flags);
      } catch (again) {
        throw fileError(again, 'open', this.path, 'audit log');
      }
    }
    try {
      const st = await handle.stat();
      if (!st.isFile()) throw new HotPatchError('INVALID', `audit log ${this.path} is not a regular file`);
      if (created) await fsyncDirectory(this.stateDir); // the new name survives a crash
    } catch (error) {
      throw await closeAfter(handle, error instanceof HotPatchError ? error : fileError(error, 'stat', this.path, 'audit log'), this.path);
    }
    return handle;
  }

  /**
   * Appends one event; resolves once its line is durable (fsynced) and covered by state.json.
   * Calls are serialised in call order. Rejects with `INVALID` (not an event, or not JSON-able),
   * `TOO_LARGE` (line over 256 KiB) or `IO`.
   */
  append(event: HotPatchEvent): Promise<void> {
    let checked: HotPatchEvent;
    try {
      checked = checkEvent(event);
      if (this.#closed) throw new HotPatchError('INVALID', `audit log ${this.path} is closed`);
    } catch (error) {
      this.#failed += 1;
      return Promise.reject(error);
    }
    this.#waiting += 1;
    const run = async (): Promise<void> => {
      try {
        await this.#ensureOpen();
        await this.#appendOne(checked);
      } finally {
        this.#waiting -= 1;
      }
    };
    const result = this.#queue.then(run);
    this.#queue = result.then(
      () => undefined,
      () => undefined,
    );
    return result.catch((error: unknown) => {
      this.#failed += 1;
      throw error;
    });
  }

  async #appendOne(event: HotPatchEvent): Promise<void> {
    if (this.#broken !== undefined) throw this.#broken;
    const handle = this.#handle;
    if (handle === undefined) throw new HotPatchError('INVALID', `audit log ${this.path} is closed`);
    const seq = this.#seq + 1;
    const line = encodeLine(seq, this.#hash, event);
    const bytes = Buffer.from(`${this.#needsNewline ? '\n' : ''}${line.text}\n`, 'utf8');
    // step 1: announce the line's hash; if this fails nothing was written.
    const announced = { seq: this.#seq, hash: this.#hash, pending: line.hash };
    await this.store.update((s) => {
      s.audit_head = formatHead(announced);
    });
    // step 2: one O_APPEND write, then fsync; on failure, cut back what was written.
    try {
      let offset = 0;
      while (offset < bytes.length) {
        const { bytesWritten } = await handle.write(bytes, offset, bytes.length - offset);
        if (bytesWritten <= 0) throw new Error(`write made no progress at byte ${offset} of ${bytes.length}`);
        offset += bytesWritten;
      }
      await handle.sync();
    } catch (cause) {
      const error = new HotPatchError('IO', `cannot append to audit log ${this.path}: ${messageOf(cause)}`, { cause });
      try {
        await handle.truncate(this.#size);
        await handle.sync();
      } catch (undo) {
        this.#broken = new HotPatchError('IO', `audit log ${this.path} is left with a partial line (${messageOf(undo)}); no further appends until it is reopened`, {
          cause: new AggregateError([cause, undo]),
        });
        throw this.#broken;
      }
      throw error;
    }
    this.#size += bytes.length;
    this.#seq = seq;
    this.#hash = line.hash;
    this.#needsNewline = false;
    // step 3: commit, unless the next append's announcement will (it also covers this line).
    if (this.#waiting <= 1) {
      try {
        await this.store.update((s) => {
          s.audit_head = formatHead({ seq, hash: line.hash });
        });
      } catch (error) {
        // The line is durable and covered by its announcement; only the tidy head is missing.
        process.emitWarning(`audit log ${this.path}: line ${seq} is written but the head could not be moved to it: ${messageOf(error)}`, {
          code: 'HOTPATCH_AUDIT_HEAD_DEFERRED',
        });
      }
    }
  }

  /**
   * Appends every event published on `bus` (the bus calls listeners synchronously; the
   * appends then run asynchronously, in publication order). A failed append is never
   * swallowed: a `HOTPATCH_AUDIT_FAILED` process warning and `failedAppends`. Returns the
   * unsubscribe function.
   */
  attach(bus: EventBus): () => void {
    return bus.subscribe((event) => {
      this.append(event).catch((error: unknown) => {
        process.emitWarning(`audit log ${this.path}: ${event.type} of ${event.id} for ${event.target} was not recorded: ${messageOf(error)}`, {
          code: 'HOTPATCH_AUDIT_FAILED',
          detail: `${this.#failed} audit appends failed so far`,
        });
      });
    });
  }

  /** Resolves once every append accepted so far has settled (failures are reported by append itself). */
  flush(): Promise<void> {
    return this.#queue;
  }

  /** Flushes, then closes the file; later appends are refused. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#queue;
    await this.#opening?.catch(() => undefined); // a failed open was reported to its callers; no handle to close
    const handle = this.#handle;
    this.#handle = undefined;
    if (handle !== undefined) {
      try {
        await handle.close();
      } catch (cause) {
        throw new HotPatchError('IO', `cannot close audit log ${this.path}: ${messageOf(cause)}`, { cause });
      }
    }
  }
}

/** Closes `handle` after `primary` failed; a close failure is attached to it, never dropped. */
async function closeAfter(handle: FileHandle, primary: unknown, file: string): Promise<unknown> {
  try {
    await handle.close();
    return primary;
  } catch (closeError) {
    return withCleanupFailure(primary, closeError, `closing ${file}`);
  }
}

interface TailLine {
  hash: string;
  seq: number | undefined;
}

/** The last (up to) two complete lines of the file and the length of a trailing partial line. */
async function readTail(handle: FileHandle, size: number): Promise<{ lines: TailLine[]; lastIsFirst: boolean; partial: number; tooLong: boolean }> {
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

/** Reads state.json's `audit_head` without side effects; a state file that does not parse is a verdict, not a crash. */
async function readRecordedHead(stateDir: string): Promise<{ head: string | undefined; error?: string }> {
  let bytes: Uint8Array;
  try {
    bytes = await readFileBounded(join(stateDir, 'state.json'), MAX_STATE_BYTES, { what: 'state file' });
  } catch (error) {
    if (error instanceof HotPatchError && error.code === 'NOT_FOUND') return { head: undefined };
    throw error;
  }
  try {
    return { head: parseStateFile(bytes, 'state.json').audit_head };
  } catch (error) {
    return { head: undefined, error: `state.json cannot be read: ${messageOf(error)}` };
  }
}

/**
 * Reads the whole log: the verdict, and every line that parses (for reports), each tagged
 * with its line number. Streams the file; memory stays bounded by the longest line.
 */
export async function scanAuditLog(stateDir: string, onEntry?: (entry: AuditEntry) => void): Promise<AuditVerification> {
  const recorded = await readRecordedHead(stateDir);
  const checker = new AuditChainChecker(recorded.head, recorded.error);
  const file = join(stateDir, 'audit.log');
  let pending: Buffer[] = [];
  let pendingSize = 0;
  let tooLong = false;
  try {
    for await (const chunk of readFileChunks(file, Number.MAX_SAFE_INTEGER - 1, { what: 'audit log' })) {
      let from = 0;
      const buf = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      for (let nl = buf.indexOf(NEWLINE, from); nl !== -1; nl = buf.indexOf(NEWLINE, from)) {
        const piece = buf.subarray(from, nl);
        let line: Uint8Array;
        if (tooLong || pendingSize + piece.length > MAX_LINE_BYTES) {
          line = new Uint8Array(0);
          tooLong = true;
        } else {
          line = pending.length === 0 ? piece : Buffer.concat([...pending, piece]);
        }
        const entry = checker.push(line, tooLong);
        if (entry !== undefined) onEntry?.(entry);
        pending = [];
        pendingSize = 0;
        tooLong = false;
        from = nl + 1;
      }
      const rest = buf.subarray(from);
      if (rest.length > 0) {
        pendingSize += rest.length;
        if (pendingSize > MAX_LINE_BYTES) {
          tooLong = true;
          pending = [];
        } else if (!tooLong) {
          pending.push(Buffer.from(rest)); // a copy: the chunk is not ours to keep
        }
      }
    }
  } catch (error) {
    if (!(error instanceof HotPatchError && error.code === 'NOT_FOUND')) throw error;
  }
  return checker.finish(pendingSize);
}

/**
 * `audit verify`: every line parses, `seq` runs 1, 2, 3 …, each `prev` is the SHA-256 of the
 * line before, and the last line is the head state.json records (or the line it announced).
 * So an edited, reordered, dropped or truncated line, a forged appended line and an edited
 * head are each reported, naming the first line that cannot be trusted. A missing log with
 * no head is ok (0 lines); a head with no log is bad at line 1.
 */
export async function verifyAuditLog(stateDir: string): Promise<AuditVerification> {
  if (typeof stateDir !== 'string' || stateDir.length === 0) {
    throw new HotPatchError('INVALID', `stateDir must be a non-empty string, got ${typeof stateDir}`);
  }
  return scanAuditLog(stateDir);
}

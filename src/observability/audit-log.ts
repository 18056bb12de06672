import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { emitRedactedWarning, HotPatchError, messageOf, positiveInteger, type EventBus, type EventType, type HotPatchEvent } from '../core/index.js';
import { StateStore } from '../rollback/index.js';
import { ZERO_HASH, checkEvent, encodeLine, formatHead } from './audit-chain.js';
import { openAuditFile } from './audit-open.js';
import { AuditPrefixCheck, type AuditChainStanding } from './audit-prefix-check.js';
import type { AuditReconciliation } from './audit-tail.js';

export type { AuditReconciliation } from './audit-tail.js';
export type { AuditChainStanding } from './audit-prefix-check.js';

export interface AuditLogOptions {
  /**
   * The process's one writer of state.json (e.g. `runtime.store`). Pass it whenever a
   * runtime persists to the same directory: two StateStores on one state.json would each
   * overwrite the other's changes. Without it the log makes its own.
   */
  store?: StateStore;
  /**
   * Events kept, oldest first, while the log cannot be written (a full disk, EIO), to be
   * written in order once it can (default 10 000). Past it a new event is lost and counted.
   */
  maxBacklog?: number;
  /** How often a kept backlog is retried when no new event comes (ms, default 1000). */
  retryMs?: number;
}

/** What `attach` calls when an event could not be written (now, or for good). */
export type AuditFailureHandler = (event: HotPatchEvent, error: HotPatchError) => void;

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
  /** The chain position of the log's end when it was opened, and the background check of the lines up to it. */
  #openedAt: { seq: number; hash: string } | undefined;
  readonly #prefixCheck = new AuditPrefixCheck();
  /** Stops a chain check still reading when the log closes (a long log must not hold a stop). */
  readonly #stopCheck = new AbortController();
  /** Events whose append failed for a passing reason (I/O), oldest first: written before any later one. */
  readonly #backlog: HotPatchEvent[] = [];
  readonly #maxBacklog: number;
  readonly #retryMs: number;
  #retryTimer: NodeJS.Timeout | undefined;
  #lost = 0;
  #lastError: HotPatchError | undefined;

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
    this.#maxBacklog = positiveInteger(options.maxBacklog ?? 10_000, 'options.maxBacklog');
    this.#retryMs = positiveInteger(options.retryMs ?? 1000, 'options.retryMs');
  }

  /** Events waiting to be written because the log could not be written when they came. */
  get pendingAppends(): number {
    return this.#backlog.length;
  }

  /** Events lost for good: the backlog was full, or the log was closed before they could be written. */
  get lostAppends(): number {
    return this.#lost;
  }

  /** Why the last append failed, while events still wait (undefined once the log is written again). */
  get failure(): HotPatchError | undefined {
    return this.#backlog.length > 0 || this.#broken !== undefined ? this.#lastError : undefined;
  }

  /** Appends that failed so far (each also rejected its promise or, when attached, raised a warning). */
  get failedAppends(): number {
    return this.#failed;
  }

  /** What `open()` found at the end of the log and did about it; undefined before. */
  get reconciliation(): AuditReconciliation | undefined {
    return this.#reconciliation;
  }

  /**
   * The log can be trusted as far as this writer knows: its end matched state.json at open,
   * the lines before it chain (once `checkChain` has read them: while it runs, or if it never
   * ran, this says nothing about them), and every append is written.
   */
  get intact(): boolean {
    return (this.#reconciliation?.consistent ?? true) && this.#prefixCheck.problem === undefined && this.failure === undefined && this.#lost === 0;
  }

  /** Whether the lines the log held when it was opened all chain (see `checkChain`). */
  get chain(): AuditChainStanding {
    return this.#prefixCheck.standing;
  }

  /** Why those lines cannot be trusted (`chain` broken or unreadable); undefined otherwise. */
  get chainProblem(): string | undefined {
    return this.#prefixCheck.problem;
  }

  /**
   * Reads the lines the log held when it was opened, start to end, and checks their chain (the
   * open checks only the end): what `startAgent` runs in the background. Once per log; never
   * rejects (a log that cannot be read is `unreadable`); a bad chain warns HOTPATCH_AUDIT_INCONSISTENT;
   * `close()` stops a check still reading.
   */
  checkChain(): Promise<AuditChainStanding> {
    return this.#prefixCheck.run(
      this.path,
      async () => {
        await this.#ensureOpen();
        return this.#openedAt!;
      },
      this.#stopCheck.signal,
    );
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
    const opened = await openAuditFile(this.stateDir, this.path, this.store);
    this.#needsNewline = opened.needsNewline;
    this.#seq = opened.seq;
    this.#hash = opened.hash;
    this.#openedAt = { seq: opened.seq, hash: opened.hash };
    this.#size = opened.size;
    this.#handle = opened.handle;
    this.#reconciliation = opened.reconciliation;
  }

  /**
   * Appends one event; resolves once its line is durable (fsynced) and covered by state.json
   * (its hash was announced there before the write). Moving the head onto the line (the
   * commit) follows in the background, before the next append starts, so the caller does not
   * wait for a second state.json write. Calls are serialised in call order. Rejects with `INVALID` (not an event, or not JSON-able),
   * `TOO_LARGE` (line over 256 KiB) or `IO`. An `IO` rejection means "not yet": the event is
   * kept (unless `keep: false`) and written, in order, before any later event once the log can
   * be written again — on the next append, `flush()`, or a retry every `retryMs`.
   */
  append(event: HotPatchEvent, options: { keep?: boolean } = {}): Promise<void> {
    let checked: HotPatchEvent;
    try {
      checked = checkEvent(event);
      if (this.#closed) throw new HotPatchError('INVALID', `audit log ${this.path} is closed`);
    } catch (error) {
      this.#failed += 1;
      return Promise.reject(error);
    }
    this.#waiting += 1;
    const run = async (): Promise<() => Promise<void>> => {
      try {
        await this.#writeBacklog();
        return await this.#appendOne(checked);
      } catch (error) {
        throw this.#onAppendFailure(checked, error, options.keep !== false);
      } finally {
        this.#waiting -= 1;
      }
    };
    const written = this.#queue.then(run);
    // The next append waits for this one's commit: a commit after the next announcement would
    // overwrite it, leaving that line unannounced.
    this.#queue = written.then(
      (commit) => commit(),
      () => undefined,
    );
    const result = written.then(() => undefined);
    return result.catch((error: unknown) => {
      this.#failed += 1;
      throw error;
    });
  }

  /** Keeps an event whose append failed for a passing reason; returns the error to report. */
  #onAppendFailure(event: HotPatchEvent, error: unknown, keep: boolean): HotPatchError {
    const failure =
      error instanceof HotPatchError ? error : new HotPatchError('IO', `cannot append to audit log ${this.path}: ${messageOf(error)}`, { cause: error });
    // INVALID / TOO_LARGE are the event's own fault: writing it again would fail again.
    if (failure.code !== 'IO' || this.#closed) return failure;
    this.#lastError = failure;
    if (!keep) return failure;
    if (!this.#backlog.includes(event)) {
      if (this.#backlog.length >= this.#maxBacklog) {
        this.#lost += 1;
        emitRedactedWarning(
          `audit log ${this.path}: ${event.type} of ${event.id} for ${event.target} is lost: ${this.#maxBacklog} events already wait for the log to be writable`,
          {
            code: 'HOTPATCH_AUDIT_LOST',
          },
        );
        return failure;
      }
      this.#backlog.push(event);
    }
    this.#scheduleRetry();
    return new HotPatchError('IO', `${failure.message} (kept: ${this.#backlog.length} events wait to be written in order)`, { cause: failure });
  }

  /** Writes the kept events, oldest first; throws (keeping the rest) at the first that fails. */
  async #writeBacklog(): Promise<void> {
    if (this.#broken !== undefined) await this.#reopen();
    await this.#ensureOpen();
    while (this.#backlog.length > 0) {
      const commit = await this.#appendOne(this.#backlog[0]!);
      this.#backlog.shift();
      await commit();
    }
    this.#lastError = undefined;
  }

  /** After a write whose partial line could not be cut: open again, which reconciles the end of the log. */
  async #reopen(): Promise<void> {
    const handle = this.#handle;
    this.#handle = undefined;
    this.#opening = undefined;
    this.#broken = undefined;
    await handle?.close().catch(() => undefined); // the descriptor is replaced; its failure changes nothing
  }

  #scheduleRetry(): void {
    if (this.#retryTimer !== undefined || this.#closed) return;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      void this.flush();
    }, this.#retryMs);
    this.#retryTimer.unref();
  }

  /** Announces, writes and fsyncs one line; returns its commit (step 3), for the caller to run next. */
  async #appendOne(event: HotPatchEvent): Promise<() => Promise<void>> {
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
        this.#broken = new HotPatchError(
          'IO',
          `audit log ${this.path} is left with a partial line (${messageOf(undo)}); no further appends until it is reopened`,
          {
            cause: new AggregateError([cause, undo]),
          },
        );
        throw this.#broken;
      }
      throw error;
    }
    this.#size += bytes.length;
    this.#seq = seq;
    this.#hash = line.hash;
    this.#needsNewline = false;
    // step 3: commit, unless a later line was written or the next append's announcement will
    // (either covers this line). Run by the queue once the caller has its answer.
    return async () => {
      if (this.#seq !== seq || this.#waiting > 0) return;
      try {
        await this.store.update((s) => {
          s.audit_head = formatHead({ seq, hash: line.hash });
        });
      } catch (error) {
        // The line is durable and covered by its announcement; only the tidy head is missing.
        emitRedactedWarning(`audit log ${this.path}: line ${seq} is written but the head could not be moved to it: ${messageOf(error)}`, {
          code: 'HOTPATCH_AUDIT_HEAD_DEFERRED',
        });
      }
    };
  }

  /**
   * Appends every event published on `bus` (the bus calls listeners synchronously; the
   * appends then run asynchronously, in publication order). A failed append is never
   * swallowed: a `HOTPATCH_AUDIT_FAILED` process warning, `failedAppends`, and `onFailure`.
   * `except`: event types its publisher appends itself (and awaits) before publishing.
   * Returns the unsubscribe function.
   */
  attach(bus: EventBus, options: { onFailure?: AuditFailureHandler; except?: readonly EventType[] } = {}): () => void {
    const except = new Set(options.except ?? []);
    return bus.subscribe((event) => {
      if (except.has(event.type)) return;
      this.append(event).catch((error: unknown) => {
        emitRedactedWarning(`audit log ${this.path}: ${event.type} of ${event.id} for ${event.target} was not recorded: ${messageOf(error)}`, {
          code: 'HOTPATCH_AUDIT_FAILED',
          detail: `${this.#failed} audit appends failed so far`,
        });
        options.onFailure?.(event, error instanceof HotPatchError ? error : new HotPatchError('IO', messageOf(error), { cause: error }));
      });
    });
  }

  /**
   * Resolves once every append accepted so far has settled (failures are reported by append
   * itself); with events kept from failed appends, tries once more to write them first.
   */
  flush(): Promise<void> {
    if (this.#backlog.length > 0 && !this.#closed) {
      const retry = this.#queue.then(() => this.#writeBacklog());
      this.#queue = retry.catch((error: unknown) => {
        this.#lastError = error instanceof HotPatchError ? error : new HotPatchError('IO', messageOf(error), { cause: error });
        this.#scheduleRetry();
      });
    }
    return this.#queue;
  }

  /** Flushes (kept events too, if the log can be written now), then closes the file; later appends are refused. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#stopCheck.abort();
    await this.flush();
    this.#closed = true;
    clearTimeout(this.#retryTimer);
    if (this.#backlog.length > 0) {
      this.#lost += this.#backlog.length;
      emitRedactedWarning(
        `audit log ${this.path} closed with ${this.#backlog.length} events never written: ${this.#lastError?.message ?? 'the log could not be written'}`,
        {
          code: 'HOTPATCH_AUDIT_LOST',
        },
      );
      this.#backlog.length = 0;
    }
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

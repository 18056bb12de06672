import { Journal, MAX_JOURNAL_BYTES, MAX_REASON, journalText } from './journal.js';
import type { PlanState } from './plan.js';

/**
 * Upper bound of the bytes one change to one plan adds to the journal text: its reason at its
 * bound with every character escaped (`\u0000`, 6 bytes), plus its other fields.
 */
const CHANGE_BOUND_BYTES = 6 * MAX_REASON + 2048;
/** Per plan, for fields set without a write of their own (patch id and version, both bounded). */
const PLAN_SLACK_BYTES = 1024;

/**
 * Keeps one planner's journal.json in step with its plans: writes on demand or in the
 * background, remembers a write that failed (a full disk) and tries it again every second
 * until one succeeds, and tells whether one more plan keeps the file within what its reader
 * takes — without serialising the whole journal for each new plan, unless it is near the limit.
 */
export class JournalWriter {
  readonly journal: Journal;
  readonly #snapshot: () => PlanState[];
  /** Errors of journal writes (never mapped to a plan outcome: they abort the run). */
  readonly #errors = new WeakSet<object>();
  #lastWrite: Promise<void> = Promise.resolve();
  #unsaved: unknown;
  #retryTimer: NodeJS.Timeout | undefined;
  readonly #maxBytes: number;
  /** Writes asked for since the last snapshot was taken: each follows a change to at most one plan. */
  #changes = 0;

  /**
   * `snapshot`: the plans as they are now, in journal order (copies: the write happens later).
   * Every change to a plan must be followed by `save()` or `saveInBackground()` before the
   * next `bytesIfOver` (the planner calls one in the same turn as the change). `maxBytes`
   * (tests only): the limit checked, MAX_JOURNAL_BYTES by default, which is what the reader takes.
   */
  constructor(journal: Journal, snapshot: () => PlanState[], maxBytes = MAX_JOURNAL_BYTES) {
    this.journal = journal;
    this.#snapshot = snapshot;
    this.#maxBytes = maxBytes;
  }

  /** Writes the plans as they are when the write's turn comes; rejects with the write's error. */
  save(): Promise<void> {
    this.#changes += 1;
    const write = this.journal
      .write(() => {
        this.#changes = 0;
        return this.#snapshot();
      })
      .then(
        () => {
          this.#unsaved = undefined;
        },
        (error: unknown) => {
          this.#unsaved = error;
          if (typeof error === 'object' && error !== null) this.#errors.add(error);
          this.#retryLater();
          throw error;
        },
      );
    this.#lastWrite = write.catch(() => undefined);
    return write;
  }

  /** A write nobody waits for; a failure is kept, and `flush()` and the retry timer try again. */
  saveInBackground(): void {
    void this.save().catch(() => undefined);
  }

  /** Waits for background writes; a write that failed is retried once, then thrown. */
  async flush(): Promise<void> {
    await this.#lastWrite;
    if (this.#unsaved !== undefined) await this.save();
  }

  /** Whether `error` came from writing the journal. */
  isWriteError(error: unknown): boolean {
    return typeof error === 'object' && error !== null && this.#errors.has(error);
  }

  /**
   * The journal's size in bytes with `plans` (which include the new one, `added`) when that
   * is over MAX_JOURNAL_BYTES, else undefined. Far from the limit an upper bound decides — the size of
   * the last text serialised, plus a bound per change since, plus the new plan — so adding a
   * plan costs its own serialisation, not the journal's; near the limit the very text that
   * would be written is measured, so a journal the reader would refuse is never written.
   */
  bytesIfOver(plans: readonly PlanState[], added: PlanState): number | undefined {
    // The new entry as the journal holds it: two levels deeper (4 more spaces a line), a comma and a newline.
    const entry = JSON.stringify(added, null, 2);
    const addedBytes = Buffer.byteLength(entry) + 4 * entry.split('\n').length + 2;
    const bound = this.journal.textBytes + addedBytes + this.#changes * CHANGE_BOUND_BYTES + plans.length * PLAN_SLACK_BYTES;
    if (bound <= this.#maxBytes) return undefined;
    const bytes = Buffer.byteLength(journalText(plans));
    return bytes > this.#maxBytes ? bytes : undefined;
  }

  /** Stops the retry timer (writes in progress finish). */
  close(): void {
    clearTimeout(this.#retryTimer);
  }

  #retryLater(): void {
    if (this.#retryTimer !== undefined) return;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      if (this.#unsaved !== undefined) this.saveInBackground();
    }, 1000);
    this.#retryTimer.unref();
  }
}

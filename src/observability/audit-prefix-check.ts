import { HotPatchError, emitRedactedWarning, messageOf } from '../core/index.js';
import { verifyAuditPrefix } from './audit-verify.js';

/** The lines found in the log when this writer opened it: do they chain? */
export type AuditChainStanding =
  | { state: 'unchecked' }
  | { state: 'checking'; lines: number }
  | { state: 'ok'; lines: number }
  | { state: 'broken'; lines: number; line: number; reason: string }
  | { state: 'unreadable'; lines: number; reason: string };

/**
 * Checks, once, the whole chain of the lines a log held when its writer opened it. Opening
 * checks only the log's end against state.json; a line edited further back (with the lines
 * after it still in place) shows only in a full read, which this does off the start path.
 */
export class AuditPrefixCheck {
  #standing: AuditChainStanding = { state: 'unchecked' };
  #running: Promise<AuditChainStanding> | undefined;

  get standing(): AuditChainStanding {
    return this.#standing;
  }

  /**
   * Runs the check (once; later calls return the same promise). Never rejects: an unreadable log
   * is a standing; one stopped by `signal` (the log closing) is `unchecked` again.
   */
  run(path: string, opened: () => Promise<{ seq: number; hash: string }>, signal: AbortSignal): Promise<AuditChainStanding> {
    this.#running ??= (async (): Promise<AuditChainStanding> => {
      let lines = 0;
      try {
        const at = await opened();
        lines = at.seq;
        this.#standing = { state: 'checking', lines };
        const verdict = await verifyAuditPrefix(path, at.seq, at.hash, signal);
        this.#standing =
          verdict.ok || verdict.firstBad === undefined
            ? { state: 'ok', lines }
            : { state: 'broken', lines, line: verdict.firstBad.line, reason: verdict.firstBad.reason };
      } catch (error) {
        // Stopped by the log's close: no verdict either way.
        if (signal.aborted) return (this.#standing = { state: 'unchecked' });
        const reason = error instanceof HotPatchError ? error.message : messageOf(error);
        this.#standing = { state: 'unreadable', lines, reason };
      }
      if (this.#standing.state === 'broken' || this.#standing.state === 'unreadable') {
        const where = this.#standing.state === 'broken' ? `line ${this.#standing.line}: ${this.#standing.reason}` : this.#standing.reason;
        emitRedactedWarning(`audit log ${path}: the lines written before this start do not verify (${where}); run hotpatch audit verify`, {
          code: 'HOTPATCH_AUDIT_INCONSISTENT',
        });
      }
      return this.#standing;
    })();
    return this.#running;
  }
}

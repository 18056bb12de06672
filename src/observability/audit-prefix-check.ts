import { emitRedactedWarning, messageOf } from '../core/index.js';
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

  /** Why the chain cannot be trusted (the first bad line, or why it could not be read); undefined otherwise. */
  get problem(): string | undefined {
    const s = this.#standing;
    if (s.state === 'broken') return `audit.log line ${s.line} does not verify: ${s.reason}`;
    return s.state === 'unreadable' ? s.reason : undefined;
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
        this.#standing = { state: 'unreadable', lines, reason: messageOf(error) };
      }
      const problem = this.problem;
      if (problem !== undefined) {
        emitRedactedWarning(`audit log ${path}: the lines written before this start do not verify (${problem}); run hotpatch audit verify`, {
          code: 'HOTPATCH_AUDIT_INCONSISTENT',
        });
      }
      return this.#standing;
    })();
    return this.#running;
  }
}

import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { HotPatchError, messageOf } from '../core/index.js';
import { readFileBounded, readFileChunks } from '../repo/index.js';
import { parseStateFile } from '../rollback/index.js';
import { AuditChainChecker, MAX_LINE_BYTES, formatHead, type AuditEntry, type AuditVerification } from './audit-chain.js';

/*
 * Reading the audit log from outside the writer: `audit verify`, reports. Nothing here
 * writes; a log or state.json that does not parse is a verdict, not a crash.
 */

const MAX_STATE_BYTES = 16 * 1024 * 1024;
const NEWLINE = 0x0a;

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
  // A state directory that is not there is a wrong path, not an empty, verified log.
  try {
    if (!(await stat(stateDir)).isDirectory()) throw new HotPatchError('INVALID', `${stateDir} is not a directory`);
  } catch (error) {
    if (error instanceof HotPatchError) throw error;
    const code = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'NOT_FOUND' : 'IO';
    throw new HotPatchError(code, `state directory ${stateDir}: ${(error as Error).message}`, { cause: error });
  }
  const recorded = await readRecordedHead(stateDir);
  const checker = new AuditChainChecker(recorded.head, recorded.error);
  const { partial } = await forEachLine(join(stateDir, 'audit.log'), (line, tooLong) => {
    const entry = checker.push(line, tooLong);
    if (entry !== undefined) onEntry?.(entry);
    return true;
  });
  return checker.finish(partial);
}

/**
 * The first `seq` lines of the log at `path` against the chain position a writer knows for them
 * (`hash`: the SHA-256 of line `seq`): every line parses and chains, and line `seq` is that one.
 * What the agent checks in the background after it opens the log, while it keeps appending
 * past `seq` (appends never touch earlier bytes, so the prefix is stable to read). ABORTED
 * when `signal` aborts.
 */
export async function verifyAuditPrefix(path: string, seq: number, hash: string, signal?: AbortSignal): Promise<AuditVerification> {
  const checker = new AuditChainChecker(seq === 0 ? undefined : formatHead({ seq, hash }));
  let lines = 0;
  await forEachLine(
    path,
    (line, tooLong) => {
      if (lines === seq) return false;
      lines += 1;
      checker.push(line, tooLong);
      return lines < seq;
    },
    signal,
  );
  return checker.finish(0);
}

/**
 * Streams the complete (newline-terminated) lines of `file` to `onLine` until it returns false;
 * memory stays bounded by the longest line (a longer one is passed empty, `tooLong`). A missing
 * file has no lines. `partial`: bytes after the last newline.
 */
async function forEachLine(file: string, onLine: (line: Uint8Array, tooLong: boolean) => boolean, signal?: AbortSignal): Promise<{ partial: number }> {
  let pending: Buffer[] = [];
  let pendingSize = 0;
  let tooLong = false;
  try {
    for await (const chunk of readFileChunks(file, Number.MAX_SAFE_INTEGER - 1, { what: 'audit log', ...(signal === undefined ? {} : { signal }) })) {
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
        if (!onLine(line, tooLong)) return { partial: 0 };
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
  return { partial: pendingSize };
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

import { constants, promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { emitRedactedWarning, HotPatchError, messageOf } from '../core/index.js';
import { fileError, fsyncDirectory, withCleanupFailure } from '../repo/index.js';
import type { StateStore } from '../rollback/index.js';
import { ZERO_HASH, formatHead, parseHead, type AuditHead } from './audit-chain.js';
import { readTail, reconcileTail, type AuditReconciliation } from './audit-tail.js';

/** An audit log opened and reconciled: its handle and where its chain ends. */
export interface OpenedAuditLog {
  handle: FileHandle;
  /** Chain position of the end of the file. */
  seq: number;
  hash: string;
  size: number;
  /** The file ends with bytes of a line that are not ours (left for verify): start on a new line. */
  needsNewline: boolean;
  reconciliation: AuditReconciliation;
}

/**
 * Opens (creating if needed) `path`, the audit log of `stateDir`, and reconciles its end with
 * the head in state.json (see `AuditLog.open`): an interrupted last line is cut off, an
 * announced one accepted, anything else left for `verifyAuditLog` with a warning.
 */
export async function openAuditFile(stateDir: string, path: string, store: StateStore): Promise<OpenedAuditLog> {
  try {
    await fsp.mkdir(stateDir, { recursive: true, mode: 0o700 });
  } catch (cause) {
    throw new HotPatchError('IO', `cannot create state directory ${stateDir}: ${messageOf(cause)}`, { cause });
  }
  const state = await store.read();
  // A malformed head is refused, never replaced: appending would erase the evidence.
  const head: AuditHead = state.audit_head === undefined ? { seq: 0, hash: ZERO_HASH } : parseHead(state.audit_head);
  const handle = await openFile(stateDir, path);
  try {
    const size = (await handle.stat()).size;
    const tail = await readTail(handle, size);
    const { reconciliation: r, seq, hash } = reconcileTail(head, tail);
    let end = size;
    if (r.consistent && tail.partial > 0) {
      end = size - tail.partial;
      try {
        await handle.truncate(end);
        await handle.sync();
      } catch (cause) {
        throw new HotPatchError('IO', `cannot cut the interrupted last line of ${path}: ${messageOf(cause)}`, { cause });
      }
      r.truncatedBytes = tail.partial;
    }
    if (r.consistent && (head.pending !== undefined || seq !== head.seq)) {
      await store.update((s) => {
        s.audit_head = formatHead({ seq, hash });
      });
    }
    if (!r.consistent) {
      emitRedactedWarning(`audit log ${path} does not match state.json: ${r.reason}; left as it is, run audit verify`, {
        code: 'HOTPATCH_AUDIT_INCONSISTENT',
      });
    }
    return { handle, seq, hash, size: end, needsNewline: !r.consistent && tail.partial > 0, reconciliation: r };
  } catch (error) {
    throw await closeAfter(handle, error, path);
  }
}

/** Opens the log file O_APPEND without following a link, creating it 0600 (and fsyncing the directory) if missing. */
async function openFile(stateDir: string, path: string): Promise<FileHandle> {
  const flags = constants.O_RDWR | constants.O_APPEND | constants.O_NOFOLLOW;
  let handle: FileHandle;
  let created = false;
  try {
    handle = await fsp.open(path, flags | constants.O_CREAT | constants.O_EXCL, 0o600);
    created = true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw fileError(error, 'create', path, 'audit log');
    try {
      handle = await fsp.open(path, flags);
    } catch (again) {
      throw fileError(again, 'open', path, 'audit log');
    }
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw new HotPatchError('INVALID', `audit log ${path} is not a regular file`);
    if (created) await fsyncDirectory(stateDir); // the new name survives a crash
  } catch (error) {
    throw await closeAfter(handle, error instanceof HotPatchError ? error : fileError(error, 'stat', path, 'audit log'), path);
  }
  return handle;
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

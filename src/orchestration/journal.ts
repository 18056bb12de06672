import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { HotPatchError, asObject, boundMessage, decodeJson, describe, isErrorCode, parsePatchId, parseRfc3339, rejectUnknownFields } from '../core/index.js';
import { readFileBounded, removeStaleTempFiles, writeFileAtomic } from '../repo/index.js';
import { PLAN_PHASES, PLAN_STATUSES, checkPlan, type PlanPhase, type PlanState, type PlanStatus } from './plan.js';

/**
 * The planner's journal, `<stateDir>/journal.json`: every plan and where it stands, so a
 * process that dies mid-run can, once restarted, finish or undo that run instead of
 * forgetting it. Format 1:
 *
 * ```json
 * {
 *   "format": 1,
 *   "updated_at": "2030-01-01T09:00:00.000Z",
 *   "plans": [
 *     {
 *       "plan": { "id": "p1", "target": "xps.crypto.hash.sha256", "patch": "hotfix-1",
 *                 "repo": "fs", "verifier": "default", "security": "gate", "installer": "dynamic",
 *                 "window": { "weekly": [{ "days": ["Tue", "Wed", "Thu"], "start": "09:00", "end": "16:00" }] },
 *                 "dependsOn": ["p0"], "zdt": { "confidence": 0.995, "minCalls": 500, "steps": [0.05, 1] } },
 *       "status": "running",
 *       "phase": "apply",
 *       "patchId": "hotfix-1",
 *       "version": "1.2.4",
 *       "reason": "applying hotfix-1 1.2.4",
 *       "code": "APPROVAL_MISSING",
 *       "attempts": 1,
 *       "crashes": 1,
 *       "updatedAt": "2030-01-01T09:00:00.000Z"
 *     }
 *   ]
 * }
 * ```
 *
 * - `plans` is in the order the plans were added, which is a dependency order: a plan may
 *   only depend on plans listed before it (so there is never a cycle).
 * - `plan` is a plan as `checkPlan` normalises it (the same strict rules as `addPlan`);
 *   its `zdt` holds the storable canary options (`checkPersistableZdt`: numbers such as
 *   `confidence`, `maxErrorExcess`, `maxLatencyShift`, `minCalls`, `warmupCalls`,
 *   `canaryCallTimeoutMs`, booleans such as `probationWatch`, and `steps`), keys sorted.
 * - `status` is one of pending, waiting, running, activated, failed, rolled-back; `phase`
 *   (fetch, verify, gate, approve, apply) is written *before* the phase starts, so a
 *   `running` entry names the phase a crash interrupted.
 * - `patchId` / `version` / `reason` / `code` / `crashes` are optional; `attempts` and
 *   `crashes` (deaths of the process during this plan's apply phase) are non-negative integers; `updatedAt` and `updated_at` are RFC 3339.
 *
 * Parsing is strict (unknown fields, wrong types, duplicate ids, unknown or later
 * dependencies → INVALID; bad JSON → PARSE): a journal that does not parse stops the
 * planner from opening, it is never silently reset. Each write replaces the whole file
 * crash-safely (temp, fsync, rename, fsync the directory) and writes are serialised.
 */
export interface JournalFile {
  format: 1;
  updated_at?: string;
  plans: PlanState[];
}

export const JOURNAL_FILE = 'journal.json';
/** The largest journal the reader takes; the planner never writes a bigger one (see `journalText`). */
export const MAX_JOURNAL_BYTES = 16 * 1024 * 1024;
const FILE_FIELDS = new Set(['format', 'updated_at', 'plans']);
const ENTRY_FIELDS = new Set(['plan', 'status', 'phase', 'patchId', 'version', 'reason', 'code', 'attempts', 'crashes', 'updatedAt']);
/** Longest plan reason recorded (characters). */
export const MAX_REASON = 4096;

function entry(value: unknown, field: string): PlanState {
  const obj = asObject(value, field);
  rejectUnknownFields(obj, ENTRY_FIELDS, field);
  const plan = checkPlan(obj.plan, `${field}.plan`);
  if (!(PLAN_STATUSES as readonly unknown[]).includes(obj.status)) {
    throw new HotPatchError('INVALID', `${field}.status must be one of ${PLAN_STATUSES.join(', ')}, got ${describe(obj.status)}`);
  }
  const attempts = count(obj.attempts, `${field}.attempts`);
  parseRfc3339(obj.updatedAt, `${field}.updatedAt`);
  const state: PlanState = { plan, status: obj.status as PlanStatus, attempts, updatedAt: obj.updatedAt as string };
  if (obj.crashes !== undefined) state.crashes = count(obj.crashes, `${field}.crashes`);
  if (obj.phase !== undefined) {
    if (!(PLAN_PHASES as readonly unknown[]).includes(obj.phase)) {
      throw new HotPatchError('INVALID', `${field}.phase must be one of ${PLAN_PHASES.join(', ')}, got ${describe(obj.phase)}`);
    }
    state.phase = obj.phase as PlanPhase;
  }
  if (obj.patchId !== undefined) state.patchId = parsePatchId(obj.patchId, `${field}.patchId`);
  if (obj.version !== undefined) {
    if (typeof obj.version !== 'string' || obj.version.length === 0 || obj.version.length > 256)
      throw new HotPatchError('INVALID', `${field}.version must be a version string`);
    state.version = obj.version;
  }
  if (obj.reason !== undefined) {
    if (typeof obj.reason !== 'string') throw new HotPatchError('INVALID', `${field}.reason must be a string, got ${describe(obj.reason)}`);
    // An over-long reason (written before writers bounded it) is cut, never a reason to refuse a restart.
    state.reason = boundMessage(obj.reason, MAX_REASON);
  }
  if (obj.code !== undefined) {
    if (!isErrorCode(obj.code)) throw new HotPatchError('INVALID', `${field}.code must be an error code, got ${describe(obj.code)}`);
    state.code = obj.code;
  }
  return state;
}

function count(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new HotPatchError('INVALID', `${field} must be a non-negative integer, got ${describe(value)}`);
  }
  return value;
}

/** Strict parse of journal.json (see the format above). */
export function parseJournal(bytes: Uint8Array, where: string): JournalFile {
  const obj = asObject(decodeJson(bytes, where), where);
  rejectUnknownFields(obj, FILE_FIELDS, where);
  if (obj.format !== 1) throw new HotPatchError('INVALID', `${where}: format must be 1, got ${describe(obj.format)}`);
  if (obj.updated_at !== undefined) parseRfc3339(obj.updated_at, `${where}: updated_at`);
  if (!Array.isArray(obj.plans)) throw new HotPatchError('INVALID', `${where}: plans must be an array, got ${describe(obj.plans)}`);
  const seen = new Set<string>();
  const plans = obj.plans.map((raw, i) => {
    const state = entry(raw, `${where}: plans[${i}]`);
    const id = state.plan.id;
    if (seen.has(id)) throw new HotPatchError('INVALID', `${where}: plan ${id} is listed twice`);
    for (const dep of state.plan.dependsOn ?? []) {
      if (!seen.has(dep)) throw new HotPatchError('INVALID', `${where}: plan ${id} depends on ${dep}, which is not listed before it`);
    }
    seen.add(id);
    return state;
  });
  const out: JournalFile = { format: 1, plans };
  if (obj.updated_at !== undefined) out.updated_at = obj.updated_at as string;
  return out;
}

/**
 * The text of a journal holding `plans`, exactly as the writer writes it. What this writer
 * writes, the reader accepts: every reason is bounded here, in one place (the planner keeps
 * the whole file under MAX_JOURNAL_BYTES by pruning finished plans and refusing new ones).
 */
export function journalText(plans: readonly PlanState[]): string {
  const bounded = plans.map((p) => (p.reason === undefined || p.reason.length <= MAX_REASON ? p : { ...p, reason: boundMessage(p.reason, MAX_REASON) }));
  const file: JournalFile = { format: 1, updated_at: new Date().toISOString(), plans: bounded };
  return `${JSON.stringify(file, null, 2)}\n`;
}

/** Serialised whole-file writer of one journal. */
export class Journal {
  readonly dir: string;
  readonly path: string;
  #queue: Promise<unknown> = Promise.resolve();
  /** The write queued behind the one in progress, not started yet (later requests join it). */
  #next: { snapshot: () => PlanState[]; result: Promise<void> } | undefined;
  #textBytes = 0;

  constructor(stateDir: string) {
    this.dir = stateDir;
    this.path = join(stateDir, JOURNAL_FILE);
  }

  /** Reads the journal (missing = no plans yet); removes temp files a crashed write left behind. */
  async load(): Promise<JournalFile> {
    try {
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
    } catch (cause) {
      throw new HotPatchError('IO', `cannot create state directory ${this.dir}: ${(cause as Error).message}`, { cause });
    }
    await removeStaleTempFiles(this.dir, JOURNAL_FILE);
    let bytes: Uint8Array;
    try {
      bytes = await readFileBounded(this.path, MAX_JOURNAL_BYTES, { what: 'plan journal' });
    } catch (error) {
      if (error instanceof HotPatchError && error.code === 'NOT_FOUND') return { format: 1, plans: [] };
      throw error;
    }
    const file = parseJournal(bytes, this.path);
    this.#textBytes = bytes.byteLength;
    return file;
  }

  /** Bytes of the journal text last loaded, or last serialised for a write (written or not). */
  get textBytes(): number {
    return this.#textBytes;
  }

  /**
   * Writes `snapshot()` as it is when the write's turn comes, so the file is always one
   * complete journal, old or new, and holds at least the state as of the call. A write asked
   * for while another waits its turn (not started yet) joins it: that one will record the
   * latest state anyway, so a burst of changes costs one write, not one each.
   */
  write(snapshot: () => PlanState[]): Promise<void> {
    if (this.#next !== undefined) {
      this.#next.snapshot = snapshot;
      return this.#next.result;
    }
    const next: { snapshot: () => PlanState[]; result: Promise<void> } = { snapshot, result: Promise.resolve() };
    const run = async (): Promise<void> => {
      this.#next = undefined; // from here on, a new request queues a write of its own
      const text = journalText(next.snapshot());
      this.#textBytes = Buffer.byteLength(text);
      await writeFileAtomic(this.path, text, { mode: 0o600 });
    };
    next.result = this.#queue.then(run, run);
    this.#next = next;
    this.#queue = next.result.catch(() => undefined); // the caller sees the failure; the queue goes on
    return next.result;
  }
}

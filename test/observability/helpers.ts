import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createEvent, type EventType, type HotPatchEvent } from '../../src/core/index.js';
import { AuditLog } from '../../src/observability/index.js';

export async function tempDir(): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'hotpatch-obs-'));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export function event(type: EventType, id: string, extra: Partial<HotPatchEvent> = {}): HotPatchEvent {
  return createEvent({ type, id, target: 'xps.crypto.hash.sha256', version: '1.2.3', reason: `${type} ${id}`, ...extra });
}

export function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** The complete lines of audit.log, without their newlines. */
export async function logLines(dir: string): Promise<string[]> {
  const text = await readFile(join(dir, 'audit.log'), 'utf8');
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  return lines;
}

export async function writeLog(dir: string, lines: readonly string[]): Promise<void> {
  await writeFile(join(dir, 'audit.log'), lines.map((l) => `${l}\n`).join(''));
}

export async function readState(dir: string): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(join(dir, 'state.json'), 'utf8')) as Record<string, unknown>;
}

export async function setAuditHead(dir: string, head: string | undefined): Promise<void> {
  const state = await readState(dir);
  if (head === undefined) delete state.audit_head;
  else state.audit_head = head;
  await writeFile(join(dir, 'state.json'), `${JSON.stringify(state, null, 2)}\n`);
}

/** A state directory whose audit log holds `n` events written by AuditLog. */
export async function logWith(n: number): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const t = await tempDir();
  const log = new AuditLog(t.dir);
  for (let i = 1; i <= n; i++) await log.append(event('Staged', `patch-${i}`, { reason: `event ${i}` }));
  await log.close();
  return t;
}

/*
 * Crash safety of the audit log with a real process: a writer (audit-crash-child.ts) is
 * killed with SIGKILL at random moments while appending. After every kill, opening the log
 * reconciles what the crash left (a cut partial line, an announced line adopted), then
 * verify accepts the whole log, and every append the writer saw resolve is in it.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { AuditLog, verifyAuditLog } from '../../src/observability/index.js';
import { logLines, tempDir } from './helpers.js';

const CHILD = fileURLToPath(new URL('./audit-crash-child.js', import.meta.url));

/** Runs the writer until it has confirmed `after` appends plus a random few ms, then SIGKILLs it. */
function runAndKill(dir: string, first: number, after: number, delayMs: number): Promise<number[]> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [CHILD, dir, String(first)], { stdio: ['ignore', 'pipe', 'inherit'] });
    const done: number[] = [];
    let killing = false;
    createInterface({ input: proc.stdout! }).on('line', (line) => {
      const m = /^done (\d+)$/.exec(line);
      if (m === null) return;
      done.push(Number(m[1]));
      if (!killing && done.length >= after) {
        killing = true;
        setTimeout(() => proc.kill('SIGKILL'), delayMs);
      }
    });
    proc.on('error', reject);
    proc.on('exit', (code, signal) => {
      if (signal === 'SIGKILL') resolve(done);
      else reject(new Error(`writer exited with ${code ?? signal}`));
    });
  });
}

test('a writer killed at random moments never leaves a log that fails to verify once reopened', async (t) => {
  const { dir, cleanup } = await tempDir();
  try {
    const confirmed: number[] = [];
    let first = 1;
    const outcomes = { truncated: 0, accepted: 0 };
    for (let round = 0; round < 8; round++) {
      const done = await runAndKill(dir, first, 3 + (round % 4), round % 3);
      confirmed.push(...done);
      const log = new AuditLog(dir);
      await log.open();
      assert.equal(log.reconciliation?.consistent, true, `round ${round}: ${JSON.stringify(log.reconciliation)}`);
      if (log.reconciliation!.truncatedBytes > 0) outcomes.truncated += 1;
      if (log.reconciliation!.acceptedLine !== undefined) outcomes.accepted += 1;
      await log.close();
      const v = await verifyAuditLog(dir);
      assert.equal(v.ok, true, `round ${round}: ${JSON.stringify(v.firstBad)}`);
      const numbers = new Set((await logLines(dir)).map((l) => Number(/"reason":"event (\d+)"/.exec(l)?.[1])));
      for (const n of confirmed) assert.ok(numbers.has(n), `round ${round}: confirmed event ${n} is missing`);
      first = Math.max(...numbers, 0) + 1;
    }
    assert.ok(confirmed.length >= 8 * 3);
    t.diagnostic(`reconciled: ${JSON.stringify(outcomes)}`);
  } finally {
    await cleanup();
  }
});

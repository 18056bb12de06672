/*
 * Opening the audit log checks only its end against state.json; a line edited further back
 * (the lines after it left in place) shows in a full read of the chain, which the agent runs
 * in the background after its start: its status, the dashboard's badge and
 * hotpatch_audit_chain_ok then say the log is not intact.
 */
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { startAgent } from '../../src/agent/index.js';
import { AuditLog, verifyAuditLog } from '../../src/observability/index.js';
import { event, logWith } from './helpers.js';

/** Changes one character of line `n` (1-based) in place: its hash changes, the lines after stay. */
async function editLine(dir: string, n: number): Promise<void> {
  const file = join(dir, 'audit.log');
  const lines = (await readFile(file, 'utf8')).split('\n');
  lines[n - 1] = lines[n - 1]!.replace(`"event ${n}"`, `"event X"`);
  await writeFile(file, lines.join('\n'));
}

test('a line edited in the middle of the log passes the open but not the chain check, which names it', async () => {
  const { dir, cleanup } = await logWith(12);
  try {
    await editLine(dir, 4);
    const log = new AuditLog(dir);
    try {
      await log.open();
      assert.equal(log.reconciliation?.consistent, true, 'the end still matches state.json');
      assert.equal(log.chain.state, 'unchecked');
      const standing = await log.checkChain();
      assert.equal(standing.state, 'broken');
      assert.equal(standing.state === 'broken' ? standing.line : 0, 4);
      assert.equal(log.intact, false);
      assert.equal((await verifyAuditLog(dir)).firstBad?.line, 4, 'the same line as audit verify');
    } finally {
      await log.close();
    }
  } finally {
    await cleanup();
  }
});

test('the chain check reads only the lines there at open: appends made while it reads leave it ok', async () => {
  const { dir, cleanup } = await logWith(200);
  try {
    const log = new AuditLog(dir);
    try {
      await log.open();
      const checking = log.checkChain();
      const appends = Array.from({ length: 50 }, (_, i) => log.append(event('Activated', `later-${i}`)));
      const [standing] = await Promise.all([checking, ...appends]);
      assert.deepEqual(standing, { state: 'ok', lines: 200 });
      assert.equal(log.intact, true);
      assert.equal(log.checkChain(), checking, 'once per log');
    } finally {
      await log.close();
    }
    assert.equal((await verifyAuditLog(dir)).ok, true);
  } finally {
    await cleanup();
  }
});

test('an agent started on a log edited in the middle says so once it has read it: status, hotpatch_audit_chain_ok 0', async () => {
  const { dir, cleanup } = await logWith(12);
  try {
    await editLine(dir, 7);
    const agent = await startAgent({ stateDir: dir, log: false });
    try {
      const standing = await agent.audit.checkChain(); // the check the start began
      assert.equal(standing.state, 'broken');
      assert.match(await agent.metrics.metrics(), /^hotpatch_audit_chain_ok 0$/m);
    } finally {
      await agent.close();
    }
    const intact = await logWith(3);
    try {
      const agent2 = await startAgent({ stateDir: intact.dir, log: false });
      try {
        assert.equal((await agent2.audit.checkChain()).state, 'ok');
        assert.match(await agent2.metrics.metrics(), /^hotpatch_audit_chain_ok 1$/m);
      } finally {
        await agent2.close();
      }
    } finally {
      await intact.cleanup();
    }
  } finally {
    await cleanup();
  }
});

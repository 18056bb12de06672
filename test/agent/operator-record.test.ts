/*
 * Who did what: every operator request the agent accepts is in the audit log before it acts —
 * a `Requested` event naming the action, the target, how the caller was admitted and who they
 * declared themselves to be — and the compliance report lists them apart from the patches.
 * The agent's tokens never appear in what it records, even when a payload throws one back.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { startAgent } from '../../src/agent/index.js';
import { HotPatchError } from '../../src/core/index.js';
import { buildReport, formatReport } from '../../src/observability/index.js';
import { FAST_ZDT, T, call, endpointOf, hostRuntime, hotpatch, makeFixture, planOf, writeToken } from './helpers.js';

test(
  'operator requests are recorded before they act, with credential and declared actor, and the report lists them apart from patches',
  { timeout: 60_000 },
  async () => {
    const fx = await makeFixture('hotpatch-agent-record-');
    const token = randomBytes(24).toString('hex');
    const tokenFile = join(fx.dir, 'operator.token');
    await writeToken(tokenFile, `${token}\n`);
    const host = hostRuntime(fx.stateDir);
    const agent = await startAgent({
      stateDir: fx.stateDir,
      runtime: host.runtime,
      http: { port: 0, tokenFile },
      defaults: { repository: fx.repoDir, trustStore: fx.trustFile },
      log: false,
    });
    try {
      const ep = endpointOf(agent.address, token);
      const frozen = await call(ep, 'POST', '/v1/freeze', { target: T, reason: 'change freeze' }, { headers: { 'x-hotpatch-actor': 'alice@ops\u00e9' } });
      assert.equal(frozen.status, 200, frozen.text);
      const cli = await hotpatch(['freeze', '--agent', agent.address, '--token-file', tokenFile, '--target', T, '--unfreeze', '--json']);
      assert.equal(cli.status, 0, `${cli.stdout}${cli.stderr}`);
      await agent.audit.flush();

      const lines = (await readFile(join(fx.stateDir, 'audit.log'), 'utf8'))
        .trim()
        .split('\n')
        .map((l) => (JSON.parse(l) as { event: { type: string; target: string; reason: string; detail: Record<string, unknown> } }).event);
      const requested = lines.filter((e) => e.type === 'Requested');
      assert.deepEqual(
        requested.map((e) => [e.detail.action, e.target, e.detail.credential]),
        [
          ['freeze', T, 'operator-token'],
          ['unfreeze', T, 'operator-token'],
        ],
      );
      assert.equal(requested[0]!.detail.actor, 'alice@ops?', 'the declared actor is kept as printable text');
      assert.match(String(requested[1]!.detail.actor), /^.+@.+$/, 'the CLI declares user@host');
      assert.equal(requested[0]!.reason, `freeze of ${T} requested by operator-token (alice@ops?)`);

      const report = await buildReport(fx.stateDir);
      assert.deepEqual(
        report.operatorActions.map((o) => [o.action, o.credential, o.verified]),
        [
          ['freeze', 'operator-token', true],
          ['unfreeze', 'operator-token', true],
        ],
      );
      assert.ok(!report.patches.some((p) => p.id === 'operator'), 'operator requests are not reported as patches');
      assert.match(formatReport(report, 'md'), /## Operator actions[\s\S]*\| freeze \| xps\.crypto\.hash\.sha256 \| operator-token \| alice@ops\? \|/);
    } finally {
      await agent.close();
      await fx.close();
    }
  },
);

test(
  'a payload that reads the agent token and throws it back gets no fragment of it into the answer, the plan, the journal or the audit log',
  { timeout: 60_000 },
  async () => {
    const fx = await makeFixture('hotpatch-agent-secret-');
    const token = randomBytes(24).toString('hex');
    const tokenFile = join(fx.dir, 'operator.token');
    await writeToken(tokenFile, `${token}\n`);
    // It leaks the token whole, and a 6-character piece of it, through its self-test's error.
    await fx.publish(
      'leaky',
      '1.1.0',
      `import { readFileSync } from 'node:fs';
export const api = { digest: () => 'x' };
export function selfTest() { const t = readFileSync(${JSON.stringify(tokenFile)}, 'utf8').trim(); throw new Error('token ' + t + ' piece ' + t.slice(10, 16)); }`,
    );
    const host = hostRuntime(fx.stateDir);
    const agent = await startAgent({
      stateDir: fx.stateDir,
      runtime: host.runtime,
      http: { port: 0, tokenFile },
      defaults: { repository: fx.repoDir, trustStore: fx.trustFile },
      log: false,
    });
    try {
      const r = await call(endpointOf(agent.address, token), 'POST', '/v1/apply', { plan: planOf('plan-leaky', 'leaky', FAST_ZDT) });
      assert.equal(r.status, 422, r.text);
      assert.equal(r.json.code, 'SELF_TEST_FAILED');
      assert.match(String(r.json.message), /token \[redacted\] piece \[redacted\]/);
      await agent.planner.flush();
      await agent.audit.flush();
      const records = [
        r.text,
        JSON.stringify(agent.planner.plans()),
        await readFile(join(fx.stateDir, 'journal.json'), 'utf8'),
        await readFile(join(fx.stateDir, 'audit.log'), 'utf8'),
      ];
      for (const [i, text] of records.entries()) {
        for (let k = 0; k + 6 <= token.length; k++) assert.ok(!text.includes(token.slice(k, k + 6)), `record ${i} holds a piece of the token`);
      }
    } finally {
      await agent.close();
      await fx.close();
    }
  },
);

test('startAgent refuses an unknown auditMode and planner limits that are not positive integers, before claiming anything', async () => {
  const fx = await makeFixture('hotpatch-agent-opts-');
  try {
    for (const bad of [{ auditMode: 'sometimes' }, { maxApplyCrashes: 0 }, { keepFinishedPlans: -1 }, { maxOpenPlans: 1.5 }]) {
      await assert.rejects(
        startAgent({ stateDir: fx.stateDir, log: false, ...(bad as object) }),
        (e: unknown) => e instanceof HotPatchError && e.code === 'INVALID' && e.message.includes(Object.keys(bad)[0]!),
      );
    }
  } finally {
    await fx.close();
  }
});

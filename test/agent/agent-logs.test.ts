/*
 * The agent's own log: one JSON line per event, plus where it listens when it starts and a
 * line when it stops — on stderr by default (stdout is the host's own), or on the destination
 * given.
 */
import assert from 'node:assert/strict';
import { resolve } from 'node:path';
import { test } from 'node:test';
import { runNode } from '../support/run-node.js';
import { makeFixture } from './helpers.js';

test(
  'by default the agent logs to stderr: where it listens, each event (an operator freeze included), and its stop; stdout stays the host’s',
  { timeout: 60_000 },
  async () => {
    const fx = await makeFixture('hotpatch-agent-logs-');
    try {
      const agentModule = resolve('dist/src/agent/index.js');
      const helpers = resolve('dist/test/agent/helpers.js');
      const code = `
      const { startAgent } = await import(${JSON.stringify(agentModule)});
      const { hostRuntime, call, T } = await import(${JSON.stringify(helpers)});
      const { runtime } = hostRuntime(${JSON.stringify(fx.stateDir)});
      const agent = await startAgent({ stateDir: ${JSON.stringify(fx.stateDir)}, runtime });
      const r = await call({ socketPath: agent.address.slice(5) }, 'POST', '/v1/freeze', { target: T, reason: 'log check' });
      if (r.status !== 200) throw new Error(r.text);
      await agent.close();
    `;
      const r = await runNode(['--input-type=module', '-e', code]);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, '', 'nothing on stdout');
      const lines = r.stderr
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as { msg: string; eventType?: string; level: number });
      assert.match(lines[0]!.msg, /^hotpatch agent listening on unix:.*agent\.sock$/);
      assert.ok(
        lines.some((l) => l.eventType === 'Requested' && /freeze of xps\.crypto\.hash\.sha256 requested by unix-socket/.test(l.msg)),
        r.stderr,
      );
      assert.match(lines.at(-1)!.msg, /^hotpatch agent stopped/);
    } finally {
      await fx.close();
    }
  },
);

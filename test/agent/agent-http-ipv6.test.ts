/*
 * An agent on IPv6 loopback ([::1]): the CLI reaches it by its URL (the brackets are the URL's,
 * not the address's), and it answers only to its own address in Host.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { hotpatchAsync } from '../cli/run-cli.js';
import { makeFixture, startHttpAgent, statusWithHost } from './helpers.js';

test('an agent on [::1] is reached by hotpatch status --agent http://[::1]:PORT and answers to [::1] only', async () => {
  const fx = await makeFixture('hotpatch-agent-ipv6-');
  const { agent, ep, tokenFile, runtime } = await startHttpAgent(fx, { http: { host: '::1' } });
  try {
    assert.match(agent.address, /^http:\/\/\[::1\]:\d+$/);
    const ok = await hotpatchAsync(['status', '--agent', agent.address, '--token-file', tokenFile, '--json']);
    assert.equal(ok.status, 0, ok.stdout + ok.stderr);
    assert.equal(await statusWithHost(ep, '/v1/status', `[::1]:${ep.port}`), 200);
    assert.equal(await statusWithHost(ep, '/v1/status', `127.0.0.1:${ep.port}`), 421);
  } finally {
    await agent.close();
    runtime.close();
    await fx.close();
  }
});

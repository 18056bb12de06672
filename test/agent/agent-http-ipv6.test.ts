/*
 * An agent on IPv6 loopback ([::1]): the CLI reaches it by its URL (the brackets are the URL's,
 * not the address's), and it answers only to its own address in Host.
 */
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { test } from 'node:test';
import { hotpatchAsync } from '../cli/run-cli.js';
import { makeFixture, startHttpAgent } from './helpers.js';

function status(port: number, host: string, token: string): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const req = request({ host: '::1', port, path: '/v1/status', headers: { host, authorization: `Bearer ${token}` } }, (res) => {
      res.resume();
      resolvePromise(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

test('an agent on [::1] is reached by hotpatch status --agent http://[::1]:PORT and answers to [::1] only', async () => {
  const fx = await makeFixture('hotpatch-agent-ipv6-');
  const { agent, ep, tokenFile, runtime } = await startHttpAgent(fx, { http: { host: '::1' } });
  try {
    assert.match(agent.address, /^http:\/\/\[::1\]:\d+$/);
    const ok = await hotpatchAsync(['status', '--agent', agent.address, '--token-file', tokenFile, '--json']);
    assert.equal(ok.status, 0, ok.stdout + ok.stderr);
    assert.equal(await status(ep.port!, `[::1]:${ep.port}`, ep.token!), 200);
    assert.equal(await status(ep.port!, `127.0.0.1:${ep.port}`, ep.token!), 421);
  } finally {
    await agent.close();
    runtime.close();
    await fx.close();
  }
});

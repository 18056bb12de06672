/*
 * Who the agent refuses: a wrong or missing bearer token is 401 UNAUTHENTICATED and the CLI
 * exits 3 naming the token file; a read-only token asked to change something stays 403
 * POLICY_DENIED (exit 1). And the agent and token file of a config file reach a real agent.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startAgent, type Agent } from '../../src/agent/index.js';
import type { Target } from '../../src/zero-downtime/index.js';
import { T, builtin, call, hostRuntime, makeFixture, writeToken, type Fixture } from '../agent/helpers.js';
import { cleanEnv, hotpatchAsync, type CliResult } from './run-cli.js';

const show = (r: CliResult): string => `exit ${r.status}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;

describe('the CLI against an agent on loopback HTTP with tokens', { timeout: 60_000 }, () => {
  let fx: Fixture;
  let agent: Agent;
  let target: Target<typeof builtin>;
  let tokenFile: string;
  let readTokenFile: string;
  let wrongFile: string;
  let env: NodeJS.ProcessEnv;

  before(async () => {
    fx = await makeFixture('hotpatch-cli-auth-');
    tokenFile = join(fx.dir, 'agent.token');
    readTokenFile = join(fx.dir, 'read.token');
    wrongFile = join(fx.dir, 'wrong.token');
    await writeToken(tokenFile, randomBytes(24).toString('hex'));
    await writeToken(readTokenFile, randomBytes(24).toString('hex'));
    await writeToken(wrongFile, randomBytes(24).toString('hex'));
    const host = hostRuntime(fx.stateDir);
    target = host.target;
    agent = await startAgent({ stateDir: fx.stateDir, runtime: host.runtime, http: { port: 0, tokenFile, readTokenFile }, log: false });
    await mkdir(join(fx.dir, 'home'));
    env = cleanEnv(join(fx.dir, 'home'));
  });

  after(async () => {
    await agent?.close();
    await fx?.close();
  });

  test('a token file others can read, or a short one, is the operator\u2019s to fix: a usage error (exit 2), and nothing is sent', async () => {
    const loose = join(fx.dir, 'loose.token');
    await writeToken(loose, randomBytes(24).toString('hex'), 0o644);
    const short = join(fx.dir, 'short.token');
    await writeToken(short, 'abc');
    for (const file of [loose, short]) {
      const r = await hotpatchAsync(['freeze', '--agent', agent.address, '--token-file', file, '--target', T, '--reason', 'x', '--json'], { env });
      assert.equal(r.status, 2, show(r));
      assert.equal(r.json?.code, 'INVALID');
    }
    assert.equal(target.frozen, undefined);
  });

  test('a request without a known token is answered 401 with the code UNAUTHENTICATED', async () => {
    const port = Number(new URL(agent.address).port);
    const r = await call({ host: '127.0.0.1', port }, 'GET', '/v1/status');
    assert.equal(r.status, 401);
    assert.equal(r.json.code, 'UNAUTHENTICATED');
  });

  test('a wrong token makes status, events and freeze exit 3 with UNAUTHENTICATED, naming the token file, and changes nothing', async () => {
    for (const args of [['status'], ['events', '--count', '1'], ['freeze', '--target', T, '--reason', 'x']]) {
      const r = await hotpatchAsync([...args, '--agent', agent.address, '--token-file', wrongFile, '--json'], { env });
      assert.equal(r.status, 3, `${args[0]}: ${show(r)}`);
      assert.equal(r.json?.code, 'UNAUTHENTICATED', args[0]);
      assert.equal(
        String(r.json?.message).startsWith(`the agent refused the token in ${wrongFile} (401): wrong or missing token`),
        true,
        String(r.json?.message),
      );
      assert.match(r.stderr, /^hotpatch: UNAUTHENTICATED: the agent refused the token in /m);
    }
    assert.equal(target.frozen, undefined);
  });

  test('a read-only token asked to change something is still 403 POLICY_DENIED, exit 1; it may read', async () => {
    const refused = await hotpatchAsync(['freeze', '--agent', agent.address, '--token-file', readTokenFile, '--target', T, '--reason', 'x', '--json'], { env });
    assert.equal(refused.status, 1, show(refused));
    assert.equal(refused.json?.code, 'POLICY_DENIED');
    assert.equal(target.frozen, undefined);
    const status = await hotpatchAsync(['status', '--agent', agent.address, '--token-file', readTokenFile, '--json'], { env });
    assert.equal(status.status, 0, show(status));
  });

  test('the agent URL and a relative tokenFile from ./.hotpatch.json reach the agent; HOTPATCH_TOKEN_FILE wins over the file', async () => {
    const work = join(fx.dir, 'work');
    await mkdir(work);
    await writeFile(join(work, '.hotpatch.json'), JSON.stringify({ agent: agent.address, tokenFile: '../agent.token' }));
    const r = await hotpatchAsync(['status', '--json'], { cwd: work, env });
    assert.equal(r.status, 0, show(r));
    assert.equal((r.json?.targets as { target: string }[])[0]?.target, T);
    // The environment comes before the file: its (wrong) token is the one sent.
    const wrong = await hotpatchAsync(['status', '--json'], { cwd: work, env: { ...env, HOTPATCH_TOKEN_FILE: wrongFile } });
    assert.equal(wrong.status, 3, show(wrong));
    assert.equal(wrong.json?.code, 'UNAUTHENTICATED');
  });
});

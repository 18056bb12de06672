/*
 * The agent on loopback HTTP with a bearer token read from a 0600 file: requests without
 * the token, or with a wrong one, are refused (401) and change nothing.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { access, readFile, readdir } from 'node:fs/promises';
import { connect } from 'node:net';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startAgent, type Agent } from '../../src/agent/index.js';
import type { Target } from '../../src/zero-downtime/index.js';
import { T, builtin, call, hostRuntime, hotpatch, makeFixture, openEvents, planOf, sha, writeToken, type Endpoint, type Fixture } from './helpers.js';

async function readOrNull(path: string): Promise<string | null> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}

describe('agent on loopback HTTP with a bearer token', { timeout: 60_000 }, () => {
  let fx: Fixture;
  let agent: Agent;
  let target: Target<typeof builtin>;
  let token: string;
  let tokenFile: string;
  let port: number;
  /** With the right token. */
  let ep: Endpoint;
  /** No Authorization header at all. */
  let anon: Endpoint;

  before(async () => {
    fx = await makeFixture('hotpatch-agent-http-');
    await fx.publish('http-good', '1.1.0');
    token = randomBytes(24).toString('hex');
    tokenFile = join(fx.dir, 'agent.token');
    await writeToken(tokenFile, `${token}\n`);
    const host = hostRuntime(fx.stateDir);
    target = host.target;
    agent = await startAgent({
      stateDir: fx.stateDir,
      runtime: host.runtime,
      http: { port: 0, tokenFile },
      defaults: { repository: fx.repoDir, trustStore: fx.trustFile },
      log: false,
    });
    const m = /^http:\/\/127\.0\.0\.1:(\d+)$/.exec(agent.address);
    assert.ok(m !== null, `address ${agent.address}`);
    port = Number(m[1]);
    ep = { host: '127.0.0.1', port, token };
    anon = { host: '127.0.0.1', port };
  });

  after(async () => {
    await agent?.close();
    await fx?.close();
  });

  test('listens on 127.0.0.1 only, and on no Unix socket', async () => {
    assert.ok(port > 0);
    await assert.rejects(access(join(fx.stateDir, 'agent.sock')), { code: 'ENOENT' });
    // Every non-loopback IPv4 address of this host refuses the port.
    const external = Object.values(networkInterfaces())
      .flat()
      .filter((i) => i !== undefined && i.family === 'IPv4' && !i.internal)
      .map((i) => i!.address);
    for (const address of external) {
      const outcome = await new Promise<string>((resolveConnect) => {
        const s = connect({ host: address, port });
        s.once('connect', () => {
          s.destroy();
          resolveConnect('connected');
        });
        s.once('error', (e: NodeJS.ErrnoException) => resolveConnect(e.code ?? 'error'));
      });
      assert.equal(outcome, 'ECONNREFUSED', `port ${port} on ${address}`);
    }
    const r = await call(ep, 'GET', '/v1/status');
    assert.equal(r.status, 200);
  });

  test('requests without the token are refused with 401 and change nothing', async () => {
    await agent.planner.flush();
    await agent.audit.flush();
    const files = ['journal.json', 'audit.log', 'state.json'];
    const before = await Promise.all(files.map((f) => readOrNull(join(fx.stateDir, f))));

    const attempts: [string, string, unknown][] = [
      ['GET', '/v1/status', undefined],
      ['GET', '/v1/plans', undefined],
      ['GET', '/metrics', undefined],
      ['GET', '/v1/no-such-endpoint', undefined],
      ['POST', '/v1/apply', { plan: planOf('sneaky', 'http-good') }],
      ['POST', '/v1/freeze', { target: T, reason: 'sneaky freeze' }],
      ['POST', '/v1/rollback', { target: T }],
      ['POST', '/v1/apply', '{not json'],
    ];
    for (const [method, path, body] of attempts) {
      const r = await call(anon, method, path, body);
      assert.equal(r.status, 401, `${method} ${path}: ${r.text}`);
      assert.equal(r.headers['www-authenticate'], 'Bearer');
      assert.deepEqual(r.json, { ok: false, code: 'UNAUTHENTICATED', message: 'missing or wrong bearer token' });
    }
    const events = openEvents(anon);
    try {
      assert.equal(await events.status, 401);
    } finally {
      events.close();
    }

    const after = await Promise.all(files.map((f) => readOrNull(join(fx.stateDir, f))));
    files.forEach((f, i) => assert.equal(after[i], before[i], `${f} unchanged`));
    assert.equal(target.frozen, undefined);
    assert.deepEqual(agent.planner.plans(), []);
  });

  test('a wrong token is refused with 401', async () => {
    const wrong = [
      `Bearer ${token.slice(0, -1)}`,
      `Bearer ${token}x`,
      `Bearer ${randomBytes(24).toString('hex')}`,
      'Bearer ',
      `Basic ${Buffer.from(`user:${token}`).toString('base64')}`,
      token,
    ];
    for (const authorization of wrong) {
      const r = await call(anon, 'POST', '/v1/freeze', { target: T, reason: 'wrong token' }, { headers: { authorization } });
      assert.equal(r.status, 401, `${authorization}: ${r.text}`);
      assert.equal(r.json.code, 'UNAUTHENTICATED');
    }
    assert.equal(target.frozen, undefined);
  });

  test('the right token is served, including an apply and the event stream', async () => {
    const s = await call(ep, 'GET', '/v1/status');
    assert.equal(s.status, 200);
    assert.equal((s.json.targets as { target: string }[])[0]!.target, T);

    const stream = openEvents(ep);
    try {
      assert.equal(await stream.status, 200);
      await stream.subscribed();
      let done = false;
      const reply = call(ep, 'POST', '/v1/apply', { plan: planOf('http-plan', 'http-good') }).finally(() => (done = true));
      let failures = 0;
      for (let i = 0; !done; i++) {
        if (target.api.digest(`h${i}`) !== sha(`h${i}`)) failures += 1;
        if (i % 20 === 0) await new Promise((r) => setImmediate(r));
      }
      const r = await reply;
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.status, 'activated');
      assert.equal(failures, 0);
      await stream.waitFor((es) => es.some((e) => e.type === 'Activated'), 10_000, 'Activated');
    } finally {
      stream.close();
    }
    const m = await call(ep, 'GET', '/metrics');
    assert.equal(m.status, 200);
    assert.match(m.text, /hotpatch_events_total\{type="Activated",target="xps\.crypto\.hash\.sha256"\} 1/);
    const f = await call(ep, 'POST', '/v1/freeze', { target: T, reason: 'with the token' });
    assert.equal(f.status, 200);
    assert.equal(target.frozen, 'with the token');
    assert.equal((await call(ep, 'POST', '/v1/unfreeze', { target: T })).status, 200);
    assert.equal(target.frozen, undefined);
  });

  test('hotpatch status --agent URL --token-file FILE talks to it; a wrong or missing token does not', async () => {
    const ok = await hotpatch(['status', '--agent', agent.address, '--token-file', tokenFile, '--json']);
    assert.equal(ok.status, 0, ok.stderr);
    assert.equal(ok.json?.ok, true);
    assert.equal((ok.json?.targets as { active: { version: string } }[])[0]!.active.version, '1.1.0');

    const env = { ...process.env };
    delete env.HOTPATCH_TOKEN_FILE;
    const noFile = await hotpatch(['status', '--agent', agent.address, '--json'], { env });
    assert.equal(noFile.status, 2, noFile.stdout);
    assert.match(String(noFile.json?.message), /token-file/);

    const wrongFile = join(fx.dir, 'wrong.token');
    await writeToken(wrongFile, randomBytes(24).toString('hex'));
    const wrong = await hotpatch(['freeze', '--agent', agent.address, '--token-file', wrongFile, '--target', T, '--reason', 'x', '--json']);
    // An authentication failure, not a refused patch: its own code and exit 3.
    assert.equal(wrong.status, 3, wrong.stdout);
    assert.equal(wrong.json?.code, 'UNAUTHENTICATED');
    assert.equal(target.frozen, undefined);
  });

  test('startAgent refuses a token file others can read, a short token and a missing file', async () => {
    const cases: [string, string, number, string, RegExp][] = [
      ['world-readable.token', 'a'.repeat(40), 0o644, 'INVALID', /mode 644: it must be 0600/],
      ['group-readable.token', 'a'.repeat(40), 0o640, 'INVALID', /mode 640/],
      ['short.token', 'tooshort', 0o600, 'INVALID', /at least 16/],
    ];
    for (const [name, content, mode, code, message] of cases) {
      const file = join(fx.dir, name);
      await writeToken(file, content, mode);
      const dir = join(fx.dir, `state-${name}`);
      const host = hostRuntime(dir);
      await assert.rejects(
        startAgent({ stateDir: dir, runtime: host.runtime, http: { port: 0, tokenFile: file }, log: false }),
        (e: Error & { code?: string }) => {
          assert.equal(e.code, code, e.message);
          assert.match(e.message, message);
          return true;
        },
      );
      host.runtime.close();
    }
    const dir = join(fx.dir, 'state-missing');
    const host = hostRuntime(dir);
    await assert.rejects(startAgent({ stateDir: dir, runtime: host.runtime, http: { port: 0, tokenFile: join(fx.dir, 'nope.token') }, log: false }), {
      code: 'NOT_FOUND',
    });
    host.runtime.close();
  });

  test('a refused start releases what it opened: no file descriptor is left open', async () => {
    const fds = async (): Promise<number> => (await readdir('/proc/self/fd')).length;
    const file = join(fx.dir, 'leak.token');
    await writeToken(file, 'b'.repeat(40), 0o644);
    const before = await fds();
    for (let i = 0; i < 3; i++) {
      const dir = join(fx.dir, `state-leak-${i}`);
      const host = hostRuntime(dir);
      await assert.rejects(startAgent({ stateDir: dir, runtime: host.runtime, http: { port: 0, tokenFile: file }, log: false }), { code: 'INVALID' });
      host.runtime.close();
    }
    const after = await fds();
    assert.equal(after, before, `${after - before} file descriptors (the audit logs of the refused starts) stay open`);
  });

  test('startAgent refuses a non-loopback host (loopback HTTP only)', async () => {
    const dir = join(fx.dir, 'state-any');
    const host = hostRuntime(dir);
    const started = await startAgent({
      stateDir: dir,
      runtime: host.runtime,
      // A JavaScript caller (or a config file) can pass what the TypeScript type forbids.
      http: { port: 0, host: '0.0.0.0' as unknown as '127.0.0.1', tokenFile },
      log: false,
    }).catch((e: unknown) => e);
    host.runtime.close();
    if (!(started instanceof Error)) {
      const a = started as Agent;
      const address = a.address;
      await a.close();
      assert.fail(`startAgent served on ${address}, every interface: it must refuse a non-loopback host with INVALID`);
    }
    assert.equal((started as Error & { code?: string }).code, 'INVALID');
  });

  test('the audit log recorded the apply, each canary verdict with its figures, and none of the refused requests', async () => {
    await agent.audit.flush();
    const log = await readFile(join(fx.stateDir, 'audit.log'), 'utf8');
    assert.doesNotMatch(log, /sneaky/);
    assert.match(log, /http-good/);
    const steps = log
      .trim()
      .split('\n')
      .map((line) => (JSON.parse(line) as { event: { type: string; detail?: Record<string, unknown> } }).event)
      .filter((e) => e.type === 'CanaryStep');
    assert.ok(steps.length > 0);
    for (const e of steps) {
      for (const field of [
        'verdict',
        'rule',
        'candidateCalls',
        'candidateErrors',
        'baselineCalls',
        'baselineErrors',
        'errorTest',
        'errorP',
        'latencyTest',
        'alpha',
        'confidence',
        'warmupExcluded',
      ]) {
        assert.ok(e.detail !== undefined && field in e.detail, `CanaryStep audit line lacks ${field}: ${JSON.stringify(e.detail)}`);
      }
    }
  });
});

/*
 * Per-verb access on the loopback HTTP endpoint: next to the operator token, an optional
 * read-only token may read (status, plans, events, metrics) and is refused with 403 on every
 * endpoint that changes something, before its body is read; the operator token still does
 * everything, and a wrong token is still 401.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { access, readFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startAgent, type Agent } from '../../src/agent/index.js';
import type { Target } from '../../src/zero-downtime/index.js';
import {
  BUILTIN_VERSION,
  T,
  builtin,
  call,
  hostRuntime,
  hotpatch,
  makeFixture,
  openEvents,
  planOf,
  writeToken,
  type Endpoint,
  type Fixture,
} from './helpers.js';

async function readOrNull(path: string): Promise<string | null> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}

/** Every endpoint that changes something, each with a body it would accept from the operator. */
const MUTATIONS: [string, unknown][] = [
  ['/v1/apply', { plan: planOf('ro-sneaky', 'ro-good') }],
  ['/v1/promote', { target: T }],
  ['/v1/abort', { target: T, reason: 'ro abort' }],
  ['/v1/rollback', { target: T, reason: 'ro rollback' }],
  ['/v1/freeze', { target: T, reason: 'ro freeze' }],
  ['/v1/unfreeze', { target: T }],
];

describe('a read-only token may read the agent and change nothing', { timeout: 60_000 }, () => {
  let fx: Fixture;
  let agent: Agent;
  let target: Target<typeof builtin>;
  let operatorFile: string;
  let readFile_: string;
  let operator: Endpoint;
  let reader: Endpoint;
  let port: number;

  before(async () => {
    fx = await makeFixture('hotpatch-agent-ro-');
    await fx.publish('ro-good', '1.1.0');
    const operatorToken = randomBytes(24).toString('hex');
    const readToken = randomBytes(24).toString('hex');
    operatorFile = join(fx.dir, 'operator.token');
    readFile_ = join(fx.dir, 'read.token');
    await writeToken(operatorFile, `${operatorToken}\n`);
    await writeToken(readFile_, `${readToken}\n`);
    const host = hostRuntime(fx.stateDir);
    target = host.target;
    agent = await startAgent({
      stateDir: fx.stateDir,
      runtime: host.runtime,
      http: { port: 0, tokenFile: operatorFile, readTokenFile: readFile_ },
      defaults: { repository: fx.repoDir, trustStore: fx.trustFile },
      log: false,
    });
    port = Number(/:(\d+)$/.exec(agent.address)![1]);
    operator = { host: '127.0.0.1', port, token: operatorToken };
    reader = { host: '127.0.0.1', port, token: readToken };
  });

  after(async () => {
    await agent?.close();
    await fx?.close();
  });

  test('the read-only token reads status, plans, metrics and the event stream', async () => {
    for (const path of ['/v1/status', '/v1/plans', '/metrics']) {
      const r = await call(reader, 'GET', path);
      assert.equal(r.status, 200, `${path}: ${r.text}`);
    }
    const s = await call(reader, 'GET', '/v1/status');
    assert.equal((s.json.targets as { target: string }[])[0]!.target, T);
    const events = openEvents(reader);
    try {
      assert.equal(await events.status, 200);
    } finally {
      events.close();
    }
  });

  test('the read-only token is refused with 403 POLICY_DENIED on every endpoint that changes something, and nothing changes', async () => {
    await agent.planner.flush();
    await agent.audit.flush();
    const files = ['journal.json', 'audit.log', 'state.json'];
    const before = await Promise.all(files.map((f) => readOrNull(join(fx.stateDir, f))));
    for (const [path, body] of MUTATIONS) {
      const r = await call(reader, 'POST', path, body);
      assert.equal(r.status, 403, `POST ${path}: ${r.text}`);
      assert.equal(r.json.ok, false);
      assert.equal(r.json.code, 'POLICY_DENIED');
      assert.match(String(r.json.message), new RegExp(`read-only.*not POST ${path.replace(/\//g, '\\/')}; use the operator token`));
    }
    await agent.planner.flush();
    await agent.audit.flush();
    const after = await Promise.all(files.map((f) => readOrNull(join(fx.stateDir, f))));
    files.forEach((f, i) => assert.equal(after[i], before[i], `${f} unchanged`));
    assert.deepEqual(agent.planner.plans(), []);
    assert.equal(target.frozen, undefined);
    assert.equal(target.active.version, BUILTIN_VERSION);
  });

  test('the 403 comes before the body is read: a request whose body never ends is still answered', async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port,
          method: 'POST',
          path: '/v1/freeze',
          headers: { authorization: `Bearer ${reader.token}`, 'content-type': 'application/json', 'content-length': '100000' },
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
          req.destroy();
        },
      );
      req.on('error', (e) => (req.destroyed ? undefined : reject(e)));
      // 20 of the 100,000 announced bytes, and no more: an agent reading the body first would wait for ever.
      req.write('{"target":"xps.cryp');
    });
    assert.equal(status, 403);
    assert.equal(target.frozen, undefined);
  });

  test('the operator token still does everything, and a wrong token is still 401', async () => {
    const frozen = await call(operator, 'POST', '/v1/freeze', { target: T, reason: 'by the operator' });
    assert.equal(frozen.status, 200, frozen.text);
    assert.equal(target.frozen, 'by the operator');
    assert.equal((await call(operator, 'POST', '/v1/unfreeze', { target: T })).status, 200);
    assert.equal(target.frozen, undefined);
    // Past the access check: the endpoint itself answers (no such plan), not a 403.
    const named = await call(operator, 'POST', '/v1/apply', { planId: 'no-such-plan' });
    assert.equal(named.status, 404, named.text);
    for (const authorization of [`Bearer ${randomBytes(24).toString('hex')}`, `Bearer ${reader.token}x`, `Bearer ${operator.token!.slice(1)}`]) {
      for (const [method, path] of [
        ['GET', '/v1/status'],
        ['POST', '/v1/freeze'],
      ] as const) {
        const r = await call({ host: '127.0.0.1', port }, method, path, method === 'POST' ? { target: T, reason: 'wrong' } : undefined, {
          headers: { authorization },
        });
        assert.equal(r.status, 401, `${method} ${path}: ${r.text}`);
      }
    }
    assert.equal(target.frozen, undefined);
  });

  test('hotpatch status works with the read-only token; apply and freeze exit 1 with the 403 explained', async () => {
    const status = await hotpatch(['status', '--agent', agent.address, '--token-file', readFile_, '--json']);
    assert.equal(status.status, 0, status.stderr);
    assert.equal((status.json?.targets as { target: string }[])[0]!.target, T);

    const apply = await hotpatch(['apply', '--agent', agent.address, '--token-file', readFile_, '--target', T, '--patch', 'ro-good', '--json']);
    assert.equal(apply.status, 1, `${apply.stdout}\n${apply.stderr}`);
    assert.equal(apply.json?.code, 'POLICY_DENIED');
    assert.match(String(apply.json?.message), /refused POST \/v1\/apply with this token \(403 forbidden\): this token is read-only/);

    const freeze = await hotpatch(['freeze', '--agent', agent.address, '--token-file', readFile_, '--target', T, '--reason', 'x']);
    assert.equal(freeze.status, 1, `${freeze.stdout}\n${freeze.stderr}`);
    assert.match(`${freeze.stdout}${freeze.stderr}`, /403 forbidden.*read-only/);
    assert.equal(target.frozen, undefined);
    assert.deepEqual(agent.planner.plans(), []);
  });

  test('startAgent refuses a read-only token equal to the operator token, and a read-only token file others can read', async () => {
    const same = join(fx.dir, 'same.token');
    // The same token, only its trailing whitespace differs: tokens are compared trimmed.
    await writeToken(same, `${operator.token}  \n`);
    const worldReadable = join(fx.dir, 'world.token');
    await writeToken(worldReadable, randomBytes(24).toString('hex'), 0o644);
    const cases: [string, RegExp][] = [
      [same, /read-only token .* is the operator token .*: they must differ/],
      [worldReadable, /mode 644: it must be 0600/],
    ];
    for (const [file, message] of cases) {
      const dir = join(fx.dir, `state-${file.endsWith('same.token') ? 'same' : 'world'}`);
      const host = hostRuntime(dir);
      const started = await startAgent({
        stateDir: dir,
        runtime: host.runtime,
        http: { port: 0, tokenFile: operatorFile, readTokenFile: file },
        log: false,
      }).catch((e: unknown) => e);
      host.runtime.close();
      if (!(started instanceof Error)) {
        await (started as Agent).close();
        assert.fail(`startAgent took the read-only token file ${file}: it must refuse it with INVALID`);
      }
      assert.equal((started as Error & { code?: string }).code, 'INVALID', started.message);
      assert.match(started.message, message);
      // Refused before anything was claimed or written.
      await assert.rejects(access(join(dir, 'agent.lock')), { code: 'ENOENT' });
      await assert.rejects(access(join(dir, 'audit.log')), { code: 'ENOENT' });
    }
  });
});

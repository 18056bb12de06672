/*
 * Named tokens on the loopback HTTP endpoint: several bearer tokens, each with a name and a
 * role, so the audit record says which operator asked (`token: alice`, credential
 * `token:alice`), beside the original tokenFile / readTokenFile (named "operator" and
 * "read"). Every token follows the same file rules, tokens and names must be distinct, and a
 * request is compared with every token, with no early exit.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { access, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { startAgent, type Agent } from '../../src/agent/index.js';
import { matchToken, type AgentToken } from '../../src/agent/token.js';
import { buildReport, formatReport } from '../../src/observability/index.js';
import { T, call, endpointOf, hostRuntime, hotpatch, makeFixture, writeToken, type Endpoint, type Fixture } from './helpers.js';

interface Recorded {
  type: string;
  reason: string;
  detail: Record<string, unknown>;
}

async function requested(stateDir: string): Promise<Recorded[]> {
  const text = await readFile(join(stateDir, 'audit.log'), 'utf8');
  return text
    .trim()
    .split('\n')
    .map((l) => (JSON.parse(l) as { event: Recorded }).event)
    .filter((e) => e.type === 'Requested');
}

async function tokenFile(fx: Fixture, name: string, mode = 0o600): Promise<{ file: string; token: string }> {
  const token = randomBytes(24).toString('hex');
  const file = join(fx.dir, `${name}.token`);
  await writeToken(file, `${token}\n`, mode);
  return { file, token };
}

test('each named token is recorded by name in the Requested event and the report, and keeps to its role', { timeout: 60_000 }, async () => {
  const fx = await makeFixture('hotpatch-named-tokens-');
  const alice = await tokenFile(fx, 'alice');
  const grafana = await tokenFile(fx, 'grafana');
  const legacy = await tokenFile(fx, 'operator');
  const host = hostRuntime(fx.stateDir);
  const agent = await startAgent({
    stateDir: fx.stateDir,
    runtime: host.runtime,
    http: {
      port: 0,
      tokenFile: legacy.file,
      tokens: [
        { name: 'alice', file: alice.file, role: 'operate' },
        { name: 'grafana', file: grafana.file, role: 'read' },
      ],
    },
    log: false,
  });
  try {
    const as = (token: string): Endpoint => endpointOf(agent.address, token);
    const frozen = await call(as(alice.token), 'POST', '/v1/freeze', { target: T, reason: 'change freeze' }, { headers: { 'x-hotpatch-actor': 'alice@ops' } });
    assert.equal(frozen.status, 200, frozen.text);
    // The read token reads, and is refused every change before anything is recorded.
    assert.equal((await call(as(grafana.token), 'GET', '/v1/status')).status, 200);
    const refused = await call(as(grafana.token), 'POST', '/v1/unfreeze', { target: T });
    assert.equal(refused.status, 403, refused.text);
    assert.equal(refused.json.code, 'POLICY_DENIED');
    assert.equal((await call(as(`${alice.token}x`), 'GET', '/v1/status')).status, 401);
    // The legacy operator token through the CLI: recorded as before, now with its name.
    const cli = await hotpatch(['freeze', '--agent', agent.address, '--token-file', legacy.file, '--target', T, '--unfreeze', '--json']);
    assert.equal(cli.status, 0, `${cli.stdout}${cli.stderr}`);
    await agent.audit.flush();

    const records = await requested(fx.stateDir);
    assert.deepEqual(
      records.map((e) => [e.detail.action, e.detail.credential, e.detail.token]),
      [
        ['freeze', 'token:alice', 'alice'],
        ['unfreeze', 'operator-token', 'operator'],
      ],
    );
    assert.equal(records[0]!.reason, `freeze of ${T} requested by token:alice (alice@ops)`);
    const report = await buildReport(fx.stateDir);
    assert.deepEqual(
      report.operatorActions.map((o) => o.credential),
      ['token:alice', 'operator-token'],
    );
    assert.match(formatReport(report, 'md'), /\| freeze \| xps\.crypto\.hash\.sha256 \| token:alice \| alice@ops \|/);
    // No record holds any piece of any token.
    const log = await readFile(join(fx.stateDir, 'audit.log'), 'utf8');
    for (const t of [alice.token, grafana.token, legacy.token])
      for (let k = 0; k + 6 <= t.length; k++) assert.ok(!log.includes(t.slice(k, k + 6)), 'the audit log holds a piece of a token');
  } finally {
    await agent.close();
    await fx.close();
  }
});

test(
  'startAgent refuses duplicate tokens, duplicate or malformed names, unknown roles and fields, loose files and no token at all, before claiming anything',
  { timeout: 60_000 },
  async () => {
    const fx = await makeFixture('hotpatch-named-tokens-bad-');
    try {
      const alice = await tokenFile(fx, 'alice');
      const bob = await tokenFile(fx, 'bob');
      const loose = await tokenFile(fx, 'loose', 0o640);
      const aliceAgain = join(fx.dir, 'alice-again.token');
      await writeToken(aliceAgain, `  ${alice.token}  \n`);
      const cases: [string, Record<string, unknown>, RegExp][] = [
        [
          'the same token under two names',
          {
            tokens: [
              { name: 'alice', file: alice.file, role: 'operate' },
              { name: 'bob', file: aliceAgain, role: 'read' },
            ],
          },
          /token "bob" \(.*alice-again\.token\) is the token "alice" \(.*alice\.token\): they must differ/,
        ],
        [
          'a named token equal to tokenFile',
          { tokenFile: alice.file, tokens: [{ name: 'bob', file: aliceAgain, role: 'operate' }] },
          /token "bob" .* is the operator token/,
        ],
        [
          'two tokens named alike',
          {
            tokens: [
              { name: 'alice', file: alice.file, role: 'operate' },
              { name: 'alice', file: bob.file, role: 'read' },
            ],
          },
          /two tokens are named "alice"/,
        ],
        [
          'a name taken by tokenFile',
          { tokenFile: alice.file, tokens: [{ name: 'operator', file: bob.file, role: 'read' }] },
          /two tokens are named "operator"/,
        ],
        ['a malformed name', { tokens: [{ name: 'al ice', file: alice.file, role: 'operate' }] }, /http\.tokens\[0\]\.name must be/],
        ['an unknown role', { tokens: [{ name: 'alice', file: alice.file, role: 'admin' }] }, /http\.tokens\[0\]\.role must be "operate" or "read"/],
        [
          'an unknown field',
          { tokens: [{ name: 'alice', file: alice.file, role: 'read', scope: 'all' }] },
          /http\.tokens\[0\] has unknown field "scope" \(allowed: name, file, role\)/,
        ],
        ['a token file others can read', { tokens: [{ name: 'alice', file: loose.file, role: 'read' }] }, /mode 640: it must be 0600/],
        ['no token at all', { tokens: [] }, /at least one token/],
      ];
      for (const [what, http, message] of cases) {
        const dir = join(fx.dir, `state-${cases.findIndex((c) => c[0] === what)}`);
        const host = hostRuntime(dir);
        const started = await startAgent({ stateDir: dir, runtime: host.runtime, http: { port: 0, ...http }, log: false }).catch((e: unknown) => e);
        host.runtime.close();
        if (!(started instanceof Error)) {
          await (started as Agent).close();
          assert.fail(`startAgent took ${what}`);
        }
        assert.equal((started as Error & { code?: string }).code, 'INVALID', `${what}: ${started.message}`);
        assert.match(started.message, message, what);
        for (const t of [alice.token, bob.token]) assert.ok(!started.message.includes(t.slice(0, 6)), `${what}: the message holds a token`);
        await assert.rejects(access(join(dir, 'agent.lock')), { code: 'ENOENT' }, `${what}: nothing claimed`);
        await assert.rejects(access(join(dir, 'audit.log')), { code: 'ENOENT' }, `${what}: nothing written`);
      }
    } finally {
      await fx.close();
    }
  },
);

test('a presented token is compared with every token, whichever matches and whether any does', () => {
  const made = ['first', 'second', 'third', 'fourth'].map((name, i) => ({ name, token: `${name}-token-0123456789-${i}` }));
  for (const presented of [...made.map((m) => m.token), 'not-a-token-0123456789', undefined]) {
    const reads: string[] = [];
    const tokens: AgentToken[] = made.map(({ name, token }) => {
      const digest = createHash('sha256').update(token).digest();
      return {
        name,
        role: 'read',
        credential: `token:${name}`,
        file: `/x/${name}`,
        token,
        get digest() {
          reads.push(name);
          return digest;
        },
      };
    });
    const hit = matchToken(presented === undefined ? undefined : `Bearer ${presented}`, tokens);
    assert.equal(hit?.name, made.find((m) => m.token === presented)?.name, String(presented));
    assert.deepEqual(
      reads,
      made.map((m) => m.name),
      `every token compared for ${String(presented)}`,
    );
  }
});

/*
 * An agent joined by configuration signs its reports with `fleet.key` (its private key file,
 * key id = its agent id): what it writes, what `fleet status` shows of it, and the keys it
 * refuses before it claims anything.
 */
import assert from 'node:assert/strict';
import { chmod, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { startAgent, type AgentOptions } from '../../src/agent/index.js';
import { fleetStatus, openStore } from '../../src/distributed/index.js';
import { parseTrustStore } from '../../src/verification/index.js';
import { assertCode } from '../support/assertions.js';
import { CI_TRUST } from '../support/patches.js';
import { hostRuntime, makeFixture, until, type Fixture } from '../agent/helpers.js';
import { FLEET_AGENTS_TRUST_DOCUMENT, FLEET_TRUST_DOCUMENT, T, cli, testPrefix, writeAgentKeyFile } from './fleet-helpers.js';

/** The ci key signs patches (xps.*); the fleet's roles sign rollouts, states and (with `agents`) reports. */
async function writeTrust(f: Fixture, withAgents: boolean): Promise<string> {
  const base = withAgents ? FLEET_AGENTS_TRUST_DOCUMENT : FLEET_TRUST_DOCUMENT;
  const file = join(f.dir, withAgents ? 'agents-trust.json' : 'trust.json');
  await writeFile(file, JSON.stringify({ ...base, keys: { ...base.keys, ...CI_TRUST.keys }, rules: [{ targets: ['xps.*'], threshold: 1, keys: ['ci'] }] }));
  return file;
}

function options(f: Fixture, trustStore: string, fleet: Partial<NonNullable<AgentOptions['fleet']>>): AgentOptions {
  return {
    stateDir: f.stateDir,
    runtime: hostRuntime(f.stateDir).runtime,
    defaults: { repository: f.repoDir, trustStore },
    log: false,
    fleet: { store: `file:${join(f.dir, 'fleet-store')}`, ring: 0, agentId: 'host-a', leaseTtlMs: 2000, reportIntervalMs: 50, ...fleet },
  };
}

test('an agent started with fleet.key signs every report with it: fleet status, given the agents role, counts it as verified', async () => {
  const f = await makeFixture('hotpatch-agent-report-join-');
  const prefix = testPrefix('join-signed');
  try {
    const trustFile = await writeTrust(f, true);
    const agent = await startAgent(options(f, trustFile, { prefix, key: await writeAgentKeyFile(f.dir, 'host-a') }));
    const store = await openStore(`file:${join(f.dir, 'fleet-store')}`);
    try {
      const trust = parseTrustStore(FLEET_AGENTS_TRUST_DOCUMENT);
      await until(async () => (await fleetStatus(store, { prefix, trust })).agents.some((a) => a.signedBy === 'host-a' && a.targets[T] !== undefined));
      const stored = JSON.parse((await store.get(`${prefix}/agents/host-a`))!) as Record<string, unknown>;
      assert.deepEqual(Object.keys(stored), ['report']);
      const shown = await cli(['fleet', 'status', '--store', `file:${join(f.dir, 'fleet-store')}`, '--prefix', prefix, '--trust', trustFile]);
      assert.equal(shown.status, 0, shown.stderr);
      const agents = shown.json.agents as { agentId: string; verified: boolean; signedBy?: string; seq?: number }[];
      assert.deepEqual(
        agents.map((a) => [a.agentId, a.verified, a.signedBy, typeof a.seq]),
        [['host-a', true, 'host-a', 'number']],
      );
    } finally {
      await store.close();
      await agent.close();
    }
  } finally {
    await f.close();
  }
});

test("startAgent refuses, before it claims anything, a fleet key that is another agent's, readable by others, unreadable or missing when the trust store has an agents role", async () => {
  const f = await makeFixture('hotpatch-agent-report-keys-');
  try {
    const trustFile = await writeTrust(f, true);
    const own = await writeAgentKeyFile(f.dir, 'host-a');
    const open = join(f.dir, 'open.key');
    await writeFile(open, '');
    await chmod(open, 0o644);
    const refusals: [string, Partial<NonNullable<AgentOptions['fleet']>>, RegExp][] = [
      [
        "another agent's key",
        { key: await writeAgentKeyFile(f.dir, 'host-b') },
        /fleet\.key's private key is not the key host-a of the trust store's agents role/,
      ],
      ['a key file others can read', { key: open }, /mode 644 lets group or others read it/],
      ['a key file that is not there', { key: join(f.dir, 'missing.key') }, /fleet\.key .*missing\.key/],
      ['no key at all', {}, /fleet\.key is required: the trust store has an agents role/],
      ['an agent id the role does not list', { agentId: 'host-z', key: own }, /host-z has no key in the trust store's agents role/],
      ['an empty path', { key: '' }, /fleet\.key must be the path/],
    ];
    for (const [what, fleet, message] of refusals) await assert.rejects(startAgent(options(f, trustFile, fleet)), assertCode('INVALID', message), what);
    // Nothing was claimed or written: no lock, no socket, no journal, no audit log.
    assert.deepEqual(await readdir(f.stateDir), []);
    // Without the role, the key is optional (and its reports are read unchecked).
    const weak = await startAgent(options(f, await writeTrust(f, false), { prefix: testPrefix('join-weak') }));
    await weak.close();
  } finally {
    await f.close();
  }
});

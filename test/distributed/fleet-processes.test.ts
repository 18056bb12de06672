/*
 * The fleet as separate OS processes, as it runs in production: six service processes (each
 * its own runtime, agent, state directory and traffic) in three rings, joined by
 * configuration, each signing its reports with its own key (the trust store's agents role);
 * two `hotpatch fleet controller` processes; a three-member etcd cluster on loopback;
 * operators using the `hotpatch fleet` CLI with their own keys. The patches live in one
 * repository directory every host reads (the shared-path way of distributing them).
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fleetStatus, openStore, signAgentReport, storedAgentReportText, type AgentDocument, type KvStore } from '../../src/distributed/index.js';
import { parseTrustStore } from '../../src/verification/index.js';
import { FLEET_AGENTS_TRUST_DOCUMENT, KEYS, agentSigner, writeAgentKeyFile } from '../support/fleet-keys.js';
import { CLI_MAIN, HOST_TARGET, startControllerProcess, startHost, type Child } from '../support/fleet-processes.js';
import type { JsonLine } from '../support/json-lines.js';
import { CI_TRUST, publishPatch } from '../support/patches.js';
import { runNode, type NodeRun } from '../support/run-node.js';
import { waitFor, withDeadline } from '../support/wait.js';
import { startEtcdCluster, type EtcdCluster } from './etcd-cluster.js';

const PREFIX = '/xps/hotpatch/fleet';
const ABC = 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad';
const good = (tag: string): string => `import { createHash } from 'node:crypto';
// ${tag}
export const api = { digest: (s) => createHash('sha256').update(s).digest('hex') };
export function selfTest() { if (api.digest('abc') !== '${ABC}') throw new Error('KAT'); }
`;
/** Passes its self-test, then fails one call in five: the canary must catch it. */
const FLAKY = `import { createHash } from 'node:crypto';
let n = 0;
export const api = { digest: (s) => { if (++n % 5 === 0) throw new Error('flaky'); return createHash('sha256').update(s).digest('hex'); } };
`;
/** Canary flags of every rollout here: two short steps. */
const CANARY = ['--steps', '0.5,1', '--canary-interval', '100'];

interface World {
  dir: string;
  repo: string;
  trust: string;
  keys: string[];
  cluster: EtcdCluster;
  spec: string;
  hosts: Child[];
  controllers: Child[];
}

let w: World;

/** The hotpatch CLI, its JSON answer and exit status. */
function cli(args: readonly string[]): Promise<NodeRun> {
  return runNode([CLI_MAIN, ...args], { hangGuardMs: 180_000 });
}

function rollout(patch: string, soakMs: number, extra: readonly string[] = []): Promise<NodeRun> {
  return cli([
    'fleet',
    'rollout',
    '--store',
    w.spec,
    '--trust',
    w.trust,
    ...w.keys,
    '--repo',
    w.repo,
    '--patch',
    patch,
    '--rings',
    '3',
    '--soak',
    String(soakMs),
    ...CANARY,
    ...extra,
    '--watch',
    '--json',
  ]);
}

/** The ts of each fleet order a host recorded in its audit log, by rollout and action. */
async function orders(host: Child): Promise<{ rollout: string; action: string; ts: number }[]> {
  const text = await readFile(join(w.dir, host.name, 'audit.log'), 'utf8');
  return text
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { event?: JsonLine } & JsonLine)
    .map((r) => (r.event ?? r) as JsonLine)
    .filter((e) => e.type === 'Requested' && typeof (e.detail as Record<string, unknown>)?.rollout === 'string')
    .map((e) => {
      const d = e.detail as Record<string, unknown>;
      return { rollout: String(d.rollout), action: String(d.action), ts: Date.parse(String(e.ts)) };
    });
}

const ringOf = (h: Child): number => Number(h.name.slice('host-r'.length, 'host-r'.length + 1));
/** A host's last events, for failure messages. */
const recent = (h: Child): string =>
  h.lines
    .filter((l) => l.event === 'hotpatch')
    .slice(-12)
    .map((l) => `${String(l.type)} ${String(l.id)}: ${String(l.reason).slice(0, 160)}`)
    .join('\n');

/** The patch a host serves now, as `hotpatch status` on its agent's socket says. */
async function activeOf(h: Child): Promise<unknown> {
  const r = await cli(['status', '--agent', `unix:${join(w.dir, h.name, 'agent.sock')}`, '--json']);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  const targets = r.json?.targets as { target: string; active: { patchId: string | null } }[];
  return targets.find((t) => t.target === HOST_TARGET)?.active.patchId;
}

describe('a fleet of separate processes on a three-member etcd cluster', { concurrency: false }, () => {
  before(async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hotpatch-fleet-procs-'));
    const repo = join(dir, 'repo');
    await mkdir(repo);
    const trust = join(dir, 'trust.json');
    // One trust store: the ci key signs patches (xps.*), the fleet role signs rollouts, the controllers their states, each agent its reports.
    await writeFile(
      trust,
      JSON.stringify({
        ...FLEET_AGENTS_TRUST_DOCUMENT,
        keys: { ...FLEET_AGENTS_TRUST_DOCUMENT.keys, ...CI_TRUST.keys },
        rules: [{ targets: ['xps.*'], threshold: 1, keys: ['ci'] }],
      }),
    );
    const keyFile = async (k: { keyid: string; privateKey: { toPem(): string } }): Promise<string> => {
      const file = join(dir, `${k.keyid}.key`);
      await writeFile(file, k.privateKey.toPem(), { mode: 0o600 });
      return file;
    };
    const keys = ['--key', await keyFile(KEYS.alice), '--key', await keyFile(KEYS.bob)];
    const cluster = await startEtcdCluster({ members: 3 });
    const spec = `etcd://${cluster.endpoints.map((e) => e.slice('http://'.length)).join(',')}`;
    w = { dir, repo, trust, keys, cluster, spec, hosts: [], controllers: [] };
    const hostConfigs = [0, 0, 1, 1, 2, 2].map((ring, i) => ({ ring, agentId: `host-r${ring}-${i % 2}` }));
    w.hosts = await Promise.all(
      hostConfigs.map(async ({ ring, agentId }) => {
        const stateDir = join(dir, agentId);
        await mkdir(stateDir, { mode: 0o700 });
        const key = await writeAgentKeyFile(dir, agentId);
        return startHost({ stateDir, repository: repo, trustStore: trust, store: spec, ring, agentId, key, leaseTtlMs: 3000, reportIntervalMs: 100 });
      }),
    );
    w.controllers = [
      await startControllerProcess('ctl-a', ['--store', spec, '--id', 'ctl-a', '--key', await keyFile(KEYS.ctlA), '--trust', trust, '--lease-ttl', '2000']),
      await startControllerProcess('ctl-b', ['--store', spec, '--id', 'ctl-b', '--key', await keyFile(KEYS.ctlB), '--trust', trust, '--lease-ttl', '2000']),
    ];
    await Promise.race(w.controllers.map((c) => c.line((l) => l.event === 'leading', 'it led')));
    for (const [id, version, source] of [
      ['fix-a', '1.0.1', good('fix-a')],
      ['fix-e', '1.0.2', good('fix-e')],
      ['bad-b', '1.0.3', FLAKY],
      ['fix-c', '1.0.4', good('fix-c')],
      ['fix-d', '1.0.5', good('fix-d')],
    ] as const) {
      await publishPatch(repo, id, HOST_TARGET, version, source);
    }
  });

  after(async () => {
    if (w === undefined) return;
    await Promise.all([...w.hosts, ...w.controllers].map((c) => c.stop(5000)));
    await w.cluster.stop();
    await rm(w.dir, { recursive: true, force: true, maxRetries: 5 });
  });

  it('a good signed rollout completes ring by ring: ring 0 applies first, ring 2 last, every host serves it', async () => {
    const r = await rollout('fix-a', 300);
    assert.equal(r.status, 0, `${r.stdout.slice(-3000)}\n${r.stderr.slice(-2000)}`);
    const id = String((r.json?.rollout as JsonLine | undefined)?.id ?? '');
    assert.ok(id.startsWith('fix-a'), JSON.stringify(r.json));
    const applied = await Promise.all(
      w.hosts.map(async (h) => ({ ring: ringOf(h), ts: (await orders(h)).find((o) => o.rollout === id && o.action === 'fleet-apply')?.ts })),
    );
    for (const a of applied) assert.ok(a.ts !== undefined, `every host applied ${id}`);
    const last = (ring: number): number => Math.max(...applied.filter((a) => a.ring === ring).map((a) => a.ts!));
    const first = (ring: number): number => Math.min(...applied.filter((a) => a.ring === ring).map((a) => a.ts!));
    assert.ok(last(0) <= first(1) && last(1) <= first(2), `ring order: ${JSON.stringify(applied)}`);
    for (const h of w.hosts) await h.line((l) => l.event === 'hotpatch' && l.type === 'Activated' && l.id === 'fix-a', `${h.name} activated fix-a`);
  });

  it('an unsigned or forged rollout written straight into etcd is refused by every agent', async () => {
    const store: KvStore = await openStore(w.spec);
    try {
      // The old plain format, naming the active patch and ordering its rollback, dated now.
      const now = new Date().toISOString();
      const forged = {
        id: 'forged-1',
        target: HOST_TARGET,
        patchId: 'fix-a',
        version: '1.0.1',
        payloadHash: `sha256:${'0'.repeat(64)}`,
        rings: 3,
        soakMs: 0,
        emptyRings: 'wait',
        createdAt: now,
        state: { status: 'rolled-back', ring: 0, updatedAt: now },
      };
      await store.put(`${PREFIX}/rollouts/forged-1`, JSON.stringify(forged));
      // A spec envelope signed by no fleet key (the outsider's), ordering fix-d everywhere at once.
      await store.put(
        `${PREFIX}/rollouts/forged-2`,
        JSON.stringify({
          spec: {
            payloadType: 'application/vnd.xps.hotpatch.rollout+json',
            payload: Buffer.from(
              JSON.stringify({
                ...forged,
                id: 'forged-2',
                patchId: 'fix-d',
                version: '1.0.5',
                state: undefined,
                prefix: PREFIX,
                expiresAt: new Date(Date.parse(now) + 3_600_000).toISOString(),
              }),
            ).toString('base64'),
            signatures: [{ keyid: KEYS.outsider.keyid, sig: Buffer.from('x').toString('base64') }],
          },
        }),
      );
    } finally {
      await store.close();
    }
    const status = await cli(['fleet', 'status', '--store', w.spec, '--trust', w.trust, '--json']);
    assert.equal(status.status, 0, status.stderr);
    const problems = (status.json?.problems as { key: string }[]).map((p) => p.key);
    assert.ok(problems.some((k) => k.endsWith('forged-1')) && problems.some((k) => k.endsWith('forged-2')), JSON.stringify(status.json?.problems));
    // Every agent read both and said why it ignores them (the agents here log no JSON: their warnings go to stderr).
    for (const h of w.hosts) {
      await h.warned(/ignoring rollout at \/xps\/hotpatch\/fleet\/rollouts\/forged-1/, `${h.name} refused forged-1`);
      await h.warned(/ignoring rollout at \/xps\/hotpatch\/fleet\/rollouts\/forged-2: the rollout spec is signed by 0 of 2/, `${h.name} refused forged-2`);
    }
  });

  it("forged failure reports of a ring-0 host written straight into etcd (unsigned, or signed by the other ring-0 host's key) are refused by the controller: the rollout completes", async () => {
    const running = rollout('fix-e', 1500);
    const store: KvStore = await openStore(w.spec);
    const key = `${PREFIX}/agents/host-r0-0`;
    try {
      const trust = parseTrustStore(await readFile(w.trust));
      const r = await waitFor('fix-e to be running', async () =>
        (await fleetStatus(store, { trust })).rollouts.find((x) => x.patchId === 'fix-e' && x.state.status === 'running'),
      );
      const now = new Date().toISOString();
      const failed: AgentDocument = {
        agentId: 'host-r0-0',
        ring: 0,
        targets: {
          [HOST_TARGET]: { version: '1.0.2', patchId: 'fix-e', phase: 'failed', health: 'unhealthy', rollout: r.id, reason: 'forged', updatedAt: now },
        },
        startedAt: now,
      };
      const forgeries: [string, RegExp][] = [
        [JSON.stringify(failed), /the agent report is not signed/],
        [storedAgentReportText(signAgentReport(failed, 1_000_000, agentSigner('host-r0-1'))), /not signed by its own key host-r0-0/],
      ];
      for (const [text, refusal] of forgeries) {
        await store.put(key, text);
        // Only the leader reads the fleet: it says why it ignores the text.
        await withDeadline(
          Promise.any(
            w.controllers.map((c) =>
              c.line(
                (l) => l.event === 'error' && String(l.message).includes(`ignoring agent report at ${key}`) && refusal.test(String(l.message)),
                'it refused the forged report',
              ),
            ),
          ),
          60_000,
          `the leading controller to refuse ${refusal}`,
        );
      }
    } finally {
      await store.close();
    }
    const done = await running;
    assert.equal(done.status, 0, `${done.stdout.slice(-3000)}\n${done.stderr.slice(-2000)}`);
    for (const h of w.hosts) await h.line((l) => l.event === 'hotpatch' && l.type === 'Activated' && l.id === 'fix-e', `${h.name} activated fix-e`);
  });

  it('a faulty patch is halted in ring 0 and rolled back there; rings 1 and 2 never apply it', async () => {
    const r = await rollout('bad-b', 300);
    assert.equal(r.status, 1, `${r.stdout.slice(-3000)}\n${r.stderr.slice(-2000)}`);
    const id = String((r.json?.rollout as JsonLine | undefined)?.id ?? (r.json?.detail as JsonLine | undefined)?.rollout ?? '');
    for (const h of w.hosts) {
      const mine = (await orders(h)).filter((o) => o.rollout === id && o.action === 'fleet-apply');
      // A ring-0 host may not have started before its ring halted (the other one failed first).
      assert.ok(ringOf(h) === 0 ? mine.length <= 1 : mine.length === 0, `${h.name}: ${mine.length} applies of ${id}`);
      // The forged documents above were never acted on.
      assert.equal((await orders(h)).filter((o) => o.rollout.startsWith('forged-')).length, 0, `${h.name} acted on a forged rollout`);
    }
    const ring0 = await Promise.all(
      w.hosts.filter((x) => ringOf(x) === 0).map(async (h) => (await orders(h)).some((o) => o.rollout === id && o.action === 'fleet-apply')),
    );
    assert.ok(ring0.includes(true), 'ring 0 applied it');
    for (const h of w.hosts.filter((x) => ringOf(x) === 0 && x.lines.some((l) => l.event === 'hotpatch' && l.id === 'bad-b' && l.type === 'Staged'))) {
      await h.line((l) => l.event === 'hotpatch' && (l.type === 'RolledBack' || l.type === 'Aborted') && l.id === 'bad-b', `${h.name} rolled bad-b back`);
    }
    for (const h of w.hosts) assert.equal(await activeOf(h), 'fix-e', `${h.name} still serves fix-e`);
  });

  it('the active controller is SIGKILLed mid-rollout and the standby finishes it', async () => {
    const running = rollout('fix-c', 1500);
    const leader = await Promise.race(w.controllers.map((c) => c.line((l) => l.event === 'leading', 'it led').then(() => c)));
    await leader.line((l) => l.event === 'transition' && l.ring === 1 && String(l.rollout).startsWith('fix-c'), 'ring 1 of fix-c opened');
    await leader.kill();
    const standby = w.controllers.find((c) => c !== leader)!;
    await standby.line((l) => l.event === 'leading', 'the standby took over');
    const r = await running;
    assert.equal(r.status, 0, `${r.stdout.slice(-3000)}\n${r.stderr.slice(-2000)}`);
    await standby.line((l) => l.event === 'transition' && l.to === 'completed' && String(l.rollout).startsWith('fix-c'), 'the standby completed fix-c');
  });

  it('with one etcd member killed the next rollout still completes', async () => {
    const leader = (await w.cluster.leader()) ?? w.cluster.members[0]!;
    await leader.kill();
    const r = await rollout('fix-d', 300);
    assert.equal(r.status, 0, `${r.stdout.slice(-3000)}\n${r.stderr.slice(-2000)}`);
    for (const h of w.hosts) await h.line((l) => l.event === 'hotpatch' && l.type === 'Activated' && l.id === 'fix-d', `${h.name} activated fix-d`);
  });

  it('with two etcd members killed nothing can be ordered, and the CLI says why', async () => {
    const second = w.cluster.members.find((m) => m.running)!;
    await second.kill();
    const status = await cli(['fleet', 'status', '--store', w.spec, '--trust', w.trust, '--json']);
    assert.equal(status.status, 3, status.stdout + status.stderr);
    assert.equal(status.json?.code, 'IO');
    assert.match(String(status.json?.message), /quorum|unreachable|cannot reach|deadline/i);
    const r = await cli([
      'fleet',
      'rollout',
      '--store',
      w.spec,
      '--trust',
      w.trust,
      ...w.keys,
      '--repo',
      w.repo,
      '--patch',
      'fix-d',
      '--rings',
      '3',
      '--soak',
      '0',
      '--json',
    ]);
    assert.equal(r.status, 3, r.stdout + r.stderr);
    for (const h of w.hosts) assert.equal(await activeOf(h), 'fix-d', `${h.name} still serves fix-d: ${recent(h)}`);
  });
});

/*
 * Signed agent reports over the embedded store, with live members and a live controller: what
 * a store writer without an agent's key can and cannot make a fleet do by writing under
 * `<prefix>/agents/`. Members here record their orders and report at once (no runtime); each
 * signs its reports with its own key (test/support/fleet-keys.ts).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { HotPatchError } from '../../src/core/index.js';
import { generateKeyPair } from '../../src/crypto-agile/index.js';
import {
  EmbeddedStore,
  FleetMember,
  createRollout,
  fleetKeys,
  fleetStatus,
  getRollout,
  listAgents,
  readAgentReport,
  signAgentReport,
  storedAgentReportText,
  type AgentDocument,
  type KvStore,
  type RolloutDocument,
  type RolloutSigner,
  type RolloutSpec,
} from '../../src/distributed/index.js';
import type { TrustStore } from '../../src/verification/index.js';
import {
  FLEET_AGENTS_TRUST,
  FLEET_TRUST,
  GOOD_SOURCE,
  KEYS,
  T,
  agentSigner,
  patch,
  signerOf,
  startController,
  testPrefix,
  waitFor,
  type TestController,
} from './fleet-helpers.js';

let dir: string;
const LEASE_MS = 3000;
const HOUR = 3_600_000;
const open = (): Promise<KvStore> => EmbeddedStore.open(dir, { pollMs: 25 });
const GOOD = patch('agent-report-good-1', '1.0.1', GOOD_SOURCE);
const spec = (id: string, extra: Partial<RolloutSpec> = {}): RolloutSpec => ({
  id,
  target: T,
  patchId: GOOD.id,
  version: GOOD.version,
  payloadHash: GOOD.payloadHash,
  rings: 2,
  soakMs: 0,
  ...extra,
});

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hotpatch-agent-report-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface RecAgent {
  id: string;
  ring: number;
  member: FleetMember;
  /** Set to hold this agent's applies until `release()`. */
  hold: Promise<void> | undefined;
  release: () => void;
  /** What the host says about the patch it runs (a genuine, signed unhealthy report). */
  unhealthy: boolean;
}

interface Fleet {
  agents: RecAgent[];
  /** `<agent> <apply|rollback> <rollout>` in order. */
  orders: string[];
  close(): Promise<void>;
}

/** Members rec-0, rec-1, … in `rings`, each signing its reports with its own key. */
async function recordingFleet(prefix: string, rings: number[], trust: TrustStore): Promise<Fleet> {
  const orders: string[] = [];
  const agents = await Promise.all(
    rings.map(async (ring, i) => {
      const id = `rec-${i}`;
      let running: { version: string; patchId: string | null } = { version: '1.0.0', patchId: null };
      const agent: RecAgent = { id, ring, hold: undefined, release: () => {}, unhealthy: false, member: undefined as unknown as FleetMember };
      agent.member = new FleetMember({
        store: await open(),
        agentId: id,
        ring,
        prefix,
        trust,
        signer: agentSigner(id),
        leaseTtlMs: LEASE_MS,
        reportIntervalMs: 50,
        onError: () => {},
        apply: async (order: RolloutDocument) => {
          orders.push(`${id} apply ${order.id}`);
          if (agent.hold !== undefined) await agent.hold;
          running = { version: order.version, patchId: order.patchId };
          return { phase: 'promoted', ...running, health: 'healthy' };
        },
        rollback: async (order: RolloutDocument) => {
          orders.push(`${id} rollback ${order.id}`);
          running = { version: '1.0.0', patchId: null };
          return { phase: 'rolled-back', ...running };
        },
        report: () => [{ target: T, ...running, ...(agent.unhealthy ? { health: 'unhealthy', reason: 'errors above the limit' } : { health: 'healthy' }) }],
      });
      return agent;
    }),
  );
  await Promise.all(agents.map((a) => a.member.start()));
  return { agents, orders, close: () => Promise.all(agents.map((a) => a.member.stop())).then(() => {}) };
}

function holdApplies(agent: RecAgent): void {
  agent.hold = new Promise((resolve) => (agent.release = resolve));
}

/** A controller whose errors are kept, and how many of them are about `key`. */
async function controller(prefix: string, trust: TrustStore): Promise<TestController & { errorsAbout(key: string): HotPatchError[] }> {
  const errors: HotPatchError[] = [];
  const ctl = await startController(open, { controllerId: 'ctl-a', prefix, trust, leaseTtlMs: LEASE_MS, onError: (e) => errors.push(e as HotPatchError) });
  await ctl.controller.whenLeading();
  return Object.assign(ctl, { errorsAbout: (key: string) => errors.filter((e) => e.message.includes(`ignoring agent report at ${key}:`)) });
}

/** A report for `agentId` saying it runs GOOD (or failed it) on rollout `rollout`, dated now. */
function report(agentId: string, ring: number, rollout: string, phase: 'failed' | 'promoted', health: 'healthy' | 'unhealthy'): AgentDocument {
  const now = new Date().toISOString();
  return {
    agentId,
    ring,
    targets: { [T]: { version: GOOD.version, patchId: GOOD.id, phase, health, rollout, reason: 'forged', updatedAt: now } },
    startedAt: now,
  };
}

/** Texts a store writer could put at an agent's key, none signed by that agent's key. */
function forgeries(doc: AgentDocument, other: string): [string, string][] {
  const stranger: RolloutSigner = { keyid: 'stranger', privateKey: generateKeyPair('ed25519').privateKey };
  const signed = (signer: RolloutSigner): string => storedAgentReportText(signAgentReport(doc, 1_000_000, signer));
  return [
    ['plain JSON (the unsigned form)', JSON.stringify(doc)],
    [`signed by another agent's key (${other})`, signed(agentSigner(other))],
    [`signed by ${other}'s key under the agent's own key id`, signed({ keyid: doc.agentId, privateKey: agentSigner(other).privateKey })],
    ['signed by a key the trust store does not know', signed(stranger)],
    ['signed by an unknown key under the agent own key id', signed({ ...stranger, keyid: doc.agentId })],
    ["signed by an operator's key", signed(signerOf(KEYS.alice))],
  ];
}

/** Puts `text` at `key`, waits for the controller to refuse it, then runs a pass over what it holds. */
async function refused(ctl: Awaited<ReturnType<typeof controller>>, store: KvStore, key: string, what: string, text: string): Promise<void> {
  const before = ctl.errorsAbout(key).length;
  await store.put(key, text);
  await waitFor(`the controller to refuse ${what}`, () => ctl.errorsAbout(key).length > before);
  await ctl.controller.tick();
}

test('with an agents role, forged "failed" reports of a ring-0 agent written straight into the store do not halt a running rollout; a genuinely signed failure does', async () => {
  const prefix = testPrefix('agent-report-failed');
  const keys = fleetKeys(prefix);
  const fleet = await recordingFleet(prefix, [0, 0, 1], FLEET_AGENTS_TRUST);
  const ctl = await controller(prefix, FLEET_AGENTS_TRUST);
  const store = await open();
  const ops = { prefix, trust: FLEET_AGENTS_TRUST, signers: [signerOf(KEYS.alice), signerOf(KEYS.bob)] };
  try {
    // Ring 0 soaks for an hour: the rollout stays running there for the whole test.
    const r = await createRollout(store, spec('failed-1', { soakMs: HOUR }), ops);
    await waitFor('ring 0 to soak', async () => (await getRollout(store, r.id, ops)).state.healthySince);
    const key = `${keys.agents}rec-0`;
    for (const [what, text] of forgeries(report('rec-0', 0, r.id, 'failed', 'unhealthy'), 'rec-1')) {
      await refused(ctl, store, key, what, text);
      const now = await getRollout(store, r.id, ops);
      assert.deepEqual([now.state.status, now.state.ring], ['running', 0], `${what} halted the rollout: ${now.state.reason}`);
      assert.ok(now.state.healthySince !== undefined, `${what} cleared the soak clock`);
    }
    // An agent id no role lists, in ring 0, signing its own "failure" with its own (unknown) key.
    const ghost: RolloutSigner = { keyid: 'ghost-1', privateKey: generateKeyPair('ed25519').privateKey };
    const ghostKey = `${keys.agents}ghost-1`;
    await refused(ctl, store, ghostKey, 'a ghost agent', storedAgentReportText(signAgentReport(report('ghost-1', 0, r.id, 'failed', 'unhealthy'), 1, ghost)));
    assert.match(ctl.errorsAbout(ghostKey)[0]!.message, /ghost-1 has no key in the trust store's agents role/);
    assert.equal(ctl.errorsAbout(ghostKey)[0]!.code, 'UNTRUSTED_KEY');
    assert.equal((await getRollout(store, r.id, ops)).state.status, 'running');
    assert.deepEqual(
      fleet.orders.filter((o) => o.includes('rollback')),
      [],
      'nobody rolled back',
    );
    // The refusals say why, with the signature codes.
    assert.deepEqual(
      ctl.errorsAbout(key).map((e) => e.code),
      ['INVALID', 'UNTRUSTED_KEY', 'BAD_SIGNATURE', 'UNTRUSTED_KEY', 'BAD_SIGNATURE', 'UNTRUSTED_KEY'],
    );
    // `fleet status` with the trust store lists the forged texts as problems, the genuine reports as verified.
    const status = await fleetStatus(store, { prefix, trust: FLEET_AGENTS_TRUST });
    assert.deepEqual(status.problems.map((p) => p.key).sort(), [ghostKey, key]);
    assert.deepEqual(
      status.agents.map((a) => [a.agentId, a.signedBy]),
      [
        ['rec-1', 'rec-1'],
        ['rec-2', 'rec-2'],
      ],
    );

    // rec-1's host finds the patch unhealthy: its member signs that report, and the rollout halts.
    fleet.agents[1]!.unhealthy = true;
    await waitFor('the rollout to halt', async () => ['halted', 'rolling-back', 'rolled-back'].includes((await getRollout(store, r.id, ops)).state.status));
    const halted = await getRollout(store, r.id, ops);
    assert.match(halted.trail.find((t) => t.status === 'halted')?.reason ?? halted.state.reason ?? '', /agent rec-1 \(ring 0\) failed/);
    await waitFor('ring 0 to roll it back', () => fleet.orders.includes(`rec-1 rollback ${r.id}`));
  } finally {
    await ctl.close();
    await fleet.close();
    await store.close();
  }
});

test('a replayed older signed report of the same run is refused: it does not clear a soaking ring, even put back after a delete', async () => {
  const prefix = testPrefix('agent-report-replay');
  const keys = fleetKeys(prefix);
  const fleet = await recordingFleet(prefix, [0, 0, 1], FLEET_AGENTS_TRUST);
  const ctl = await controller(prefix, FLEET_AGENTS_TRUST);
  const store = await open();
  const ops = { prefix, trust: FLEET_AGENTS_TRUST, signers: [signerOf(KEYS.alice), signerOf(KEYS.bob)] };
  try {
    const key = `${keys.agents}rec-0`;
    // rec-0's genuine report before any rollout: idle on 1.0.0, signed, seq n.
    const old = await waitFor('rec-0 to report its target', async () => {
      const text = await store.get(key);
      return text !== undefined && readAgentReport(text).doc.targets[T] !== undefined ? text : undefined;
    });
    const r = await createRollout(store, spec('replay-1', { soakMs: HOUR }), ops);
    const soaking = await waitFor('ring 0 to soak', async () => (await getRollout(store, r.id, ops)).state.healthySince);
    const current = readAgentReport((await store.get(key))!, FLEET_AGENTS_TRUST);
    const first = readAgentReport(old, FLEET_AGENTS_TRUST);
    assert.equal(first.doc.startedAt, current.doc.startedAt, 'one run');
    assert.ok(current.seq! > first.seq!, `seq rises: ${first.seq} then ${current.seq}`);

    // Accepted, the old report would say rec-0 is not ready: the soak clock would be cleared.
    await refused(ctl, store, key, 'the replayed report', old);
    assert.match(ctl.errorsAbout(key)[0]!.message, /report \d+ is older than report \d+ already seen: a replay/);
    let now = await getRollout(store, r.id, ops);
    assert.deepEqual([now.state.status, now.state.ring, now.state.healthySince], ['running', 0, soaking]);
    // Deleted (rec-0 looks gone), then put back: still a replay.
    await store.delete(key);
    await refused(ctl, store, key, 'the replayed report after a delete', old);
    assert.equal(ctl.errorsAbout(key).length, 2);
    now = await getRollout(store, r.id, ops);
    assert.deepEqual([now.state.status, now.state.ring, now.state.healthySince], ['running', 0, soaking]);
  } finally {
    await ctl.close();
    await fleet.close();
    await store.close();
  }
});

test('forged "promoted, healthy" reports of an agent that has not applied yet do not open the next ring; its own report does', async () => {
  const prefix = testPrefix('agent-report-promoted');
  const keys = fleetKeys(prefix);
  const fleet = await recordingFleet(prefix, [0, 0, 1], FLEET_AGENTS_TRUST);
  const ctl = await controller(prefix, FLEET_AGENTS_TRUST);
  const store = await open();
  const ops = { prefix, trust: FLEET_AGENTS_TRUST, signers: [signerOf(KEYS.alice), signerOf(KEYS.bob)] };
  const slow = fleet.agents[1]!;
  holdApplies(slow);
  try {
    // No soak: the ring opens the moment every ring-0 report counts as promoted and healthy.
    const r = await createRollout(store, spec('promoted-1'), ops);
    await waitFor(
      'rec-1 to be applying',
      async () => (await listAgents(store, { prefix, trust: FLEET_AGENTS_TRUST })).agents.find((a) => a.agentId === 'rec-1')?.targets[T]?.phase === 'applying',
    );
    await waitFor(
      'rec-0 to have promoted',
      async () => (await listAgents(store, { prefix })).agents.find((a) => a.agentId === 'rec-0')?.targets[T]?.phase === 'promoted',
    );
    for (const [what, text] of forgeries(report('rec-1', 0, r.id, 'promoted', 'healthy'), 'rec-0')) {
      await refused(ctl, store, `${keys.agents}rec-1`, what, text);
      const now = await getRollout(store, r.id, ops);
      assert.deepEqual([now.state.status, now.state.ring], ['running', 0], `${what} opened ring 1`);
    }
    assert.ok(!fleet.orders.includes(`rec-2 apply ${r.id}`), 'ring 1 was never ordered');
    slow.release();
    await waitFor('the rollout to complete', async () => (await getRollout(store, r.id, ops)).state.status === 'completed');
    assert.ok(fleet.orders.includes(`rec-2 apply ${r.id}`), 'ring 1 applied once rec-1 itself reported promoted');
  } finally {
    slow.release();
    await ctl.close();
    await fleet.close();
    await store.close();
  }
});

test('without an agents role reports are taken as stored, signed or not (the weaker mode): a forged plain "failed" halts the rollout', async () => {
  const prefix = testPrefix('agent-report-weak');
  const keys = fleetKeys(prefix);
  // The same members, signing; the trust store has no agents role, so nothing is checked.
  const fleet = await recordingFleet(prefix, [0, 0, 1], FLEET_TRUST);
  const ctl = await controller(prefix, FLEET_TRUST);
  const store = await open();
  const ops = { prefix, trust: FLEET_TRUST, signers: [signerOf(KEYS.alice), signerOf(KEYS.bob)] };
  try {
    const r = await createRollout(store, spec('weak-1', { soakMs: HOUR }), ops);
    await waitFor('ring 0 to soak', async () => (await getRollout(store, r.id, ops)).state.healthySince);
    const listed = await listAgents(store, { prefix, trust: FLEET_TRUST });
    assert.deepEqual(
      listed.agents.map((a) => [a.agentId, a.signedBy, typeof a.seq]),
      [
        ['rec-0', undefined, 'number'],
        ['rec-1', undefined, 'number'],
        ['rec-2', undefined, 'number'],
      ],
      'signed reports are read, their signatures not checked',
    );
    await store.put(`${keys.agents}rec-0`, JSON.stringify(report('rec-0', 0, r.id, 'failed', 'unhealthy')));
    await waitFor('the forged failure to halt the rollout', async () =>
      ['halted', 'rolling-back', 'rolled-back'].includes((await getRollout(store, r.id, ops)).state.status),
    );
    assert.deepEqual(ctl.errorsAbout(`${keys.agents}rec-0`), []);
  } finally {
    await ctl.close();
    await fleet.close();
    await store.close();
  }
});

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  EmbeddedStore,
  FleetMember,
  abortRollout,
  createRollout,
  fleetKeys,
  fleetStatus,
  getRollout,
  parseRolloutSpec,
  parseRolloutStatePayload,
  pauseRollout,
  resumeRollout,
  type KvStore,
  type Lease,
  type RolloutSpec,
  type RolloutTransition,
} from '../../src/distributed/index.js';
import {
  FLEET_TRUST,
  GOOD_SOURCE,
  T,
  assertRingOrder,
  cli,
  ops,
  patch,
  startController,
  startFleet,
  testPrefix,
  waitFor,
  writeFleetFiles,
  type TestPatch,
} from './fleet-helpers.js';
import { isCode } from '../support/assertions.js';
import { until } from '../support/wait.js';

let dir: string;
/** The CLI's --trust and --key files (fleet-helpers' keys). */
let files: Awaited<ReturnType<typeof writeFleetFiles>>;
/** Leases renewed through a file (lock, write, fsync): generous, so a loaded machine does not drop agents. */
const LEASE_MS = 3000;
const open = (): Promise<KvStore> => EmbeddedStore.open(dir, { pollMs: 25 });
const GOOD = patch('fleet-good-1', '1.0.1', GOOD_SOURCE);
const GOOD2 = patch('fleet-good-2', '1.0.2', GOOD_SOURCE.replace('KAT abc', 'KAT abc (1.0.2)'));
const spec = (p: TestPatch, soakMs: number, extra: Partial<RolloutSpec> = {}): RolloutSpec => ({
  target: T,
  patchId: p.id,
  version: p.version,
  payloadHash: p.payloadHash,
  rings: 3,
  soakMs,
  ...extra,
});

let keysDir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hotpatch-fleet-embedded-'));
  keysDir = await mkdtemp(join(tmpdir(), 'hotpatch-fleet-keys-'));
  files = await writeFleetFiles(keysDir);
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
  await rm(keysDir, { recursive: true, force: true });
});

test('embedded store, one machine: a good patch reaches 9 agents ring by ring; the CLI shows the fleet', async () => {
  const prefix = testPrefix('embedded-good');
  const fleet = await startFleet({ openStore: open, prefix, rings: [3, 3, 3], patches: [GOOD], leaseTtlMs: LEASE_MS });
  const transitions: RolloutTransition[] = [];
  const a = await startController(open, { controllerId: 'ctl-a', prefix, leaseTtlMs: LEASE_MS }, transitions);
  const b = await startController(open, { controllerId: 'ctl-b', prefix, leaseTtlMs: LEASE_MS }, transitions);
  const store = await open();
  try {
    await Promise.race([a.controller.whenLeading(), b.controller.whenLeading()]);
    const rollout = await createRollout(
      store,
      { target: GOOD.verified.manifest.target, patchId: GOOD.id, version: GOOD.version, payloadHash: GOOD.payloadHash, rings: 3, soakMs: 200 },
      ops(prefix),
    );
    const done = await waitFor(
      'the rollout to complete',
      async () => {
        const r = await getRollout(store, rollout.id, { prefix, trust: FLEET_TRUST });
        assert.ok(['running', 'completed'].includes(r.state.status), `rollout ${r.state.status}: ${r.state.reason}`);
        return r.state.status === 'completed' ? r : undefined;
      },
      30_000,
    );
    assert.equal(done.state.ring, 3);
    await waitFor('every agent on 1.0.1', () => fleet.agents.every((x) => x.target.active.version === '1.0.1'));
    assertRingOrder(fleet.log, rollout.id, 3);
    await waitFor('the controller to record the completion', () => transitions.some((t) => t.rollout === rollout.id && t.to.status === 'completed'));
    // The rings were opened once each, in order, whichever controller led at the time.
    const rings = transitions.filter((t) => t.to.ring !== t.from.ring).map((t) => t.to.ring);
    assert.deepEqual(rings, [1, 2, 3]);
    assert.equal(
      fleet.agents.reduce((n, x) => n + x.traffic.failures, 0),
      0,
    );

    await waitFor('every agent to report 1.0.1', async () =>
      (await fleetStatus(store, { prefix, trust: FLEET_TRUST })).agents.every((x) => x.targets['xps.crypto.hash.sha256']?.version === '1.0.1'),
    );
    const status = await cli(['fleet', 'status', '--store', dir, '--prefix', prefix, '--trust', files.trust]);
    assert.equal(status.status, 0, status.stderr);
    assert.equal(status.json.verified, true);
    assert.deepEqual(status.json.problems, []);
    const agents = status.json.agents as { agentId: string; ring: number; targets: Record<string, { version: string; phase: string; health: string }> }[];
    assert.equal(agents.length, 9);
    assert.deepEqual([...new Set(agents.map((x) => x.ring))], [0, 1, 2]);
    assert.ok(agents.every((x) => x.targets['xps.crypto.hash.sha256']?.phase === 'promoted' && x.targets['xps.crypto.hash.sha256']?.health === 'healthy'));
    assert.equal((status.json.rollouts as { state: { status: string } }[])[0]?.state.status, 'completed');
    assert.ok(['ctl-a', 'ctl-b'].includes(status.json.controller as string));
  } finally {
    await store.close();
    await a.close();
    await b.close();
    await fleet.close();
  }
});

test('operator actions: pause holds the ring, resume continues, abort is refused once final; the CLI does the same', async () => {
  const prefix = testPrefix('embedded-ops');
  const store = await open();
  try {
    const spec = { target: 'xps.crypto.hash.sha256', patchId: GOOD.id, version: GOOD.version, payloadHash: GOOD.payloadHash, rings: 2, soakMs: 0 };
    const r = await createRollout(store, { ...spec, id: 'ops-1' }, ops(prefix));
    assert.equal(r.state.status, 'running');
    await assert.rejects(
      createRollout(store, { ...spec, id: 'ops-2' }, ops(prefix)),
      (e: unknown) => isCode('INVALID')(e) && /already has rollout ops-1/.test((e as Error).message),
    );
    assert.equal((await pauseRollout(store, 'ops-1', 'change freeze', ops(prefix))).state.status, 'paused');
    await assert.rejects(pauseRollout(store, 'ops-1', 'again', ops(prefix)), isCode('INVALID'));
    assert.equal((await resumeRollout(store, 'ops-1', undefined, ops(prefix))).state.status, 'running');
    const aborted = await abortRollout(store, 'ops-1', 'wrong build', ops(prefix));
    assert.equal(aborted.state.status, 'aborted');
    assert.equal(aborted.state.reason, 'wrong build');
    await assert.rejects(resumeRollout(store, 'ops-1', undefined, ops(prefix)), isCode('INVALID'));
    await assert.rejects(pauseRollout(store, 'nope', undefined, ops(prefix)), isCode('NOT_FOUND'));

    // The same through the command line.
    const created = await cli([
      'fleet',
      'rollout',
      '--store',
      dir,
      '--prefix',
      prefix,
      '--id',
      'ops-3',
      '--target',
      spec.target,
      '--patch',
      GOOD.id,
      '--version',
      GOOD.version,
      '--payload-hash',
      GOOD.payloadHash,
      '--rings',
      '3',
      '--soak',
      '100',
      ...files.signing,
    ]);
    assert.equal(created.status, 0, created.stderr);
    assert.equal((created.json.rollout as { rings: number }).rings, 3);
    assert.deepEqual((created.json.rollout as { signers: string[] }).signers, ['ops-alice', 'ops-bob']);
    // One operator is enough to stop (stopThreshold 1), not to go on (threshold 2).
    const alone = ['--trust', files.trust, '--key', files.alice];
    const paused = await cli(['fleet', 'pause', '--store', dir, '--prefix', prefix, '--rollout', 'ops-3', ...alone]);
    assert.equal(paused.json.ok, true, paused.stderr);
    assert.match(String((paused.json.rollout as { state: { actor: string } }).state.actor), /@/);
    const again = await cli(['fleet', 'pause', '--store', dir, '--prefix', prefix, '--rollout', 'ops-3', ...files.signing]);
    assert.equal(again.status, 1);
    assert.equal(again.json.code, 'INVALID');
    const resumedAlone = await cli(['fleet', 'resume', '--store', dir, '--prefix', prefix, '--rollout', 'ops-3', ...alone]);
    assert.equal(resumedAlone.status, 1);
    assert.equal(resumedAlone.json.code, 'THRESHOLD_NOT_MET');
    assert.equal((await getRollout(store, 'ops-3', { prefix, trust: FLEET_TRUST })).state.status, 'paused', 'nothing was written');
    assert.equal((await cli(['fleet', 'resume', '--store', dir, '--prefix', prefix, '--rollout', 'ops-3', ...files.signing])).json.ok, true);
    const abort = await cli(['fleet', 'abort', '--store', dir, '--prefix', prefix, '--rollout', 'ops-3', '--reason', 'operator said so', ...alone]);
    assert.equal(abort.status, 0);
    assert.equal((abort.json.rollout as { state: { status: string; reason: string } }).state.reason, 'operator said so');
    assert.equal((await cli(['fleet', 'abort', '--store', dir, '--prefix', prefix, '--rollout', 'missing', ...files.signing])).status, 3);
    // A rollout signed by one operator of the two needed is refused before anything is written.
    const underSigned = await cli([
      'fleet',
      'rollout',
      '--store',
      dir,
      '--prefix',
      prefix,
      '--id',
      'ops-4',
      '--target',
      spec.target,
      '--patch',
      GOOD.id,
      '--version',
      GOOD.version,
      '--payload-hash',
      GOOD.payloadHash,
      '--rings',
      '1',
      '--soak',
      '0',
      '--trust',
      files.trust,
      '--key',
      `ops-alice=${files.alice}`,
    ]);
    assert.equal(underSigned.status, 1);
    assert.equal(underSigned.json.code, 'THRESHOLD_NOT_MET');
    await assert.rejects(getRollout(store, 'ops-4', { prefix }), isCode('NOT_FOUND'));
    // Signed writes need the trust store and at least one key: usage errors.
    assert.equal((await cli(['fleet', 'pause', '--store', dir, '--prefix', prefix, '--rollout', 'ops-3', '--key', files.alice])).status, 2);
    assert.equal((await cli(['fleet', 'pause', '--store', dir, '--prefix', prefix, '--rollout', 'ops-3', '--trust', files.trust])).status, 2);
    assert.equal((await cli(['fleet', 'pause', '--store', dir, '--rollout', 'ops-3', ...files.signing, '--keyid', 'x'])).status, 2);
    assert.equal((await cli(['fleet', 'status', '--store', dir, '--key', files.alice])).status, 2);
    // Usage errors: exit 2, nothing opened.
    assert.equal((await cli(['fleet', 'rollout', '--store', dir, '--target', 'x'])).status, 2);
    assert.equal(
      (
        await cli([
          'fleet',
          'rollout',
          '--store',
          dir,
          '--target',
          'a.b',
          '--patch',
          'p',
          '--version',
          '1.0.0',
          '--payload-hash',
          'sha256:00',
          '--rings',
          'two',
          '--soak',
          '1',
        ])
      ).status,
      2,
    );
    assert.equal((await cli(['fleet', 'status', '--store', dir, '--rollout', 'x'])).status, 2);
    assert.equal((await cli(['fleet', 'explode', '--store', dir])).status, 2);
    assert.equal((await cli(['fleet'])).status, 2);
  } finally {
    await store.close();
  }
});

test('stored documents are parsed strictly: unknown fields, bad states, unsigned documents and mismatched keys are ignored', async () => {
  const prefix = testPrefix('embedded-parse');
  const keys = fleetKeys(prefix);
  const store = await open();
  try {
    const good = await createRollout(
      store,
      { id: 'p-1', target: 'xps.crypto.hash.sha256', patchId: GOOD.id, version: GOOD.version, payloadHash: GOOD.payloadHash, rings: 2, soakMs: 0 },
      ops(prefix),
    );
    const raw = (await store.get(`${keys.rollouts}p-1`))!;
    await store.put(`${keys.rollouts}p-3`, raw); // a document under another key
    await store.put(`${keys.rollouts}p-4`, JSON.stringify({ ...JSON.parse(raw), extra: 1 }));
    await store.put(`${keys.rollouts}p-5`, JSON.stringify({ ...JSON.parse(raw), state: { status: 'exploded', ring: 0 } }));
    await store.put(`${keys.rollouts}p-6`, '{not json');
    // The unsigned form rollouts had before they were signed.
    const { signers: _s, stateSigners: _ss, seq: _seq, trail: _t, ...unsigned } = { ...good, id: 'p-7' };
    await store.put(`${keys.rollouts}p-7`, JSON.stringify(unsigned));
    const status = await fleetStatus(store, { prefix, trust: FLEET_TRUST });
    assert.deepEqual(
      status.rollouts.map((r) => r.id),
      ['p-1'],
    );
    assert.deepEqual(
      status.problems.map((p) => p.key.slice(keys.rollouts.length)),
      ['p-3', 'p-4', 'p-5', 'p-6', 'p-7'],
    );
    const spec = JSON.parse(Buffer.from(JSON.parse(raw).spec.payload, 'base64').toString()) as Record<string, unknown>;
    assert.deepEqual(parseRolloutSpec(spec).id, 'p-1');
    assert.throws(() => parseRolloutSpec({ ...spec, rings: 0 }), isCode('INVALID'));
    assert.throws(() => parseRolloutSpec({ ...spec, payloadHash: 'md5' }), isCode('INVALID'));
    assert.throws(() => parseRolloutSpec({ ...spec, patchId: '../etc' }), isCode('INVALID'));
    const state = { rollout: 'p-1', spec: `sha256:${'0'.repeat(64)}`, seq: 1, status: 'running', ring: 3, by: 'ctl', updatedAt: good.createdAt, trail: [] };
    assert.throws(() => parseRolloutStatePayload(state, 2), /from 0 to 2/);
    assert.throws(() => fleetKeys('no-leading-slash'), isCode('INVALID'));
  } finally {
    await store.close();
  }
});

test('a live rollout: pause holds the next ring, resume continues, abort rolls back every agent that applied', async () => {
  const prefix = testPrefix('embedded-live-ops');
  const fleet = await startFleet({ openStore: open, prefix, rings: [2, 2, 2], patches: [GOOD], leaseTtlMs: LEASE_MS });
  const ctl = await startController(open, { controllerId: 'ctl', prefix, leaseTtlMs: LEASE_MS });
  const store = await open();
  try {
    await ctl.controller.whenLeading();
    const r = await createRollout(store, spec(GOOD, 300), ops(prefix));
    await waitFor('ring 1 to open', async () => (await getRollout(store, r.id, { prefix, trust: FLEET_TRUST })).state.ring === 1);
    await pauseRollout(store, r.id, 'hold on', ops(prefix));
    await waitFor('ring 1 to promote', () => fleet.ring(1).every((x) => x.target.active.version === '1.0.1'));
    // Ring 1 reported promoted and healthy: unpaused, one controller pass would start its 300 ms
    // soak and a pass after the soak would open ring 2. Both passes run here, a soak apart, so
    // only the pause can keep ring 2 closed.
    await waitFor('ring 1 to report ready', async () => {
      const ring1 = (await fleetStatus(store, { prefix, trust: FLEET_TRUST })).agents.filter((x) => x.ring === 1);
      return (
        ring1.length === 2 &&
        ring1.every(
          (x) =>
            x.targets[T]?.version === '1.0.1' &&
            (x.targets[T]?.phase === 'promoted' || x.targets[T]?.phase === 'activated') &&
            x.targets[T]?.health === 'healthy',
        )
      );
    });
    await ctl.controller.tick();
    const soakFrom = Date.now();
    await until(() => Date.now() - soakFrom > 300, 15_000, 'the 300 ms soak to pass');
    await ctl.controller.tick();
    const paused = await getRollout(store, r.id, { prefix, trust: FLEET_TRUST });
    assert.equal(paused.state.status, 'paused');
    assert.equal(paused.state.ring, 1, 'no ring opens while paused');
    assert.equal(fleet.log.filter((e) => e.rollout === r.id && e.ring === 2).length, 0);
    await resumeRollout(store, r.id, undefined, ops(prefix));
    await waitFor('ring 2 to open after the resume', async () => (await getRollout(store, r.id, { prefix, trust: FLEET_TRUST })).state.ring === 2);
    await abortRollout(store, r.id, 'bad idea', ops(prefix));
    await waitFor('every agent back on 1.0.0', () => fleet.agents.every((x) => x.target.active.version === '1.0.0'));
    await Promise.all(fleet.agents.map((x) => x.member.idle()));
    const applied = fleet.log
      .filter((e) => e.rollout === r.id && e.event === 'apply-end' && e.phase === 'promoted')
      .map((e) => e.agent)
      .sort();
    const rolledBack = fleet.log
      .filter((e) => e.rollout === r.id && e.event === 'rollback')
      .map((e) => e.agent)
      .sort();
    assert.ok(applied.length >= 4, 'rings 0 and 1 had promoted');
    assert.deepEqual(rolledBack, applied, 'every agent that promoted the patch rolled it back');
    await ctl.controller.tick(); // one more full pass over the rollouts
    assert.equal((await getRollout(store, r.id, { prefix, trust: FLEET_TRUST })).state.status, 'aborted', 'the controller leaves an aborted rollout alone');
    await waitFor('the reports to show rolled-back', async () =>
      (await fleetStatus(store, { prefix, trust: FLEET_TRUST })).agents.every((x) => x.targets[T]?.version === '1.0.0' && x.targets[T]?.phase !== 'promoted'),
    );
  } finally {
    await store.close();
    await ctl.close();
    await fleet.close();
  }
});

test('a ring with no alive agent holds the rollout by default; with emptyRings skip it is passed over', async () => {
  const prefix = testPrefix('embedded-empty-ring');
  const fleet = await startFleet({ openStore: open, prefix, rings: [2, 0, 2], patches: [GOOD, GOOD2], leaseTtlMs: LEASE_MS });
  const ctl = await startController(open, { controllerId: 'ctl', prefix, leaseTtlMs: LEASE_MS });
  const store = await open();
  try {
    await ctl.controller.whenLeading();
    const waiting = await createRollout(store, spec(GOOD, 50), ops(prefix));
    const held = await waitFor('the rollout to wait at ring 1', async () => {
      const r = await getRollout(store, waiting.id, { prefix, trust: FLEET_TRUST });
      return r.state.reason === 'waiting: ring 1 has no alive agent' ? r : undefined;
    });
    assert.equal(held.state.status, 'running');
    await ctl.controller.tick(); // one more full pass over the rollouts
    assert.equal((await getRollout(store, waiting.id, { prefix, trust: FLEET_TRUST })).state.ring, 1);
    assert.equal(fleet.log.filter((e) => e.rollout === waiting.id && e.ring === 2).length, 0, 'ring 2 never ordered past an empty ring');
    await abortRollout(store, waiting.id, 'replaced by a skipping rollout', ops(prefix));
    await waitFor('ring 0 back on 1.0.0', () => fleet.ring(0).every((x) => x.target.active.version === '1.0.0'));

    const skipping = await createRollout(store, spec(GOOD2, 50, { emptyRings: 'skip' }), ops(prefix));
    const done = await waitFor('the skipping rollout to complete', async () => {
      const r = await getRollout(store, skipping.id, { prefix, trust: FLEET_TRUST });
      return r.state.status === 'completed' ? r : undefined;
    });
    assert.equal(done.state.ring, 3);
    const skipped = ctl.transitions.find((t) => t.rollout === skipping.id && t.from.ring === 1);
    assert.match(skipped?.to.reason ?? '', /ring 1 has no alive agent: skipped/);
    for (const agent of fleet.agents) assert.equal(agent.target.active.version, '1.0.2');
  } finally {
    await store.close();
    await ctl.close();
    await fleet.close();
  }
});

test('a controller restarted mid-rollout resumes from the stored state', async () => {
  const prefix = testPrefix('embedded-restart');
  const fleet = await startFleet({ openStore: open, prefix, rings: [1, 1, 1], patches: [GOOD], leaseTtlMs: LEASE_MS });
  const first = await startController(open, { controllerId: 'ctl', prefix, leaseTtlMs: LEASE_MS });
  const store = await open();
  let second: Awaited<ReturnType<typeof startController>> | undefined;
  try {
    await first.controller.whenLeading();
    const r = await createRollout(store, spec(GOOD, 400), ops(prefix));
    await waitFor('ring 1 to soak', async () => {
      const s = (await getRollout(store, r.id, { prefix, trust: FLEET_TRUST })).state;
      return s.ring === 1 && s.healthySince !== undefined;
    });
    await first.close(); // resigns: nothing of its progress is kept in memory anywhere
    const stored = await getRollout(store, r.id, { prefix, trust: FLEET_TRUST });
    second = await startController(open, { controllerId: 'ctl', prefix, leaseTtlMs: LEASE_MS });
    await waitFor('the rollout to complete', async () => (await getRollout(store, r.id, { prefix, trust: FLEET_TRUST })).state.status === 'completed');
    const resumed = second.transitions.filter((t) => t.rollout === r.id);
    assert.ok(resumed.length > 0);
    assert.equal(resumed[0]!.from.ring, 1, 'the new controller started from ring 1, where the stored state was');
    assert.equal(resumed[0]!.from.healthySince, stored.state.healthySince, 'and kept the soak clock that was running');
    assert.deepEqual(
      fleet.log.filter((e) => e.rollout === r.id && e.event === 'apply-start').map((e) => e.ring),
      [0, 1, 2],
    );
  } finally {
    await store.close();
    await second?.close();
    await fleet.close();
  }
});

test('a leading controller reads the fleet from its own copy: its passes send no request to the store', async () => {
  const prefix = testPrefix('embedded-view');
  const fleet = await startFleet({ openStore: open, prefix, rings: [2, 2, 2], patches: [GOOD], leaseTtlMs: LEASE_MS });
  const ctl = await startController(open, { controllerId: 'ctl', prefix, leaseTtlMs: LEASE_MS });
  try {
    await ctl.controller.whenLeading();
    const before = ctl.store.requestCount;
    // Listing the agents and rollouts on every pass would be two reads each.
    for (let i = 0; i < 50; i += 1) await ctl.controller.tick();
    assert.equal(ctl.store.requestCount - before, 0);
  } finally {
    await ctl.close();
    await fleet.close();
  }
});

test('an agent whose lease is lost while it lives registers again', async () => {
  const prefix = testPrefix('embedded-relet');
  const base = await open();
  const leases: Lease[] = [];
  // The agent's own store, recording the leases it is granted.
  const store: KvStore = Object.create(base, {
    grantLease: {
      value: async (ttlMs: number) => {
        const lease = await base.grantLease(ttlMs);
        leases.push(lease);
        return lease;
      },
    },
  }) as KvStore;
  const member = new FleetMember({
    store,
    agentId: 'relet-1',
    ring: 0,
    prefix,
    trust: FLEET_TRUST,
    leaseTtlMs: 1000,
    apply: async () => ({ phase: 'promoted', version: '1.0.0' }),
    rollback: async () => ({ phase: 'rolled-back', version: '1.0.0' }),
    report: () => [{ target: T, version: '1.0.0', health: 'healthy' }],
  });
  const observer = await open();
  try {
    await member.start();
    const key = `${fleetKeys(prefix).agents}relet-1`;
    assert.ok((await observer.get(key)) !== undefined);
    await leases[0]!.revoke(); // as if the store expired it: the key goes
    await waitFor('the agent to register again', async () => leases.length === 2 && (await observer.get(key)) !== undefined, 15_000);
    assert.notEqual(leases[1]!.id, leases[0]!.id);
    await member.stop();
    await waitFor('stop to revoke the new lease (the key goes at once)', async () => (await observer.get(key)) === undefined, 2000);
  } finally {
    await member.stop();
    await observer.close();
    await base.close();
  }
});

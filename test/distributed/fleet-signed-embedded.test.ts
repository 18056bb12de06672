/*
 * Signed rollouts over the embedded store, with live members and controllers: what a store
 * writer without keys can and cannot make a fleet do (issue 12). Members here record what
 * they are told to do instead of patching, except in the adversarial test, which runs the
 * real runtime hooks on a healthy, approved patch.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { HotPatchError } from '../../src/core/index.js';
import {
  EmbeddedStore,
  FleetController,
  FleetMember,
  abortRollout,
  addRolloutSpecSignature,
  createRollout,
  fleetKeys,
  fleetStatus,
  getRollout,
  pauseRollout,
  readStoredRollout,
  resumeRollout,
  signRolloutSpec,
  signRolloutState,
  specDigest,
  storedRolloutText,
  submitRollout,
  type KvStore,
  type RolloutDocument,
  type RolloutSigner,
  type RolloutSpec,
} from '../../src/distributed/index.js';
import { parseTrustStore } from '../../src/verification/index.js';
import { isCode } from '../support/assertions.js';
import {
  FLEET_TRUST,
  FLEET_TRUST_DOCUMENT,
  GOOD_SOURCE,
  KEYS,
  OPERATORS,
  T,
  ops,
  patch,
  signerOf,
  startController,
  startFleet,
  testPrefix,
  waitFor,
  type TestController,
} from './fleet-helpers.js';

let dir: string;
const LEASE_MS = 3000;
const open = (): Promise<KvStore> => EmbeddedStore.open(dir, { pollMs: 25 });
const GOOD = patch('fleet-signed-good-1', '1.0.1', GOOD_SOURCE);
const alice = signerOf(KEYS.alice);
const outsider = signerOf(KEYS.outsider);
const ctlA = signerOf(KEYS.ctlA);
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
  dir = await mkdtemp(join(tmpdir(), 'hotpatch-fleet-signed-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Members that record their orders and report at once (no runtime). */
interface Recorder {
  members: FleetMember[];
  /** `<agent> <apply|rollback> <rollout>` in order. */
  orders: string[];
  errors: HotPatchError[];
  /** How many errors each agent reported about `key`. */
  reportedBy(key: string): Map<string, number>;
  close(): Promise<void>;
}

async function recordingMembers(prefix: string, rings: number[], name = 'rec'): Promise<Recorder> {
  const orders: string[] = [];
  const errors: { agent: string; error: HotPatchError }[] = [];
  const members = await Promise.all(
    rings.map(async (ring, i) => {
      const agentId = `${name}-${i}`;
      let running: { version: string; patchId: string | null } = { version: '1.0.0', patchId: null };
      const member = new FleetMember({
        store: await open(),
        agentId,
        ring,
        prefix,
        trust: FLEET_TRUST,
        leaseTtlMs: LEASE_MS,
        reportIntervalMs: 50,
        onError: (error) => errors.push({ agent: agentId, error: error as HotPatchError }),
        apply: async (order: RolloutDocument) => {
          orders.push(`${agentId} apply ${order.id}`);
          running = { version: order.version, patchId: order.patchId };
          return { phase: 'promoted', ...running, health: 'healthy' };
        },
        rollback: async (order: RolloutDocument) => {
          orders.push(`${agentId} rollback ${order.id}`);
          running = { version: '1.0.0', patchId: null };
          return { phase: 'rolled-back', ...running };
        },
        report: () => [{ target: T, ...running, health: 'healthy' }],
      });
      await member.start();
      return member;
    }),
  );
  return {
    members,
    orders,
    get errors() {
      return errors.map((e) => e.error);
    },
    reportedBy(key) {
      const counts = new Map<string, number>();
      for (const e of errors) if (e.error.message.includes(key)) counts.set(e.agent, (counts.get(e.agent) ?? 0) + 1);
      return counts;
    },
    async close() {
      await Promise.all(members.map((m) => m.stop()));
    },
  };
}

/** Writes `text` at `key` and waits until every member has refused it (each reports a text once). */
async function refusedByAll(store: KvStore, rec: Recorder, key: string, text: string): Promise<void> {
  const before = rec.reportedBy(key);
  await store.put(key, text);
  await waitFor(`every member to refuse the text at ${key}`, () => {
    const now = rec.reportedBy(key);
    return rec.members.every((m) => (now.get(m.agentId) ?? 0) > (before.get(m.agentId) ?? 0));
  });
}

test('a rollout signed by too few operators, by unknown keys or by a key not allowed for its target is refused at submit; written straight into the store, no member acts on it and the status lists it', async () => {
  const prefix = testPrefix('signed-refused');
  const keys = fleetKeys(prefix);
  const store = await open();
  const rec = await recordingMembers(prefix, [0, 0, 1]);
  const ctl = await startController(open, { controllerId: 'ctl-a', prefix, leaseTtlMs: LEASE_MS });
  const stranger: RolloutSigner = { keyid: 'stranger', privateKey: KEYS.outsider.privateKey };
  try {
    await ctl.controller.whenLeading();
    const cases: [string, RolloutSigner[], string][] = [
      ['one-operator', [alice], 'THRESHOLD_NOT_MET'],
      ['unsigned', [], 'THRESHOLD_NOT_MET'],
      ['unknown-key', [alice, stranger], 'UNTRUSTED_KEY'],
      ['no-role', [alice, outsider], 'UNTRUSTED_KEY'],
      ['controller-key', [alice, ctlA], 'UNTRUSTED_KEY'],
      ['other-target', [alice, signerOf(KEYS.carol)], 'UNTRUSTED_KEY'],
    ];
    for (const [id, signers, code] of cases) {
      await assert.rejects(createRollout(store, spec(id), ops(prefix, signers)), isCode(code), id);
    }
    assert.deepEqual(await store.list(keys.rollouts), [], 'nothing was written');
    // The same specs, signed as they are, written straight into the store.
    for (const [id, signers] of cases) {
      await refusedByAll(
        store,
        rec,
        `${keys.rollouts}${id}`,
        storedRolloutText(signRolloutSpec({ ...spec(id), createdAt: new Date().toISOString(), prefix }, signers)),
      );
    }
    await ctl.controller.tick();
    assert.deepEqual(rec.orders, [], 'no member was told to do anything');
    assert.deepEqual(
      ctl.transitions.map((t) => t.rollout),
      [],
      'the controller wrote nothing',
    );
    const status = await fleetStatus(store, { prefix, trust: FLEET_TRUST });
    assert.deepEqual(status.rollouts, []);
    assert.deepEqual(status.problems.map((p) => p.key.slice(keys.rollouts.length)).sort(), cases.map(([id]) => id).sort());
    for (const [id, , code] of cases) {
      assert.match(
        status.problems.find((p) => p.key.endsWith(id))!.error,
        code === 'THRESHOLD_NOT_MET' ? /signed by \d of 2 required fleet key/ : /not a fleet key/,
      );
    }
    // Without a trust store the status shows what is stored, counting no signer.
    const unverified = await fleetStatus(store, { prefix });
    assert.equal(unverified.rollouts.length, cases.length);
    assert.ok(unverified.rollouts.every((r) => r.signers.length === 0));
  } finally {
    await ctl.close();
    await rec.close();
    await store.close();
  }
});

test('operators sign a rollout offline one after the other, then submit it: ring 0 applies it; a spec dated in the future or not an envelope is refused', async () => {
  const prefix = testPrefix('signed-offline');
  const store = await open();
  const rec = await recordingMembers(prefix, [0, 1]);
  try {
    const createdAt = new Date().toISOString();
    const byAlice = signRolloutSpec({ ...spec('offline-1'), createdAt, prefix }, [alice]);
    await assert.rejects(submitRollout(store, byAlice, { prefix, trust: FLEET_TRUST }), isCode('THRESHOLD_NOT_MET'));
    const both = addRolloutSpecSignature(byAlice, signerOf(KEYS.bob));
    const doc = await submitRollout(store, both, { prefix, trust: FLEET_TRUST });
    assert.deepEqual(doc.signers, ['ops-alice', 'ops-bob']);
    await waitFor('ring 0 to apply it', () => rec.orders.includes(`rec-0 apply ${doc.id}`));
    assert.ok(!rec.orders.includes(`rec-1 apply ${doc.id}`), 'ring 1 waits for a controller');
    const future = signRolloutSpec(
      { ...spec('offline-2', { target: 'xps.other.target' }), createdAt: new Date(Date.now() + 3_600_000).toISOString(), prefix },
      OPERATORS,
    );
    await assert.rejects(submitRollout(store, future, { prefix, trust: FLEET_TRUST }), isCode('INVALID', /in the future/));
    await assert.rejects(
      submitRollout(store, JSON.parse(JSON.stringify(both)) as typeof both, { prefix, trust: FLEET_TRUST }),
      isCode('INVALID', /must be an Envelope/),
    );
    await abortRollout(store, doc.id, 'done', ops(prefix, [alice]));
    await waitFor('ring 0 to roll it back', () => rec.orders.includes(`rec-0 rollback ${doc.id}`));
  } finally {
    await rec.close();
    await store.close();
  }
});

test('adversarial: forged states of a healthy, completed rollout (rolled-back or aborted, dated now; unsigned, signed by keys of no role, or a controller key aborting) roll back no member; an operator-signed abort does', async () => {
  const prefix = testPrefix('signed-forged');
  const keys = fleetKeys(prefix);
  const fleet = await startFleet({ openStore: open, prefix, rings: [2, 2], patches: [GOOD], leaseTtlMs: LEASE_MS });
  const ctl = await startController(open, { controllerId: 'ctl-a', prefix, leaseTtlMs: LEASE_MS });
  const store = await open();
  const errorsAbout = (key: string): number => fleet.errors.filter((e) => e instanceof Error && e.message.includes(key)).length;
  try {
    await ctl.controller.whenLeading();
    const r = await createRollout(store, spec('forged-1'), ops(prefix));
    await waitFor('the rollout to complete', async () => (await getRollout(store, r.id, ops(prefix))).state.status === 'completed');
    await waitFor('every agent on 1.0.1', () => fleet.agents.every((a) => a.target.active.version === '1.0.1'));
    const key = `${keys.rollouts}${r.id}`;
    const genuine = (await store.get(key))!;
    const done = await getRollout(store, r.id, ops(prefix));
    // The controller signed every state it wrote: seq + 1 each, the earlier ones in the trail.
    assert.deepEqual(done.stateSigners, { role: 'controller', keyids: ['ctl-a'] });
    assert.equal(done.seq, ctl.transitions.filter((t) => t.rollout === r.id).length);
    assert.deepEqual(
      done.trail.map((t) => t.seq),
      Array.from({ length: done.seq }, (_, i) => i),
    );
    assert.deepEqual(
      done.trail.map((t) => [t.status, t.ring, t.by]),
      [['running', 0, 'operator'], ...done.trail.slice(1).map((t) => [t.status, t.ring, 'ctl-a'])],
    );

    const now = new Date().toISOString();
    const { spec: genuineSpec } = readStoredRollout(genuine);
    const state = (status: 'rolled-back' | 'aborted', by: string, signers: RolloutSigner[], seq = done.seq + 100) =>
      signRolloutState({ ...done, seq: seq - 1 }, specDigest(genuineSpec), { status, ring: 0, by, updatedAt: now, reason: 'forged' }, signers);
    const forgedSpec = signRolloutSpec({ ...spec(r.id), createdAt: now, prefix }, [outsider]);
    const forgeries: [string, string][] = [
      // The form rollouts had before they were signed.
      [
        'plain JSON',
        JSON.stringify({ ...spec(r.id), emptyRings: 'wait', createdAt: now, state: { status: 'rolled-back', ring: 0, by: 'operator', updatedAt: now } }),
      ],
      ['a spec and state signed by a key of no role', storedRolloutText(forgedSpec, state('aborted', 'operator', [outsider]))],
      ['an unsigned rolled-back state', storedRolloutText(genuineSpec, state('rolled-back', 'ctl-a', []))],
      ['a rolled-back state signed by a key of no role', storedRolloutText(genuineSpec, state('rolled-back', 'ctl-a', [outsider]))],
      ['an aborted state signed by a controller', storedRolloutText(genuineSpec, state('aborted', 'ctl-a', [ctlA]))],
      ['an aborted state signed by a controller as "operator"', storedRolloutText(genuineSpec, state('aborted', 'operator', [ctlA]))],
      [
        'an aborted state signed by one operator for another spec',
        storedRolloutText(
          genuineSpec,
          signRolloutState({ ...done, seq: done.seq + 100 }, `sha256:${'0'.repeat(64)}`, { status: 'aborted', ring: 0, by: 'operator', updatedAt: now }, [
            alice,
          ]),
        ),
      ],
    ];
    for (const [what, text] of forgeries) {
      const before = errorsAbout(key);
      await store.put(key, text);
      await waitFor(`every agent to refuse ${what}`, () => errorsAbout(key) >= before + fleet.agents.length);
    }
    await ctl.controller.tick();
    await Promise.all(fleet.agents.map((a) => a.member.idle()));
    assert.deepEqual(
      fleet.log.filter((e) => e.event === 'rollback'),
      [],
      'no member rolled back',
    );
    for (const a of fleet.agents) assert.equal(a.target.active.version, '1.0.1', a.id);
    assert.equal(
      fleet.agents.reduce((n, a) => n + a.traffic.failures, 0),
      0,
    );
    assert.ok(!ctl.transitions.some((t) => t.rollout === r.id && t.to.status !== 'running' && t.to.status !== 'completed'), 'the controller acted on none');

    // One operator's signed abort (stopThreshold 1), written over the last forgery: every agent rolls back.
    const aborted = await abortRollout(store, r.id, 'a real abort', ops(prefix, [alice]));
    assert.equal(aborted.state.status, 'aborted');
    assert.deepEqual(aborted.stateSigners, { role: 'operator', keyids: ['ops-alice'] });
    await waitFor('every agent back on 1.0.0', () => fleet.agents.every((a) => a.target.active.version === '1.0.0'));
    assert.deepEqual(
      fleet.log
        .filter((e) => e.event === 'rollback')
        .map((e) => e.agent)
        .sort(),
      fleet.agents.map((a) => a.id).sort(),
    );
  } finally {
    await store.close();
    await ctl.close();
    await fleet.close();
  }
});

test('replay: an older genuinely signed state put back is ignored by every member and the controller that saw a later one, which writes the newest state again (a higher seq)', async () => {
  const prefix = testPrefix('signed-replay');
  const keys = fleetKeys(prefix);
  const store = await open();
  const rec = await recordingMembers(prefix, [0, 1]);
  const ctl = await startController(open, { controllerId: 'ctl-b', prefix, leaseTtlMs: LEASE_MS });
  const texts: string[] = [];
  const stopWatch = await store.watch(keys.rollouts, (e) => {
    if (e.type === 'put') texts.push(e.value!);
  });
  try {
    await ctl.controller.whenLeading();
    const r = await createRollout(store, spec('replay-1'), ops(prefix));
    const key = `${keys.rollouts}${r.id}`;
    await waitFor('the rollout to complete', async () => (await getRollout(store, r.id, ops(prefix))).state.status === 'completed');
    const last = (await store.get(key))!;
    await waitFor('the watch to bring every state written', () => texts.at(-1) === last);
    const applied = [...rec.orders];
    assert.deepEqual(applied.sort(), [`rec-0 apply ${r.id}`, `rec-1 apply ${r.id}`]);
    const transitions = ctl.transitions.length;
    let highest = getSeq(last);
    // The spec alone (seq 0: running at ring 0), then the state that opened ring 1.
    const older = [texts[0]!, texts.find((t) => getSeq(t) === 1)!];
    for (const text of older) {
      await refusedByAll(store, rec, key, text);
      assert.ok(rec.errors.some((e) => /a replay/.test(e.message)));
      // The controller heals the store: the newest state again, signed at the next seq.
      await waitFor('the controller to write the newest state again', async () => getSeq((await store.get(key))!) === highest + 1);
      highest += 1;
      const healed = await getRollout(store, r.id, ops(prefix));
      assert.equal(healed.state.status, 'completed');
      assert.deepEqual(healed.stateSigners, { role: 'controller', keyids: ['ctl-b'] });
      assert.deepEqual(
        healed.trail.map((t) => t.seq),
        Array.from({ length: healed.seq }, (_, i) => i),
      );
    }
    await ctl.controller.tick();
    assert.ok(
      ctl.transitions.slice(transitions).every((t) => t.to.status === 'completed'),
      'the controller did not drive the replayed state',
    );
    assert.deepEqual(rec.orders, applied, 'no member did anything more');
  } finally {
    await stopWatch();
    await ctl.close();
    await rec.close();
    await store.close();
  }
});

function getSeq(text: string): number {
  try {
    return readStoredRollout(text).state === undefined
      ? 0
      : (JSON.parse(new TextDecoder().decode(readStoredRollout(text).state!.payload)) as { seq: number }).seq;
  } catch {
    return -1;
  }
}

test('a controller whose key is not one of the trust store’s controllers, or not the key it claims, is refused at construction; so is a member without a fleet role', async () => {
  const store = await open();
  try {
    const build = (signer: RolloutSigner, controllerId = 'ctl-x') => new FleetController({ store, controllerId, trust: FLEET_TRUST, signer });
    assert.throws(() => build(outsider), isCode('INVALID', /not one of the trust store's controllers \(ctl-a, ctl-b\)/));
    assert.throws(() => build(alice), isCode('INVALID', /not one of the trust store's controllers/));
    assert.throws(() => build({ keyid: 'ctl-a', privateKey: KEYS.ctlB.privateKey }), isCode('INVALID', /not the key ctl-a of the trust store/));
    assert.throws(() => build(ctlA, 'operator'), isCode('INVALID', /cannot be "operator"/));
    const { controllers: _c, ...noControllers } = FLEET_TRUST_DOCUMENT;
    assert.throws(
      () => new FleetController({ store, controllerId: 'ctl-a', trust: parseTrustStore(noControllers), signer: ctlA }),
      isCode('INVALID', /controllers \(none\)/),
    );
    assert.ok(build(ctlA) instanceof FleetController);
    const { fleet: _f, ...noFleet } = FLEET_TRUST_DOCUMENT;
    const member = (trust: unknown) =>
      new FleetMember({
        store,
        agentId: 'm-1',
        ring: 0,
        trust: trust as typeof FLEET_TRUST,
        apply: async () => ({ phase: 'promoted', version: '1' }),
        rollback: async () => ({ phase: 'rolled-back', version: '1' }),
      });
    assert.throws(() => member(parseTrustStore(noFleet)), isCode('INVALID', /fleet role/));
    assert.throws(() => member(undefined), isCode('INVALID', /fleet role/));
  } finally {
    await store.close();
  }
});

test('a standby controller with its own key takes over a rollout and signs what it writes with that key', async () => {
  const prefix = testPrefix('signed-standby');
  const rec = await recordingMembers(prefix, [0, 1, 2]);
  const first: TestController = await startController(open, { controllerId: 'ctl-a', prefix, leaseTtlMs: LEASE_MS });
  const store = await open();
  let second: TestController | undefined;
  try {
    await first.controller.whenLeading();
    const r = await createRollout(store, spec('standby-1', { rings: 3, soakMs: 60_000 }), ops(prefix));
    await waitFor('ring 0 to soak', async () => (await getRollout(store, r.id, ops(prefix))).state.healthySince !== undefined);
    assert.deepEqual((await getRollout(store, r.id, ops(prefix))).stateSigners.keyids, ['ctl-a']);
    await first.close();
    second = await startController(open, { controllerId: 'ctl-b', prefix, leaseTtlMs: LEASE_MS });
    await second.controller.whenLeading();
    // A resume by both operators after a pause by one: the soak starts over, and ctl-b drives it.
    await pauseRollout(store, r.id, 'shorter soak please', ops(prefix, [alice]));
    await resumeRollout(store, r.id, undefined, ops(prefix));
    await waitFor('ctl-b to write the next state', async () => (await getRollout(store, r.id, ops(prefix))).stateSigners.keyids[0] === 'ctl-b');
    const now = await getRollout(store, r.id, ops(prefix));
    assert.equal(now.state.by, 'ctl-b');
    assert.deepEqual(
      now.trail.slice(-2).map((t) => [t.status, t.by]),
      [
        ['paused', 'operator'],
        ['running', 'operator'],
      ],
    );
    await abortRollout(store, r.id, 'done', ops(prefix, [alice]));
  } finally {
    await second?.close();
    await first.close();
    await rec.close();
    await store.close();
  }
});

test('replay mid-rollout: the controller writes its newest state back over the replayed one (seq above every seq used) and the rollout completes', async () => {
  const prefix = testPrefix('signed-heal');
  const keys = fleetKeys(prefix);
  const store = await open();
  const ring0 = await recordingMembers(prefix, [0]);
  const ctl = await startController(open, { controllerId: 'ctl-a', prefix, leaseTtlMs: LEASE_MS });
  let ring1: Recorder | undefined;
  try {
    await ctl.controller.whenLeading();
    const r = await createRollout(store, spec('heal-1'), ops(prefix));
    const key = `${keys.rollouts}${r.id}`;
    const first = (await store.get(key))!;
    // Ring 1 has nobody yet: the rollout waits there.
    await waitFor('ring 1 to open and wait', async () => {
      const doc = await getRollout(store, r.id, ops(prefix));
      return doc.state.ring === 1 && doc.state.reason?.startsWith('waiting') === true;
    });
    const highest = getSeq((await store.get(key))!);
    await refusedByAll(store, ring0, key, first);
    await waitFor('the store to hold a state above every seq used', async () => getSeq((await store.get(key))!) === highest + 1);
    const healed = await getRollout(store, r.id, ops(prefix));
    assert.equal(healed.state.status, 'running');
    assert.equal(healed.state.ring, 1);
    assert.deepEqual(healed.stateSigners, { role: 'controller', keyids: ['ctl-a'] });
    assert.deepEqual(healed.trail.at(-1)?.seq, highest);
    ring1 = await recordingMembers(prefix, [1], 'late');
    await waitFor('the rollout to complete', async () => (await getRollout(store, r.id, ops(prefix))).state.status === 'completed');
    const done = await getRollout(store, r.id, ops(prefix));
    assert.ok(done.seq > highest + 1);
    assert.deepEqual(
      done.trail.map((t) => t.seq),
      Array.from({ length: done.seq }, (_, i) => i),
      'no seq used twice',
    );
    assert.deepEqual(ring0.orders, [`rec-0 apply ${r.id}`]);
    assert.deepEqual(ring1.orders, [`late-0 apply ${r.id}`]);
  } finally {
    await ring1?.close();
    await ctl.close();
    await ring0.close();
    await store.close();
  }
});

test('a saved spec put back after its expiry is never started by a new agent (reported once as EXPIRED); its abort still rolls back', async () => {
  const prefix = testPrefix('signed-expired');
  const keys = fleetKeys(prefix);
  const store = await open();
  let rec: Recorder | undefined;
  try {
    const createdAt = new Date(Date.now() - 5000).toISOString();
    const saved = storedRolloutText(signRolloutSpec({ ...spec('expired-1'), createdAt, prefix, expiresInMs: 1000 }, OPERATORS));
    // submitRollout refuses an expired spec; a store writer puts it back directly.
    await assert.rejects(
      submitRollout(store, signRolloutSpec({ ...spec('expired-2'), createdAt, prefix, expiresInMs: 1000 }, OPERATORS), { prefix, trust: FLEET_TRUST }),
      isCode('EXPIRED', /expired at/),
    );
    const key = `${keys.rollouts}expired-1`;
    await store.put(key, saved);
    rec = await recordingMembers(prefix, [0]);
    await waitFor('the member to report the expired spec', () => rec!.errors.some((e) => e.code === 'EXPIRED'));
    await rec.members[0]!.idle();
    assert.match(rec.errors.find((e) => e.code === 'EXPIRED')!.message, /not applying rollout expired-1: its spec expired at /);
    assert.deepEqual(rec.orders, []);
    // An abort of it is still honoured (nothing to roll back here: the member reports nothing more).
    const aborted = await abortRollout(store, 'expired-1', 'stop', ops(prefix, [alice]));
    assert.equal(aborted.state.status, 'aborted');
    await rec.members[0]!.idle();
    assert.equal(rec.errors.filter((e) => e.code === 'EXPIRED').length, 1, 'reported once');
    assert.deepEqual(rec.orders, []);
  } finally {
    await rec?.close();
    await store.close();
  }
});

test('a rollout copied under another fleet prefix is refused there by members, getRollout and fleetStatus', async () => {
  const prefixA = testPrefix('signed-prefix-a');
  const prefixB = testPrefix('signed-prefix-b');
  const store = await open();
  const rec = await recordingMembers(prefixB, [0]);
  try {
    const r = await createRollout(store, spec('copied-1'), ops(prefixA));
    assert.equal(r.prefix, prefixA);
    const text = (await store.get(`${fleetKeys(prefixA).rollouts}${r.id}`))!;
    const keyB = `${fleetKeys(prefixB).rollouts}${r.id}`;
    await refusedByAll(store, rec, keyB, text);
    assert.match(rec.errors.at(-1)!.message, /signed for the fleet at .*signed-prefix-a.*, not .*signed-prefix-b.*: a copy from another fleet/);
    await assert.rejects(getRollout(store, r.id, ops(prefixB)), isCode('INVALID', /a copy from another fleet/));
    const status = await fleetStatus(store, { prefix: prefixB, trust: FLEET_TRUST });
    assert.deepEqual(status.rollouts, []);
    assert.equal(status.problems.length, 1);
    assert.match(status.problems[0]!.error, /a copy from another fleet/);
    assert.deepEqual(rec.orders, []);
  } finally {
    await rec.close();
    await store.close();
  }
});

test('a controller opens no new ring of an expired rollout: it leaves it running where it is and says so once', async () => {
  const prefix = testPrefix('signed-expiring');
  const store = await open();
  const rec = await recordingMembers(prefix, [0, 1]);
  const errors: HotPatchError[] = [];
  // The controller's clock is two days ahead: the rollout (24 h by default) has expired for it.
  const ctl = await startController(open, {
    controllerId: 'ctl-a',
    prefix,
    leaseTtlMs: LEASE_MS,
    now: () => Date.now() + 48 * 3_600_000,
    onError: (e) => errors.push(e as HotPatchError),
  });
  try {
    await ctl.controller.whenLeading();
    const r = await createRollout(store, spec('expiring-1'), ops(prefix));
    await waitFor('ring 0 to apply it', () => rec.orders.includes(`rec-0 apply ${r.id}`));
    await waitFor('the controller to report the expiry', () => errors.some((e) => e.code === 'EXPIRED'));
    for (let i = 0; i < 3; i++) await ctl.controller.tick();
    assert.equal(errors.filter((e) => e.code === 'EXPIRED').length, 1, 'reported once');
    assert.match(errors.find((e) => e.code === 'EXPIRED')!.message, new RegExp(`rollout ${r.id} expired at .*: not opening ring 1`));
    const doc = await getRollout(store, r.id, ops(prefix));
    assert.equal(doc.state.status, 'running');
    assert.equal(doc.state.ring, 0);
    assert.ok(!ctl.transitions.some((t) => t.to.ring > 0 || t.to.status !== 'running'), 'no ring opened, nothing halted');
    assert.deepEqual(rec.orders, [`rec-0 apply ${r.id}`]);
  } finally {
    await ctl.close();
    await rec.close();
    await store.close();
  }
});

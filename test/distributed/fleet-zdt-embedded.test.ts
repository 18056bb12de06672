/*
 * Canary options carried by a fleet rollout (`zdt`), over the embedded store: what the
 * writers (createRollout, operator actions, the controller, the CLI) store, the strict
 * reader takes back; every agent applies with them; the fleet's health rule keeps its own
 * default.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  EmbeddedStore,
  abortRollout,
  createRollout,
  fleetKeys,
  fleetStatus,
  getRollout,
  listRollouts,
  ROLLOUT_SPEC_PAYLOAD_TYPE,
  pauseRollout,
  plannerFleetHooks,
  resumeRollout,
  verifyRolloutDocument,
  type KvStore,
  type RolloutSpec,
} from '../../src/distributed/index.js';
import { Planner } from '../../src/orchestration/index.js';
import { world } from '../zero-downtime/fixtures.js';
import {
  FLEET_TRUST,
  KEYS,
  GOOD_SOURCE,
  T,
  cli,
  ops,
  patch,
  sha256hex,
  startController,
  startFleet,
  testPrefix,
  waitFor,
  writeFleetFiles,
  type DigestApi,
  type TestPatch,
} from './fleet-helpers.js';
import { isCode } from '../support/assertions.js';
import { signEnvelope, signerOf as testSigner } from '../support/patches.js';

/** The signed spec payload of a stored rollout text. */
const specPayload = (raw: string): Record<string, unknown> =>
  JSON.parse(Buffer.from((JSON.parse(raw) as { spec: { payload: string } }).spec.payload, 'base64').toString()) as Record<string, unknown>;

let dir: string;
const LEASE_MS = 3000;
const open = (): Promise<KvStore> => EmbeddedStore.open(dir, { pollMs: 25 });
const GOOD = patch('fleet-zdt-good-1', '1.0.1', GOOD_SOURCE);
const spec = (p: TestPatch, extra: Partial<RolloutSpec> = {}): RolloutSpec => ({
  target: T,
  patchId: p.id,
  version: p.version,
  payloadHash: p.payloadHash,
  rings: 2,
  soakMs: 0,
  ...extra,
});
/** The judge's options with values other than their defaults, given unsorted. */
const ZDT = {
  steps: [0.25, 1],
  minCalls: 100,
  confidence: 0.995,
  warmupCalls: 0,
  maxLatencyShift: 0.5,
  probationWatch: false,
  canaryCallTimeoutMs: 800,
  maxErrorExcess: 0.001,
};
const SORTED_ZDT = {
  canaryCallTimeoutMs: 800,
  confidence: 0.995,
  maxErrorExcess: 0.001,
  maxLatencyShift: 0.5,
  minCalls: 100,
  probationWatch: false,
  steps: [0.25, 1],
  warmupCalls: 0,
};

let keysDir: string;
/** The CLI's --trust and --key arguments. */
let signing: string[];
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hotpatch-fleet-zdt-'));
  keysDir = await mkdtemp(join(tmpdir(), 'hotpatch-fleet-zdt-keys-'));
  signing = (await writeFleetFiles(keysDir)).signing;
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
  await rm(keysDir, { recursive: true, force: true });
});

test('a rollout stores its canary options; every reader parses back what the writers wrote, and operator actions keep them', async () => {
  const prefix = testPrefix('zdt-doc');
  const keys = fleetKeys(prefix);
  const store = await open();
  try {
    const created = await createRollout(store, spec(GOOD, { id: 'zdt-1', zdt: ZDT }), ops(prefix));
    assert.deepEqual(created.zdt, SORTED_ZDT);
    const raw = await store.get(`${keys.rollouts}zdt-1`);
    assert.ok(raw !== undefined);
    assert.deepEqual(specPayload(raw).zdt, SORTED_ZDT, 'signed and stored as normalised');
    assert.deepEqual(verifyRolloutDocument(raw, FLEET_TRUST), created, 'the strict reader takes what createRollout wrote');
    assert.deepEqual(await getRollout(store, 'zdt-1', { prefix, trust: FLEET_TRUST }), created);
    const status = await fleetStatus(store, { prefix, trust: FLEET_TRUST });
    assert.deepEqual(status.problems, []);
    assert.deepEqual(status.rollouts[0]?.zdt, SORTED_ZDT);

    assert.deepEqual((await pauseRollout(store, 'zdt-1', 'hold', ops(prefix))).zdt, SORTED_ZDT);
    assert.deepEqual((await resumeRollout(store, 'zdt-1', undefined, ops(prefix))).zdt, SORTED_ZDT);
    assert.deepEqual((await abortRollout(store, 'zdt-1', 'done', ops(prefix))).zdt, SORTED_ZDT);
    assert.deepEqual((await getRollout(store, 'zdt-1', { prefix, trust: FLEET_TRUST })).zdt, SORTED_ZDT);

    // A rollout without canary options has no zdt field at all.
    const plain = await createRollout(store, spec(GOOD, { id: 'zdt-2' }), ops(prefix));
    assert.equal('zdt' in plain, false);
    assert.equal('zdt' in specPayload((await store.get(`${keys.rollouts}zdt-2`))!), false);
    await abortRollout(store, 'zdt-2', 'done', ops(prefix));
  } finally {
    await store.close();
  }
});

test("canary options of a rollout are checked like a plan's: a bad one is refused with INVALID and nothing is stored", async () => {
  const prefix = testPrefix('zdt-refused');
  const keys = fleetKeys(prefix);
  const store = await open();
  try {
    const refused: [Record<string, unknown>, RegExp][] = [
      [{ confidence: 2 }, /rollout\.zdt: confidence must be a number in \(0, 1\)/],
      [{ maxLatencyShift: 0.3, maxLatencyRatio: 2 }, /not both/],
      [{ probationMs: 2 ** 31 }, /probationMs must be at most 2147483647 ms/],
      [{ minCalls: 0.5 }, /minCalls must be an integer/],
      [{ probationWatch: 'false' }, /rollout\.zdt\.probationWatch must be a boolean/],
      [{ random: 0.4 }, /non-persistable field "random"/],
      [{ colour: 'red' }, /unknown or non-persistable field "colour"/],
    ];
    for (const [zdt, message] of refused) {
      await assert.rejects(createRollout(store, spec(GOOD, { zdt: zdt as RolloutSpec['zdt'] }), ops(prefix)), isCode('INVALID', message), JSON.stringify(zdt));
    }
    await assert.rejects(
      createRollout(store, spec(GOOD, { zdt: [] as unknown as RolloutSpec['zdt'] }), ops(prefix)),
      isCode('INVALID', /rollout\.zdt must be a JSON object/),
    );
    assert.deepEqual(await store.list(keys.rollouts), [], 'nothing was stored');

    // A document written by someone else with a bad zdt is listed as a problem, never acted on.
    const good = await createRollout(store, spec(GOOD, { id: 'zdt-ok', zdt: { minCalls: 10 } }), ops(prefix));
    // Even signed by both operators: the spec's zdt is checked as strictly as createRollout checks it.
    const bad = { ...specPayload((await store.get(`${keys.rollouts}zdt-ok`))!), id: 'zdt-bad', zdt: { minCalls: -1 } };
    const envelope = signEnvelope(ROLLOUT_SPEC_PAYLOAD_TYPE, new TextEncoder().encode(JSON.stringify(bad)), [
      testSigner(KEYS.alice.keyid, KEYS.alice.privateKey),
      testSigner(KEYS.bob.keyid, KEYS.bob.privateKey),
    ]);
    await store.put(`${keys.rollouts}zdt-bad`, JSON.stringify({ spec: JSON.parse(envelope) }));
    assert.equal(good.id, 'zdt-ok');
    const listed = await listRollouts(store, { prefix, trust: FLEET_TRUST });
    assert.deepEqual(
      listed.rollouts.map((r) => r.id),
      ['zdt-ok'],
    );
    assert.deepEqual(
      listed.problems.map((p) => p.key.slice(keys.rollouts.length)),
      ['zdt-bad'],
    );
    assert.match(listed.problems[0]!.error, /minCalls/);
    await abortRollout(store, 'zdt-ok', 'done', ops(prefix));
  } finally {
    await store.close();
  }
});

test('a live rollout with canary options: the controller keeps them through every ring, and each agent applies with them over its own defaults', async () => {
  const prefix = testPrefix('zdt-live');
  const fleet = await startFleet({ openStore: open, prefix, rings: [2, 2], patches: [GOOD], leaseTtlMs: LEASE_MS });
  const ctl = await startController(open, { controllerId: 'ctl', prefix, leaseTtlMs: LEASE_MS });
  const store = await open();
  try {
    await ctl.controller.whenLeading();
    // The agents' own canary runs [0.5, 1]; the rollout asks for [0.2, 1] (and keeps the test fast).
    const zdt = { steps: [0.2, 1], minCalls: 0, minCallsPerStep: 5, maxLatencyShift: 999, confidence: 0.995, probationWatch: false };
    const r = await createRollout(store, spec(GOOD, { zdt }), ops(prefix));
    const done = await waitFor(
      'the rollout to complete',
      async () => {
        const now = await getRollout(store, r.id, { prefix, trust: FLEET_TRUST });
        assert.ok(['running', 'completed'].includes(now.state.status), `rollout ${now.state.status}: ${now.state.reason}`);
        return now.state.status === 'completed' ? now : undefined;
      },
      30_000,
    );
    assert.deepEqual(done.zdt, r.zdt, "the controller's writes kept the canary options");
    // Its compare-and-swap can land before the controller hears back: wait for its record of the completion.
    await waitFor('the controller to record the completion', () => ctl.transitions.some((t) => t.rollout === r.id && t.to.status === 'completed'));
    assert.ok(ctl.transitions.filter((t) => t.rollout === r.id).length >= 2, 'the controller wrote the document');
    for (const agent of fleet.agents) {
      assert.equal(agent.target.active.version, '1.0.1', agent.id);
      const ratios = agent.world.events.filter((e) => e.type === 'CanaryStep' && e.id === GOOD.id).map((e) => e.detail?.ratio);
      assert.ok(ratios.length > 0, `${agent.id} ran a canary`);
      assert.ok(
        ratios.every((x) => x === 0.2 || x === 1),
        `${agent.id} used the rollout's steps: ${ratios.join(', ')}`,
      );
      assert.ok(ratios.includes(0.2), `${agent.id}: ${ratios.join(', ')}`);
      const of = agent.world.events.find((e) => e.type === 'CanaryStep' && e.id === GOOD.id)?.detail?.of;
      assert.equal(of, 2);
    }
    assert.equal(
      fleet.agents.reduce((n, x) => n + x.traffic.failures, 0),
      0,
    );
  } finally {
    await store.close();
    await ctl.close();
    await fleet.close();
  }
});

test("hotpatch fleet rollout: the canary flags become the rollout's zdt and status shows them; a bad flag exits 2 and writes nothing", async () => {
  const prefix = testPrefix('zdt-cli');
  const store = await open();
  try {
    const base = [
      'fleet',
      'rollout',
      '--store',
      dir,
      '--prefix',
      prefix,
      '--target',
      T,
      '--patch',
      GOOD.id,
      '--version',
      GOOD.version,
      '--payload-hash',
      GOOD.payloadHash,
      '--rings',
      '2',
      '--soak',
      '0',
      ...signing,
    ];
    const bad = await cli([...base, '--id', 'cli-bad', '--confidence', '2']);
    assert.equal(bad.status, 2, bad.stderr);
    assert.equal(bad.json.code, 'INVALID');
    assert.match(String(bad.json.message), /^--confidence: confidence must be a number in \(0, 1\)/);
    const word = await cli([...base, '--id', 'cli-bad', '--min-calls', 'many']);
    assert.equal(word.status, 2);
    assert.match(String(word.json.message), /^--min-calls must be a number/);
    assert.deepEqual((await listRollouts(store, { prefix, trust: FLEET_TRUST })).rollouts, [], 'nothing was written');

    const created = await cli([
      ...base,
      '--id',
      'cli-zdt',
      '--steps',
      '0.1,0.5',
      '--confidence',
      '0.995',
      '--min-calls',
      '250',
      '--warmup-calls',
      '0',
      '--max-latency-shift',
      '0.4',
      '--call-timeout',
      '900',
      '--probation',
      '30000',
      '--no-probation-watch',
      '--retry-on-baseline',
    ]);
    assert.equal(created.status, 0, created.stderr);
    const expected = {
      canaryCallTimeoutMs: 900,
      confidence: 0.995,
      maxLatencyShift: 0.4,
      minCalls: 250,
      probationMs: 30_000,
      probationWatch: false,
      retryOnBaseline: true,
      steps: [0.1, 0.5],
      warmupCalls: 0,
    };
    assert.deepEqual((created.json.rollout as { zdt: unknown }).zdt, expected);
    assert.match(String(created.json.message), /canary canaryCallTimeoutMs=900 confidence=0\.995 .*steps=0\.1,0\.5/);
    assert.deepEqual((await getRollout(store, 'cli-zdt', { prefix, trust: FLEET_TRUST })).zdt, expected);
    const status = await cli(['fleet', 'status', '--store', dir, '--prefix', prefix, '--trust', signing[1]!]);
    assert.equal(status.status, 0);
    assert.deepEqual((status.json.rollouts as { id: string; zdt?: unknown }[]).find((x) => x.id === 'cli-zdt')?.zdt, expected);
    assert.deepEqual(status.json.problems, []);
    const plain = await cli(['fleet', 'abort', '--store', dir, '--prefix', prefix, '--rollout', 'cli-zdt', ...signing]);
    assert.equal(plain.status, 0);
    assert.deepEqual((plain.json.rollout as { zdt: unknown }).zdt, expected);
  } finally {
    await store.close();
  }
});

test("the fleet hooks' health keeps its own 0.01 error-rate default whatever the canary's maxErrorRate; its own maxErrorRate option sets it", async () => {
  const w = await world();
  const planner = new Planner({ runtime: w.runtime, stateDir: null });
  try {
    let n = 0;
    // One call in 20 throws: 5 % errors.
    const target = w.runtime.target<DigestApi>(T, {
      version: '1.0.0',
      impl: {
        digest: (s) => {
          if (++n % 20 === 0) throw new Error('flaky');
          return sha256hex(s);
        },
      },
    });
    const ceilingOff = plannerFleetHooks(planner, { zdt: { maxErrorRate: 1 } });
    const defaults = plannerFleetHooks(planner);
    const lenient = plannerFleetHooks(planner, { maxErrorRate: 0.1, zdt: { maxErrorRate: 0.001 } });
    let failed = 0;
    for (let i = 0; i < 200; i++) {
      try {
        target.api.digest(`m${i}`);
      } catch {
        failed += 1;
      }
    }
    assert.equal(failed, 10);
    const [off] = ceilingOff.report();
    assert.equal(off?.health, 'unhealthy', 'the canary ceiling of 1 (off) does not turn the health rule off');
    assert.match(off?.reason ?? '', /failed 10 of 200 calls \(5\.0% > 1\.0%\)/);
    assert.equal(defaults.report()[0]?.health, 'unhealthy');
    assert.equal(lenient.report()[0]?.health, 'healthy', "the hooks' own maxErrorRate decides");
    assert.throws(() => plannerFleetHooks(planner, { maxErrorRate: 2 }), isCode('INVALID'));
    assert.throws(() => plannerFleetHooks(planner, { zdt: { confidence: 2 } }), isCode('INVALID', /^zdt: confidence/));
  } finally {
    planner.close();
    await w.close();
  }
});

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  EmbeddedStore,
  FleetMember,
  fleetKeys,
  fleetStatus,
  parseAgentDocument,
  type FleetMemberOptions,
  type KvStore,
  type Lease,
} from '../../src/distributed/index.js';
import { AgentRegistration } from '../../src/distributed/agent-registration.js';
import { assertCode } from '../support/assertions.js';
import { FLEET_TRUST } from '../support/fleet-keys.js';
import { T, testPrefix } from './fleet-helpers.js';

let dir: string;
let seq = 0;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hotpatch-registration-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** An embedded store that records the values put under each key, and can hold its puts. */
async function recordingStore(): Promise<{ base: EmbeddedStore; store: KvStore; puts: string[]; hold(): () => void }> {
  const base = await EmbeddedStore.open(join(dir, `s${++seq}`), { pollMs: 10 });
  const puts: string[] = [];
  let gate: Promise<void> | undefined;
  const store = Object.create(base, {
    put: {
      value: async (key: string, value: string, options?: { lease?: Lease }) => {
        puts.push(value);
        await gate;
        return base.put(key, value, options);
      },
    },
  }) as KvStore;
  const hold = (): (() => void) => {
    let release!: () => void;
    gate = new Promise<void>((resolve) => (release = resolve));
    return release;
  };
  return { base, store, puts, hold };
}

const registrationOf = (store: KvStore, errors: unknown[] = []): AgentRegistration =>
  new AgentRegistration(store, { key: '/r/agents/a-1', agentId: 'a-1', ring: 0, ttlMs: 60_000, onError: (e) => errors.push(e) });

test('changes made in one turn are written once, together', async () => {
  const { base, store, puts } = await recordingStore();
  const registration = registrationOf(store);
  try {
    await registration.register();
    puts.length = 0;
    // What an apply that answers at once does: the phase, then the outcome, in one turn.
    registration.setTarget(T, { version: '1.0.0', phase: 'applying', rollout: 'r-1' });
    void registration.flush();
    registration.setTarget(T, { version: '1.0.1', phase: 'promoted', health: 'healthy' });
    await registration.flush();
    assert.equal(puts.length, 1);
    const stored = parseAgentDocument((await base.get(registration.key))!);
    assert.equal(stored.targets[T]?.phase, 'promoted');
    assert.equal(stored.targets[T]?.version, '1.0.1');
  } finally {
    registration.leave()?.release();
    await base.close();
  }
});

test('a change made while a write is in flight is written after it: the store ends with the latest state', async () => {
  const { base, store, puts, hold } = await recordingStore();
  const registration = registrationOf(store);
  try {
    await registration.register();
    puts.length = 0;
    const release = hold();
    registration.setTarget(T, { version: '1.0.0', phase: 'applying', rollout: 'r-1' });
    const flushing = registration.flush();
    // Held after the first put started: the change below comes while it is in flight.
    while (puts.length === 0) await new Promise((resolve) => setImmediate(resolve));
    registration.setTarget(T, { version: '1.0.1', phase: 'promoted', health: 'healthy' });
    void registration.flush();
    release();
    await flushing;
    assert.equal(puts.length, 2, 'one write at a time: the second follows the first');
    assert.equal(parseAgentDocument((await base.get(registration.key))!).targets[T]?.phase, 'promoted');
  } finally {
    registration.leave()?.release();
    await base.close();
  }
});

test('an unchanged report writes nothing', async () => {
  const { base, store, puts } = await recordingStore();
  const registration = registrationOf(store);
  try {
    registration.mergeReports([{ target: T, version: '1.0.0', health: 'healthy' }]);
    await registration.register();
    puts.length = 0;
    registration.mergeReports([{ target: T, version: '1.0.0', health: 'healthy' }]);
    await registration.flush();
    assert.equal(puts.length, 0);
  } finally {
    registration.leave()?.release();
    await base.close();
  }
});

/** A member that never acts (no rollout is written here): only its registration matters. */
function idleMember(store: KvStore, prefix: string, labels: unknown): FleetMember {
  const options: FleetMemberOptions = {
    store,
    agentId: 'labelled-1',
    ring: 1,
    prefix,
    trust: FLEET_TRUST,
    labels: labels as Record<string, string>,
    apply: () => Promise.reject(new Error('no rollout here')),
    rollback: () => Promise.reject(new Error('no rollout here')),
  };
  return new FleetMember(options);
}

/** Labels refused, each with what the error names. */
const BAD_LABELS: [string, unknown, RegExp][] = [
  ['17 labels', Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`l${i}`, 'x'])), /17 labels, at most 16/],
  ['an empty name', { '': 'x' }, /label name "" must be 1-64 of/],
  ['a name of 65 characters', { ['n'.repeat(65)]: 'x' }, /label name "n+.*" must be 1-64 of/],
  ['a name with a space', { 'my zone': 'x' }, /label name "my zone"/],
  ['a name with a slash', { 'a/b': 'x' }, /label name "a\/b"/],
  ['an empty value', { zone: '' }, /zone must be 1-64 printable ASCII characters/],
  ['a value of 65 characters', { zone: 'v'.repeat(65) }, /zone must be 1-64 printable ASCII/],
  ['a value with a newline', { zone: 'eu\n1' }, /zone must be 1-64 printable ASCII/],
  ['a value with an escape character', { zone: 'eu\u001b[31m' }, /zone must be 1-64 printable ASCII/],
  ['a value outside ASCII', { zone: 'zürich' }, /zone must be 1-64 printable ASCII/],
  ['a number as a value', { zone: 1 }, /zone must be 1-64 printable ASCII characters, got number 1/],
  ['an array of labels', ['zone'], /labels must be a JSON object/],
  ['null', null, /labels must be a JSON object/],
];

test("an agent's labels are written in its registration, sorted, and fleetStatus shows them; an agent without labels writes none", async () => {
  const store = await EmbeddedStore.open(join(dir, `s${++seq}`), { pollMs: 10 });
  const prefix = testPrefix('labels');
  // The bounds themselves are allowed: 16 labels, names and values of 64 characters, spaces and punctuation in values.
  const labels: Record<string, string> = { zone: 'eu-west 1', 'rack.id': 'r-12_b', owner: '~ops@example (team A)' };
  for (let i = 0; i < 12; i++) labels[`x${i}`] = String(i);
  labels['n'.repeat(64)] = 'v'.repeat(64);
  assert.equal(Object.keys(labels).length, 16);
  const member = idleMember(store, prefix, labels);
  const plain = new FleetMember({
    store,
    agentId: 'plain-1',
    ring: 0,
    prefix,
    trust: FLEET_TRUST,
    apply: () => Promise.reject(new Error('no rollout here')),
    rollback: () => Promise.reject(new Error('no rollout here')),
  });
  try {
    await member.start();
    await plain.start();
    assert.deepEqual(member.document.labels, labels);
    const raw = await store.get(`${fleetKeys(prefix).agents}labelled-1`);
    assert.ok(raw !== undefined);
    assert.deepEqual(Object.keys(JSON.parse(raw).labels as object), Object.keys(labels).sort(), 'written with the names sorted');
    const status = await fleetStatus(store, { prefix });
    assert.deepEqual(status.problems, []);
    assert.deepEqual(
      status.agents.map((a) => [a.agentId, a.labels]),
      [
        ['plain-1', undefined],
        ['labelled-1', labels],
      ],
    );
    assert.equal('labels' in JSON.parse((await store.get(`${fleetKeys(prefix).agents}plain-1`))!), false);
  } finally {
    await member.stop();
    await plain.stop();
    await store.close();
  }
});

test('bad labels are refused (INVALID) when the member is built, before it touches the store', async () => {
  const store = await EmbeddedStore.open(join(dir, `s${++seq}`), { pollMs: 10 });
  const prefix = testPrefix('bad-labels');
  try {
    for (const [what, labels, message] of BAD_LABELS) {
      assert.throws(() => idleMember(store, prefix, labels), assertCode('INVALID', message), what);
    }
    assert.deepEqual(await store.list(fleetKeys(prefix).agents), [], 'nothing was registered');
  } finally {
    await store.close();
  }
});

test("a stored agent document's labels are parsed as strictly: fleetStatus lists a document with bad labels as a problem", async () => {
  const store = await EmbeddedStore.open(join(dir, `s${++seq}`), { pollMs: 10 });
  const prefix = testPrefix('stored-labels');
  const keys = fleetKeys(prefix);
  const doc = (labels: unknown): Record<string, unknown> => ({ agentId: 'a-1', ring: 0, labels, targets: {} });
  try {
    assert.deepEqual(parseAgentDocument(doc({ zone: 'eu-1' })).labels, { zone: 'eu-1' });
    for (const [what, labels, message] of BAD_LABELS) {
      assert.throws(() => parseAgentDocument(JSON.stringify(doc(labels))), assertCode('INVALID', message), what);
    }
    await store.put(`${keys.agents}a-1`, JSON.stringify(doc({ zone: 'eu\n1' })));
    await store.put(`${keys.agents}a-2`, JSON.stringify({ ...doc({ zone: 'eu-2' }), agentId: 'a-2' }));
    const status = await fleetStatus(store, { prefix });
    assert.deepEqual(
      status.agents.map((a) => [a.agentId, a.labels]),
      [['a-2', { zone: 'eu-2' }]],
    );
    assert.deepEqual(
      status.problems.map((p) => p.key),
      [`${keys.agents}a-1`],
    );
    assert.match(status.problems[0]!.error, /agent\.labels\.zone must be 1-64 printable ASCII/);
  } finally {
    await store.close();
  }
});

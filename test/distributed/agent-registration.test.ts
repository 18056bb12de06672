import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { EmbeddedStore, parseAgentDocument, type KvStore, type Lease } from '../../src/distributed/index.js';
import { AgentRegistration } from '../../src/distributed/agent-registration.js';
import { T } from './fleet-helpers.js';

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

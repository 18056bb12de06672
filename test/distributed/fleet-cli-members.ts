/*
 * What the `hotpatch fleet` command-line tests share: agents that follow rollouts without
 * patching anything (each records its orders and reports the outcome its test chose), the
 * key files of the controllers, and a trust store that also trusts the "ci" key the test
 * patches are signed with (so `fleet rollout --repo` can verify them).
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FleetMember, type KvStore, type RolloutDocument } from '../../src/distributed/index.js';
import { parseTrustStore, type TrustStore } from '../../src/verification/index.js';
import { CI_TRUST } from '../support/patches.js';
import { FLEET_TRUST_DOCUMENT, KEYS, T } from './fleet-helpers.js';

/** FLEET_TRUST_DOCUMENT plus the ci key: operators and controllers as there, patches signed by ci. */
export const CLI_TRUST_DOCUMENT = { ...FLEET_TRUST_DOCUMENT, keys: { ...FLEET_TRUST_DOCUMENT.keys, ...CI_TRUST.keys } };
export const CLI_TRUST: TrustStore = parseTrustStore(CLI_TRUST_DOCUMENT);

export interface CliFiles {
  trust: string;
  alice: string;
  bob: string;
  ctlA: string;
  ctlB: string;
  /** `--trust FILE --key alice --key bob`: enough operators for anything. */
  signing: string[];
}

/** The trust store and the private keys (0600), as `--trust` and `--key` read them. */
export async function writeCliFiles(dir: string): Promise<CliFiles> {
  const trust = join(dir, 'cli-trust.json');
  await writeFile(trust, JSON.stringify(CLI_TRUST_DOCUMENT));
  const write = async (name: string, pem: string): Promise<string> => {
    const file = join(dir, `${name}.key`);
    await writeFile(file, pem, { mode: 0o600 });
    return file;
  };
  const alice = await write(KEYS.alice.keyid, KEYS.alice.privateKey.toPem());
  const bob = await write(KEYS.bob.keyid, KEYS.bob.privateKey.toPem());
  const ctlA = await write(KEYS.ctlA.keyid, KEYS.ctlA.privateKey.toPem());
  const ctlB = await write(KEYS.ctlB.keyid, KEYS.ctlB.privateKey.toPem());
  return { trust, alice, bob, ctlA, ctlB, signing: ['--trust', trust, '--key', alice, '--key', bob] };
}

/** How a recording agent's apply ends ('self-test-failed': failed, its reason carrying the code as a real agent's does). */
export type Outcome = 'promoted' | 'failed' | 'self-test-failed';

export interface Recorders {
  members: FleetMember[];
  /** `<agent> apply|rollback <rollout>`, in order. */
  orders: string[];
  close(): Promise<void>;
}

/**
 * One agent per entry of `rings` (its ring), each on its own store client: it applies by
 * recording the order and reporting `outcome(agent)` at once, and rolls back the same way.
 */
export async function recordingMembers(
  open: () => Promise<KvStore>,
  prefix: string,
  rings: readonly number[],
  outcome: (agentId: string) => Outcome = () => 'promoted',
): Promise<Recorders> {
  const orders: string[] = [];
  const stores: KvStore[] = [];
  const members = await Promise.all(
    rings.map(async (ring, i) => {
      const agentId = `cli-agent-${i}`;
      let running: { version: string; patchId: string | null } = { version: '1.0.0', patchId: null };
      const store = await open();
      stores.push(store);
      const member = new FleetMember({
        store,
        agentId,
        ring,
        prefix,
        trust: CLI_TRUST,
        leaseTtlMs: 3000,
        reportIntervalMs: 50,
        onError: () => {},
        apply: async (order: RolloutDocument) => {
          orders.push(`${agentId} apply ${order.id}`);
          if (outcome(agentId) === 'failed') return { phase: 'failed', ...running, reason: 'self-test failed on this host' };
          if (outcome(agentId) === 'self-test-failed') {
            return { phase: 'failed', ...running, reason: `plan ${order.id}-plan failed (SELF_TEST_FAILED): KAT abc: wrong digest` };
          }
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
    async close() {
      await Promise.all(members.map((m) => m.stop().catch(() => {})));
      await Promise.all(stores.map((s) => s.close().catch(() => {})));
    },
  };
}

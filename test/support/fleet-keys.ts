/*
 * The fleet's keys for tests: operators who sign rollouts, controllers who sign the states
 * they write, agents who sign their reports, and the trust stores naming them — as objects,
 * and as the files the CLI and agents read (`--trust`, `--key`, `fleet.key`). One place, so
 * in-process fleets, agents joined by configuration and fleets of OS processes all trust the
 * same keys.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { RolloutSigner } from '../../src/distributed/index.js';
import { parseTrustStore, type TrustStore, type TrustStoreDocument } from '../../src/verification/index.js';
import { testKey, type TestKey } from './patches.js';

/**
 * Operators alice and bob (a rollout or a resume needs both: fleet.threshold 2; a pause or an
 * abort either: stopThreshold 1), carol (a fleet key restricted to xps.net.*), the controllers
 * ctl-a and ctl-b, and outsider (in the trust store, in no role).
 */
export const KEYS = {
  alice: testKey('ops-alice'),
  bob: testKey('ops-bob'),
  carol: testKey('ops-carol'),
  ctlA: testKey('ctl-a'),
  ctlB: testKey('ctl-b'),
  outsider: testKey('outsider'),
};

export const signerOf = (k: TestKey): RolloutSigner => ({ keyid: k.keyid, privateKey: k.privateKey });

export const FLEET_TRUST_DOCUMENT: TrustStoreDocument = {
  keys: Object.fromEntries(
    Object.values(KEYS).map((k) => [k.keyid, { alg: k.alg, public_key: k.publicPem, ...(k === KEYS.carol ? { targets: ['xps.net.*'] } : {}) }]),
  ),
  threshold: 1,
  fleet: { keys: ['ops-alice', 'ops-bob', 'ops-carol'], threshold: 2, stopThreshold: 1 },
  controllers: { keys: ['ctl-a', 'ctl-b'] },
};
export const FLEET_TRUST: TrustStore = parseTrustStore(FLEET_TRUST_DOCUMENT);

/** Both operators: enough for anything. */
export const OPERATORS: RolloutSigner[] = [signerOf(KEYS.alice), signerOf(KEYS.bob)];

/** The controllers' keys by controller id (any other id signs with ctl-a's key). */
const CONTROLLER_SIGNERS: Record<string, RolloutSigner> = { 'ctl-a': signerOf(KEYS.ctlA), 'ctl-b': signerOf(KEYS.ctlB) };
export const controllerSigner = (controllerId: string): RolloutSigner => CONTROLLER_SIGNERS[controllerId] ?? signerOf(KEYS.ctlA);

/**
 * Agents' keys (key id = agent id): every id `startFleet` gives (agent-r<ring>-<nn>, rings 0-3,
 * 16 each), the process hosts' (host-r<ring>-<i>), and a few more for tests of their own.
 */
export const AGENT_IDS: readonly string[] = [
  ...[0, 1, 2, 3].flatMap((ring) => Array.from({ length: 16 }, (_, i) => `agent-r${ring}-${String(i).padStart(2, '0')}`)),
  ...[0, 1, 2].flatMap((ring) => [0, 1].map((i) => `host-r${ring}-${i}`)),
  'host-a',
  'host-b',
  'rec-0',
  'rec-1',
  'rec-2',
  'rec-3',
];
export const AGENT_KEYS: ReadonlyMap<string, TestKey> = new Map(AGENT_IDS.map((id) => [id, testKey(id)]));

/** The signer of an agent listed in AGENT_IDS (its own key). */
export function agentSigner(agentId: string): RolloutSigner {
  const key = AGENT_KEYS.get(agentId);
  if (key === undefined) throw new Error(`no test key for agent ${agentId}`);
  return signerOf(key);
}

/** FLEET_TRUST_DOCUMENT plus every agent's key and the `agents` role listing them: reports count only signed. */
export const FLEET_AGENTS_TRUST_DOCUMENT: TrustStoreDocument = {
  ...FLEET_TRUST_DOCUMENT,
  keys: { ...FLEET_TRUST_DOCUMENT.keys, ...Object.fromEntries([...AGENT_KEYS.values()].map((k) => [k.keyid, { alg: k.alg, public_key: k.publicPem }])) },
  agents: { keys: [...AGENT_IDS] },
};
export const FLEET_AGENTS_TRUST: TrustStore = parseTrustStore(FLEET_AGENTS_TRUST_DOCUMENT);

/** An agent's private key file as an agent reads it (`fleet.key`): `<dir>/<agentId>.key`, mode 0600. */
export async function writeAgentKeyFile(dir: string, agentId: string): Promise<string> {
  const file = join(dir, `${agentId}.key`);
  await writeFile(file, AGENT_KEYS.get(agentId)!.privateKey.toPem(), { mode: 0o600 });
  return file;
}

/** The trust store and the operators' key files, as the CLI reads them: `--trust` and `--key` arguments. */
export async function writeFleetFiles(dir: string): Promise<{ trust: string; alice: string; bob: string; signing: string[] }> {
  const trust = join(dir, 'fleet-trust.json');
  await writeFile(trust, JSON.stringify(FLEET_TRUST_DOCUMENT));
  const files: Record<string, string> = {};
  for (const k of [KEYS.alice, KEYS.bob]) {
    files[k.keyid] = join(dir, `${k.keyid}.key`);
    await writeFile(files[k.keyid]!, k.privateKey.toPem(), { mode: 0o600 });
  }
  const alice = files['ops-alice']!;
  const bob = files['ops-bob']!;
  return { trust, alice, bob, signing: ['--trust', trust, '--key', alice, '--key', bob] };
}

import { hostname, userInfo } from 'node:os';
import { HotPatchError, isPatchId, isTargetName } from '../../core/index.js';
import {
  DEFAULT_PROPOSAL_TTL_MS,
  StoreConsensus,
  newProposal,
  normalizePayloadHash,
  openStore,
  proposalExpiresMs,
  type KvStore,
} from '../../distributed/index.js';
import { optionalString, parseCommandArgs, requireString } from '../args.js';
import { EXIT_OK, UsageError } from '../cli-error.js';
import { printHelp, type Command } from '../command.js';

/** Flags every consensus command takes (shared by propose, approve, proposals). */
export const STORE_FLAGS = {
  store: { type: 'string' },
  prefix: { type: 'string' },
} as const;

export const STORE_USAGE = '--store etcd://HOST:PORT,…|file:/DIR [--prefix /xps/hotpatch]';

/**
 * Opens `--store` and runs `body` with a consensus over it, closing the store afterwards
 * (an open etcd client would keep the process alive). A malformed spec or prefix is a usage
 * error (exit 2); a store that cannot be reached is IO (exit 3).
 */
export async function withConsensus<T>(values: Record<string, unknown>, body: (consensus: StoreConsensus) => Promise<T>): Promise<T> {
  const spec = requireString(values, 'store');
  const prefix = optionalString(values, 'prefix');
  let store: KvStore;
  try {
    store = await openStore(spec);
  } catch (error) {
    if (error instanceof HotPatchError && error.code === 'INVALID') throw new UsageError(`--store ${spec}: ${error.message}`, error.code, { cause: error });
    throw error;
  }
  try {
    let consensus: StoreConsensus;
    try {
      consensus = new StoreConsensus(store, prefix === undefined ? {} : { prefix });
    } catch (error) {
      if (error instanceof HotPatchError) throw new UsageError(`--prefix: ${error.message}`, error.code, { cause: error });
      throw error;
    }
    return await body(consensus);
  } finally {
    await store.close().catch(() => undefined); // the command's own outcome matters more than a failed close
  }
}

const DURATION = /^([1-9][0-9]{0,9})(ms|s|m|h|d)$/;
const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** `90s`, `15m`, `1h`, `7d` → milliseconds. */
export function parseDuration(text: string, flag: string): number {
  const m = DURATION.exec(text);
  if (m === null) throw new UsageError(`${flag} takes a duration such as 30s, 15m, 1h or 7d, got ${JSON.stringify(text)}`);
  return Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS];
}

export const proposeCommand: Command = {
  name: 'propose',
  summary: 'ask approvers to approve one activation (creates or finds its proposal)',
  usage: `hotpatch propose ${STORE_USAGE}
                 --patch ID --target T --version V --payload-hash ALG:HEX
                 [--ttl 1h] [--proposer NAME] [--json]

Writes a proposal for activating patch ID (TARGET, VERSION, payload hash) into the
consensus store and prints its id. The id is derived from those four fields, so an
agent asking for the same activation finds the same proposal; proposing it again
while it is open changes nothing, and an expired one is renewed (earlier votes then
no longer count). Approvers vote with 'hotpatch approve --proposal ID'.`,
  async run(argv, out) {
    const { values, help } = parseCommandArgs(argv, {
      ...STORE_FLAGS,
      patch: { type: 'string' },
      target: { type: 'string' },
      version: { type: 'string' },
      'payload-hash': { type: 'string' },
      ttl: { type: 'string' },
      proposer: { type: 'string' },
    });
    if (help) return printHelp(out, this.usage);
    const patchId = requireString(values, 'patch');
    if (!isPatchId(patchId)) throw new UsageError(`--patch ${JSON.stringify(patchId)} is not a valid patch id`);
    const target = requireString(values, 'target');
    if (!isTargetName(target)) throw new UsageError(`--target ${JSON.stringify(target)} is not a valid target name`);
    const version = requireString(values, 'version');
    let payloadHash: string;
    try {
      payloadHash = normalizePayloadHash(requireString(values, 'payload-hash'), '--payload-hash');
    } catch (error) {
      if (error instanceof HotPatchError) throw new UsageError(error.message);
      throw error;
    }
    const ttlText = optionalString(values, 'ttl');
    const ttlMs = ttlText === undefined ? DEFAULT_PROPOSAL_TTL_MS : parseDuration(ttlText, '--ttl');
    const proposer = optionalString(values, 'proposer') ?? `${safeUser()}@${hostname()}`;
    const now = Date.now();
    let fresh;
    try {
      fresh = newProposal({ patchId, target, version, payloadHash }, { now, ttlMs, proposer });
    } catch (error) {
      if (error instanceof HotPatchError) throw new UsageError(error.message, error.code, { cause: error });
      throw error;
    }

    return withConsensus(values, async (consensus) => {
      let outcome: 'created' | 'existing' | 'renewed' = 'created';
      let proposal = fresh;
      for (let attempt = 0; ; attempt++) {
        if (attempt === 5) throw new HotPatchError('IO', `proposal ${fresh.id} keeps changing in the store; try again`);
        const stored = await consensus.proposal(fresh.id);
        if (stored !== undefined && proposalExpiresMs(stored) > Date.now()) {
          proposal = stored;
          outcome = 'existing';
          break;
        }
        if (await consensus.propose(fresh, stored === undefined ? {} : { replacing: stored })) {
          outcome = stored === undefined ? 'created' : 'renewed';
          break;
        }
      }
      out.line(proposal.id);
      out.line(`  ${outcome === 'existing' ? 'already open' : outcome}: ${proposal.patchId} ${proposal.target} ${proposal.version} ${proposal.payloadHash}`);
      out.line(`  expires ${proposal.expiresAt}; vote with: hotpatch approve --store ${String(values.store)} --proposal ${proposal.id} --key KEYFILE`);
      if (out.json) out.success(`proposal ${proposal.id} ${outcome}`, { id: proposal.id, outcome, proposal });
      return EXIT_OK;
    });
  },
};

function safeUser(): string {
  try {
    return userInfo().username;
  } catch {
    return 'unknown'; // no passwd entry (containers): the proposer field is informational only
  }
}

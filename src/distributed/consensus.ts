import { HotPatchError, describe } from '../core/index.js';
import type { KvStore, Lease } from './kv-store.js';
import { APPROVER_KEYID } from './approvers.js';
import { PROPOSAL_ID, encodeProposal, parseProposal, type Proposal, type SignedVote } from './vote.js';

/**
 * The seed's consensus interface: proposals, votes and voters over any `KvStore` (the
 * embedded file store on one host, etcd on a fleet). It stores; it never judges: whether a
 * vote counts is `countVotes`' decision, made by every reader from the signatures.
 *
 * Key layout under `prefix` (default `/xps/hotpatch`):
 *   <prefix>/proposals/<proposalId>          proposal JSON (encodeProposal)
 *   <prefix>/votes/<proposalId>/<keyid>      a vote's DSSE envelope JSON
 *   <prefix>/voters/<keyid>                  {"keyid","registeredAt"}, attached to the voter's lease
 */
export interface Consensus {
  readonly prefix: string;
  /**
   * Writes the proposal if none exists under its id (true), or — with `replacing` — only
   * if the stored one is still exactly `replacing` (renewing an expired proposal).
   */
  propose(proposal: Proposal, options?: { replacing?: Proposal }): Promise<boolean>;
  /** The stored proposal; undefined when absent; INVALID when what is stored is not a valid proposal for that id. */
  proposal(id: string): Promise<Proposal | undefined>;
  /** Every well-formed stored proposal (malformed entries are skipped), by id. */
  proposals(): Promise<Proposal[]>;
  /**
   * Stores a vote if this key id has none for the proposal yet (true); a repeated vote by the
   * same key id is not stored twice. With `replacing`, only if the stored vote is still
   * exactly that one (a stale vote for an earlier instance of the proposal).
   */
  vote(vote: SignedVote, options?: { replacing?: SignedVote }): Promise<boolean>;
  /** Every vote stored for the proposal, sorted by key id. */
  votes(proposalId: string): Promise<SignedVote[]>;
  /** Voters currently registered (their leases alive). */
  voterCount(): Promise<number>;
  /** Registers a voter for as long as `lease` lives. */
  registerVoter(keyid: string, lease: Lease): Promise<void>;
  /** Calls `onChange` whenever the proposal, its votes or the voters change; resolves to a stop function. */
  watch(proposalId: string, onChange: () => void): Promise<() => Promise<void>>;
  grantLease(ttlMs: number): Promise<Lease>;
}

export const DEFAULT_CONSENSUS_PREFIX = '/xps/hotpatch';
const PREFIX = /^(\/[A-Za-z0-9._-]+)+$/;

export interface ConsensusOptions {
  /** Key prefix; default `/xps/hotpatch`. */
  prefix?: string;
}

/** `Consensus` over a `KvStore`. Closing the store is the caller's business. */
export class StoreConsensus implements Consensus {
  readonly prefix: string;
  readonly store: KvStore;

  constructor(store: KvStore, options: ConsensusOptions = {}) {
    if (typeof store !== 'object' || store === null || typeof store.create !== 'function') {
      throw new HotPatchError('INVALID', `store must be a KvStore, got ${describe(store)}`);
    }
    const prefix = options.prefix ?? DEFAULT_CONSENSUS_PREFIX;
    if (typeof prefix !== 'string' || !PREFIX.test(prefix) || prefix.length > 256) {
      throw new HotPatchError('INVALID', `consensus prefix must look like /a/b (segments of [A-Za-z0-9._-], no trailing /), got ${describe(prefix)}`);
    }
    this.store = store;
    this.prefix = prefix;
  }

  proposalKey(id: string): string {
    return `${this.prefix}/proposals/${checkProposalId(id)}`;
  }

  voteKey(proposalId: string, keyid: string): string {
    return `${this.votesPrefix(proposalId)}${checkKeyid(keyid)}`;
  }

  votesPrefix(proposalId: string): string {
    return `${this.prefix}/votes/${checkProposalId(proposalId)}/`;
  }

  get votersPrefix(): string {
    return `${this.prefix}/voters/`;
  }

  async propose(proposal: Proposal, options: { replacing?: Proposal } = {}): Promise<boolean> {
    const text = encodeProposal(parseProposal(proposal));
    const key = this.proposalKey(proposal.id);
    if (options.replacing === undefined) return this.store.create(key, text);
    if (options.replacing.id !== proposal.id) throw new HotPatchError('INVALID', `cannot replace proposal ${options.replacing.id} by ${proposal.id}`);
    return this.store.compareAndSwap(key, encodeProposal(options.replacing), text);
  }

  async proposal(id: string): Promise<Proposal | undefined> {
    const key = this.proposalKey(id);
    const text = await this.store.get(key);
    if (text === undefined) return undefined;
    let proposal: Proposal;
    try {
      proposal = parseProposal(text);
    } catch (error) {
      throw new HotPatchError('INVALID', `stored proposal ${key} is not a valid proposal: ${(error as Error).message}`, { cause: error });
    }
    if (proposal.id !== id) throw new HotPatchError('INVALID', `stored proposal ${key} names another id (${proposal.id})`);
    return proposal;
  }

  async proposals(): Promise<Proposal[]> {
    const base = `${this.prefix}/proposals/`;
    const out: Proposal[] = [];
    for (const kv of await this.store.list(base)) {
      try {
        const p = parseProposal(kv.value);
        if (kv.key === `${base}${p.id}`) out.push(p);
      } catch {
        // A malformed entry (written by anyone with store access) is not a proposal: skipped.
      }
    }
    return out;
  }

  async vote(vote: SignedVote, options: { replacing?: SignedVote } = {}): Promise<boolean> {
    const key = this.voteKey(vote.proposalId, vote.keyid);
    if (typeof vote.envelope !== 'string' || vote.envelope.length === 0) throw new HotPatchError('INVALID', 'vote envelope must be a non-empty string');
    if (options.replacing === undefined) return this.store.create(key, vote.envelope);
    const old = options.replacing;
    if (old.proposalId !== vote.proposalId || old.keyid !== vote.keyid)
      throw new HotPatchError('INVALID', "a vote can only replace the same key id's vote on the same proposal");
    return this.store.compareAndSwap(key, old.envelope, vote.envelope);
  }

  async votes(proposalId: string): Promise<SignedVote[]> {
    const base = this.votesPrefix(proposalId);
    return (await this.store.list(base)).map((kv) => ({ proposalId, keyid: kv.key.slice(base.length), envelope: kv.value }));
  }

  async voterCount(): Promise<number> {
    return (await this.store.list(this.votersPrefix)).length;
  }

  async registerVoter(keyid: string, lease: Lease): Promise<void> {
    const key = `${this.votersPrefix}${checkKeyid(keyid)}`;
    await this.store.put(key, JSON.stringify({ keyid, registeredAt: new Date().toISOString() }), { lease });
  }

  async watch(proposalId: string, onChange: () => void): Promise<() => Promise<void>> {
    const stops: (() => Promise<void>)[] = [];
    const stopAll = async (): Promise<void> => {
      await Promise.allSettled(stops.splice(0).map((s) => s()));
    };
    const notify = (): void => onChange();
    try {
      stops.push(await this.store.watch(this.votesPrefix(proposalId), notify));
      stops.push(await this.store.watch(this.proposalKey(proposalId), notify));
      stops.push(await this.store.watch(this.votersPrefix, notify));
    } catch (error) {
      await stopAll();
      throw error;
    }
    return stopAll;
  }

  grantLease(ttlMs: number): Promise<Lease> {
    return this.store.grantLease(ttlMs);
  }
}

function checkProposalId(id: string): string {
  if (typeof id !== 'string' || !PROPOSAL_ID.test(id))
    throw new HotPatchError('INVALID', `proposal id ${describe(id)} is not a proposal id (p- and 32 hex digits)`);
  return id;
}

function checkKeyid(keyid: string): string {
  if (typeof keyid !== 'string' || !APPROVER_KEYID.test(keyid))
    throw new HotPatchError('INVALID', `key id ${describe(keyid)} is not a valid key id (1-128 of [A-Za-z0-9._:@-])`);
  return keyid;
}

// The seed's injection point: one current consensus per process, set at runtime.
let current: Consensus | undefined;

/** Sets (or with undefined, clears) the process's current consensus. */
export function setConsensus(consensus: Consensus | undefined): void {
  if (consensus !== undefined && (typeof consensus !== 'object' || consensus === null || typeof consensus.propose !== 'function')) {
    throw new HotPatchError('INVALID', `consensus must implement Consensus, got ${describe(consensus)}`);
  }
  current = consensus;
}

/** The current consensus; INVALID when none was set. */
export function getConsensus(): Consensus {
  if (current === undefined)
    throw new HotPatchError('INVALID', 'no consensus configured: call setConsensus() (e.g. with new StoreConsensus(await openStore(spec)))');
  return current;
}

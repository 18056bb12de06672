import { hostname } from 'node:os';
import { HotPatchError, describe, type ApprovalRequest, type Approver } from '../core/index.js';
import type { ApproversList } from './approvers.js';
import { getConsensus, type Consensus } from './consensus.js';
import { checkApprovalRequest, countVotes, newProposal, proposalExpiresMs, proposalIdOf, type Proposal, type VoteTally } from './vote.js';

export interface DistributedApprovalOptions {
  /** Where proposals and votes live; default: `getConsensus()` at each `approve` call. */
  consensus?: Consensus;
  approvers: ApproversList;
  /** How long one `approve` call waits for the quorum; default 10 minutes. */
  waitMs?: number;
  /** Lifetime of a proposal this approver creates; default 1 hour. */
  proposalTtlMs?: number;
  /** Re-reads the votes at least this often, in case a watch event was lost; default 2 s. */
  pollMs?: number;
  /** Recorded in the proposals it creates; default `<hostname>:<pid>`. */
  proposer?: string;
  /** See `countVotes`. */
  clockSkewMs?: number;
  /** Clock (epoch ms); tests set it. */
  now?: () => number;
}

export interface ApprovalResult {
  proposalId: string;
  /** Key ids whose votes counted (one per distinct key). */
  approvedBy: string[];
  required: number;
}

export const DEFAULT_APPROVAL_WAIT_MS = 10 * 60_000;
export const DEFAULT_PROPOSAL_TTL_MS = 60 * 60_000;
const DEFAULT_POLL_MS = 2000;
const MIN_CALL_MS = 1000;

/** A store call that did not answer before the deadline. */
class Late extends Error {}

/**
 * The Planner's approver backed by signed votes (docs/ARCHITECTURE.md "Approval quorum"):
 * proposes the activation (or finds the fleet's existing proposal), then waits — watching the
 * votes — until a quorum of distinct approver keys has signed it. It never approves on an
 * error: a store it cannot read (etcd without quorum) ends the wait with IO, a quorum not
 * reached in time with APPROVAL_MISSING. It publishes nothing; the Planner emits `Approved`.
 */
export class DistributedApproval implements Approver {
  readonly #consensus: Consensus | undefined;
  readonly #approvers: ApproversList;
  readonly #waitMs: number;
  readonly #ttlMs: number;
  readonly #pollMs: number;
  readonly #proposer: string;
  readonly #skew: number | undefined;
  readonly #now: () => number;

  constructor(options: DistributedApprovalOptions) {
    if (typeof options !== 'object' || options === null) throw new HotPatchError('INVALID', `options must be an object, got ${describe(options)}`);
    const { approvers } = options;
    if (typeof approvers !== 'object' || approvers === null || !(approvers.keys instanceof Map) || approvers.quorum === undefined) {
      throw new HotPatchError('INVALID', 'options.approvers must be an approvers list (parseApprovers)');
    }
    this.#consensus = options.consensus;
    this.#approvers = approvers;
    this.#waitMs = duration(options.waitMs, DEFAULT_APPROVAL_WAIT_MS, 'options.waitMs', 0);
    this.#ttlMs = duration(options.proposalTtlMs, DEFAULT_PROPOSAL_TTL_MS, 'options.proposalTtlMs', 1000);
    this.#pollMs = duration(options.pollMs, DEFAULT_POLL_MS, 'options.pollMs', 10);
    this.#proposer = options.proposer ?? `${hostname()}:${process.pid}`;
    this.#skew = options.clockSkewMs;
    this.#now = options.now ?? Date.now;
  }

  /**
   * The Approver contract: resolves when approved, with who approved (the Planner puts it
   * into its `Approved` event's detail).
   */
  async approve(request: ApprovalRequest, signal?: AbortSignal): Promise<Record<string, unknown>> {
    return { ...(await this.waitForQuorum(request, signal)) };
  }

  /** Dry run: the quorum as it stands now for `request`, read only (no proposal is made). */
  async check(request: ApprovalRequest): Promise<{ approved: boolean; summary: string }> {
    const req = checkApprovalRequest(request);
    const consensus = this.#consensus ?? getConsensus();
    const id = proposalIdOf(req);
    const proposal = await consensus.proposal(id);
    if (proposal === undefined || proposalExpiresMs(proposal) <= this.#now()) {
      return { approved: false, summary: `no live proposal ${id} yet: an apply would propose it and wait for the quorum` };
    }
    const needVoters = this.#approvers.quorum.kind === 'ratio';
    const [votes, voterCount] = await Promise.all([consensus.votes(id), needVoters ? consensus.voterCount() : Promise.resolve(0)]);
    const tally = countVotes(proposal, votes, this.#approvers, {
      now: this.#now(),
      voterCount,
      ...(this.#skew === undefined ? {} : { clockSkewMs: this.#skew }),
    });
    return { approved: tally.approved, summary: `${tally.counted.length} of ${tally.required} required approvals on proposal ${id}` };
  }

  /** Proposes (or finds) the activation and waits for its quorum; see the class comment. */
  async waitForQuorum(request: ApprovalRequest, signal?: AbortSignal): Promise<ApprovalResult> {
    const req = checkApprovalRequest(request);
    const consensus = this.#consensus ?? getConsensus();
    const id = proposalIdOf(req);
    const what = `approval of ${req.patchId} ${req.version}`;
    const deadline = this.#now() + this.#waitMs;

    let wake: (() => void) | undefined;
    const onChange = (): void => wake?.();
    let stopWatch: (() => Promise<void>) | undefined;
    let watching = false;
    let finished = false;
    // Watching only wakes the wait early (the poll reads the store anyway); a watch that
    // cannot start now is retried after the next successful read.
    const startWatch = (): void => {
      watching = true;
      consensus.watch(id, onChange).then(
        (stop) => {
          if (finished) void stop().catch(() => undefined);
          else stopWatch = stop;
        },
        () => (watching = false),
      );
    };
    startWatch();

    let tally: VoteTally | undefined;
    let proposal: Proposal | undefined;
    /** The last read's failure (IO), or a stored proposal that is not valid (INVALID). */
    let problem: HotPatchError | Late | undefined;
    try {
      for (;;) {
        if (aborted(signal)) break;
        try {
          proposal = await this.#until(this.#ensureProposal(consensus, req, id), deadline, signal);
          const needVoters = this.#approvers.quorum.kind === 'ratio';
          const [votes, voterCount] = await this.#until(
            Promise.all([consensus.votes(id), needVoters ? consensus.voterCount() : Promise.resolve(0)]),
            deadline,
            signal,
          );
          tally = countVotes(proposal, votes, this.#approvers, {
            now: this.#now(),
            voterCount,
            ...(this.#skew === undefined ? {} : { clockSkewMs: this.#skew }),
          });
          problem = undefined;
          if (tally.approved) return { proposalId: id, approvedBy: tally.counted, required: tally.required };
          if (!watching) startWatch();
        } catch (error) {
          if (aborted(signal)) break;
          if (error instanceof Late) {
            problem ??= error; // an earlier failure says more than "no answer"
            break;
          }
          // Never approve on an error: remember it, retry until the deadline, then fail closed.
          if (!(error instanceof HotPatchError) || (error.code !== 'IO' && error.code !== 'INVALID')) throw error;
          problem = error;
        }
        const left = deadline - this.#now();
        if (left <= 0) break;
        const expiresIn = proposal === undefined ? Infinity : proposalExpiresMs(proposal) - this.#now() + 1;
        await this.#sleep(Math.max(1, Math.min(left, this.#pollMs, expiresIn)), signal, (w) => (wake = w));
        wake = undefined;
      }
    } finally {
      finished = true;
      if (stopWatch !== undefined) void stopWatch().catch(() => undefined);
    }

    const detail = {
      proposalId: id,
      ...(tally === undefined ? {} : { counted: tally.counted, required: tally.required, ignored: tally.ignored }),
      ...(proposal === undefined ? {} : { expiresAt: proposal.expiresAt }),
    };
    if (signal?.aborted !== true && problem !== undefined && !(problem instanceof HotPatchError && problem.code === 'INVALID')) {
      const message = problem instanceof Late ? `no answer from the consensus store within ${formatMs(this.#waitMs)}` : problem.message;
      const last = tally === undefined ? '' : `; last read: ${tally.counted.length} of ${tally.required} required approvals`;
      throw new HotPatchError('IO', `${what}: consensus store unavailable, not approving (fail closed): ${message}${last}; proposal ${id}`, {
        ...(problem instanceof Late ? {} : { cause: problem }),
        detail,
      });
    }
    const summary = tally === undefined ? 'no votes read' : `${tally.counted.length} of ${tally.required} required approvals`;
    const ignored = tally === undefined || tally.ignored.length === 0 ? '' : ` (ignored: ${tally.ignored.map((i) => `${i.keyid}: ${i.reason}`).join('; ')})`;
    const why = aborted(signal) ? 'aborted while waiting' : problem !== undefined ? problem.message : `waited ${formatMs(this.#waitMs)}`;
    throw new HotPatchError('APPROVAL_MISSING', `${what}: ${summary}${ignored}; proposal ${id}, ${why}`, { detail });
  }

  /** The live proposal for `req`: found, created, or renewed when the stored one expired. */
  async #ensureProposal(consensus: Consensus, req: ApprovalRequest, id: string): Promise<Proposal> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const stored = await consensus.proposal(id);
      const now = this.#now();
      if (stored !== undefined && proposalExpiresMs(stored) > now) return stored;
      const fresh = newProposal(req, { now, ttlMs: this.#ttlMs, proposer: this.#proposer });
      // Another agent may create or renew it at the same moment: then read theirs.
      if (await consensus.propose(fresh, stored === undefined ? {} : { replacing: stored })) return fresh;
    }
    throw new HotPatchError('IO', `proposal ${id} keeps changing under us; giving up this round`);
  }

  /** `promise`, unless the deadline passes or the signal aborts first. */
  async #until<T>(promise: Promise<T>, deadline: number, signal: AbortSignal | undefined): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    promise.catch(() => undefined); // if we stop waiting, a late rejection is not unhandled
    try {
      return await Promise.race([
        promise,
        new Promise<never>((_, reject) => {
          // Even a zero wait gives the store a moment to answer once.
          timer = setTimeout(() => reject(new Late()), Math.max(MIN_CALL_MS, deadline - this.#now()));
          onAbort = () => reject(new Late());
          signal?.addEventListener('abort', onAbort, { once: true });
        }),
      ]);
    } finally {
      clearTimeout(timer);
      if (onAbort !== undefined) signal?.removeEventListener('abort', onAbort);
    }
  }

  async #sleep(ms: number, signal: AbortSignal | undefined, setWake: (wake: () => void) => void): Promise<void> {
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal?.addEventListener('abort', done, { once: true });
      setWake(done);
    });
  }
}

function aborted(signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true;
}

function formatMs(ms: number): string {
  return ms >= 1000 ? `${Math.round(ms / 100) / 10} s` : `${ms} ms`;
}

function duration(value: unknown, fallback: number, field: string, min: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    throw new HotPatchError('INVALID', `${field} must be an integer number of milliseconds >= ${min}, got ${describe(value)}`);
  }
  return value;
}

import { HotPatchError } from '../../core/index.js';
import { APPROVER_KEYID, PROPOSAL_ID, countVotes, parseApprovers, proposalExpiresMs, signVoteWith } from '../../distributed/index.js';
import { parseCommandArgs, requireString } from '../args.js';
import { EXIT_OK, EXIT_REJECTED, UsageError } from '../cli-error.js';
import { printHelp, type Command } from '../command.js';
import { PKCS11_FLAGS, PKCS11_USAGE } from '../pkcs11-flags.js';
import { signingKeyOf, withSigner } from '../signing-key.js';
import { STORE_FLAGS, STORE_USAGE, withConsensus } from './propose.js';

export const approveCommand: Command = {
  name: 'approve',
  summary: 'sign and cast an approving vote on a proposal',
  usage: `hotpatch approve ${STORE_USAGE} --proposal ID --key DIR/KEYID.key [--keyid KEYID] [--json]
hotpatch approve ${STORE_USAGE} --proposal ID ${PKCS11_USAGE} --keyid KEYID [--json]

Signs a vote approving proposal ID with the private key (a key file, its algorithm
the key's own, or a key on a PKCS#11 token) and stores it under KEYID (default: the
key file's name without .key).
The vote names the proposal's patch, target, version, payload hash and expiry, so it
counts for that activation only. Voting twice changes nothing. Refuses an unknown or
expired proposal (exit 1). Whether the vote counts is decided by each agent against
its approvers list.`,
  async run(argv, out) {
    const { values, help } = parseCommandArgs(argv, {
      ...STORE_FLAGS,
      proposal: { type: 'string' },
      key: { type: 'string' },
      keyid: { type: 'string' },
      ...PKCS11_FLAGS,
    });
    if (help) return printHelp(out, this.usage);
    const id = requireString(values, 'proposal');
    if (!PROPOSAL_ID.test(id))
      throw new UsageError(`--proposal ${JSON.stringify(id)} is not a proposal id (p- and 32 hex digits, as printed by hotpatch propose)`);
    const key = await signingKeyOf(values);
    const keyid = key.keyid;
    if (!APPROVER_KEYID.test(keyid)) throw new UsageError(`key id ${JSON.stringify(keyid)} must be 1-128 of [A-Za-z0-9._:@-]; pass --keyid`);

    return withSigner(key, out.warn.bind(out), (signer) =>
      withConsensus(values, async (consensus) => {
        const proposal = await consensus.proposal(id);
        // Refusals are verdicts on the request (exit 1), whatever their code.
        if (proposal === undefined) return refuse(out, new HotPatchError('NOT_FOUND', `no proposal ${id} in the store (hotpatch proposals lists them)`));
        const now = Date.now();
        if (proposalExpiresMs(proposal) <= now) {
          return refuse(
            out,
            new HotPatchError('EXPIRED', `proposal ${id} (${proposal.patchId} ${proposal.version}) expired at ${proposal.expiresAt}; not voting`, {
              detail: { expiresAt: proposal.expiresAt },
            }),
          );
        }
        const vote = await signVoteWith(proposal, signer, keyid, { now });
        let outcome: 'cast' | 'already' | 'replaced' = 'cast';
        if (!(await consensus.vote(vote))) {
          // Our key id already has a vote here. If it is our own valid vote for this very
          // proposal, nothing changes; otherwise (a vote for an earlier instance of the
          // proposal, or something else stored under our id) it is replaced atomically.
          const existing = (await consensus.votes(id)).find((v) => v.keyid === keyid);
          const self = parseApprovers({ keys: { [keyid]: { alg: signer.publicKey.alg, public_key: signer.publicKey.toPem() } }, quorum: { threshold: 1 } });
          if (existing !== undefined && countVotes(proposal, [existing], self, { now, voterCount: 0 }).approved) {
            outcome = 'already';
          } else if (existing !== undefined && (await consensus.vote(vote, { replacing: existing }))) {
            outcome = 'replaced';
          } else if (existing === undefined && (await consensus.vote(vote))) {
            outcome = 'cast';
          } else {
            throw new HotPatchError('IO', `the vote of ${keyid} on ${id} changed while voting; run the command again`);
          }
        }
        const verb = { cast: 'voted', already: 'already voted', replaced: 'voted (replacing a stale vote)' }[outcome];
        out.line(`${verb}: approve ${proposal.patchId} ${proposal.target} ${proposal.version} as ${keyid} (${signer.publicKey.alg})`);
        out.line(`  proposal ${id}, open until ${proposal.expiresAt}`);
        if (out.json) out.success(`${verb} on ${id} as ${keyid}`, { proposal: id, keyid, alg: signer.publicKey.alg, outcome });
        return EXIT_OK;
      }),
    );
  },
};

function refuse(out: { failure(error: unknown): void }, error: HotPatchError): number {
  out.failure(error);
  return EXIT_REJECTED;
}

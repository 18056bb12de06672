import { HotPatchError } from '../../core/index.js';
import { countVotes, parseApprovers, proposalExpiresMs, type ApproversList } from '../../distributed/index.js';
import { readFileBounded } from '../../repo/index.js';
import { optionalString, parseCommandArgs } from '../args.js';
import { EXIT_OK, UsageError } from '../cli-error.js';
import { printHelp, type Command } from '../command.js';
import { STORE_FLAGS, STORE_USAGE, withConsensus } from './propose.js';

const MAX_APPROVERS_FILE = 1024 * 1024;

export const proposalsCommand: Command = {
  name: 'proposals',
  summary: 'list approval proposals and their votes',
  usage: `hotpatch proposals ${STORE_USAGE} [--approvers FILE] [--json]

Lists every proposal in the consensus store: patch, target, version, payload hash,
expiry and the votes stored for it. With --approvers FILE (the approvers list an
agent uses), also how many votes count, the quorum required, whether it is reached,
and why each other vote does not count.`,
  async run(argv, out) {
    const { values, help } = parseCommandArgs(argv, { ...STORE_FLAGS, approvers: { type: 'string' } });
    if (help) return printHelp(out, this.usage);
    const approversPath = optionalString(values, 'approvers');
    const approvers = approversPath === undefined ? undefined : await loadApprovers(approversPath);

    return withConsensus(values, async (consensus) => {
      const now = Date.now();
      const proposals = await consensus.proposals();
      const voterCount = approvers?.quorum.kind === 'ratio' ? await consensus.voterCount() : 0;
      const rows = [];
      for (const p of proposals) {
        const votes = await consensus.votes(p.id);
        const open = proposalExpiresMs(p) > now;
        const row: Record<string, unknown> = { ...p, status: open ? 'open' : 'expired', votes: votes.length, voters: votes.map((v) => v.keyid) };
        let line = `${p.id}  ${p.patchId} ${p.target} ${p.version}  ${open ? 'open until' : 'expired'} ${p.expiresAt}  ${votes.length} vote(s)`;
        let ignoredLines: string[] = [];
        if (approvers !== undefined) {
          const tally = countVotes(p, votes, approvers, { now, voterCount });
          Object.assign(row, { counted: tally.counted, required: tally.required, approved: tally.approved, ignored: tally.ignored });
          line += `, ${tally.counted.length} of ${tally.required} counting${tally.approved ? ': APPROVED' : ''}`;
          ignoredLines = tally.ignored.map((i) => `    ignored ${i.keyid}: ${i.reason}`);
        }
        out.line(line);
        out.line(`    ${p.payloadHash}, proposed by ${p.proposer || '(unknown)'} at ${p.createdAt}`);
        for (const l of ignoredLines) out.line(l);
        rows.push(row);
      }
      if (proposals.length === 0) out.line('no proposals');
      if (out.json) out.success(`${proposals.length} proposal(s)`, { proposals: rows, ...(approvers === undefined ? {} : { voterCount }) });
      return EXIT_OK;
    });
  },
};

/** The approvers list is the operator's own input: a broken one is a usage error (exit 2). */
async function loadApprovers(path: string): Promise<ApproversList> {
  try {
    return parseApprovers(await readFileBounded(path, MAX_APPROVERS_FILE, { noFollow: false, what: 'approvers list' }));
  } catch (error) {
    if (error instanceof HotPatchError && error.code !== 'IO') throw new UsageError(`--approvers ${path}: ${error.message}`, error.code, { cause: error });
    throw error;
  }
}

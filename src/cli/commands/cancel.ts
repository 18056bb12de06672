import { optionalString, parseCommandArgs, requireString } from '../args.js';
import { callAgent } from '../agent-client.js';
import { EXIT_OK } from '../cli-error.js';
import { printHelp, type Command } from '../command.js';
import { AGENT_FLAGS, AGENT_USAGE, agentOf } from './agent-flags.js';

/** `hotpatch cancel --plan-id ID`: end a plan that has not ended. */
export const cancelCommand: Command = {
  name: 'cancel',
  summary: 'end a plan that has not ended: a waiting one never runs',
  usage: `hotpatch cancel ${AGENT_USAGE} --plan-id ID [--reason TEXT] [--json]

Ends plan ID for good (failed, "cancelled: …"): a pending or waiting plan — say an apply a
freeze left waiting — never runs, not even at the unfreeze; a plan whose apply is running has
that apply aborted (back to the running version). An ended plan is refused (exit 1).`,
  async run(argv, out) {
    const { values, help } = parseCommandArgs(argv, { ...AGENT_FLAGS, 'plan-id': { type: 'string' }, reason: { type: 'string' } });
    if (help) return printHelp(out, this.usage);
    const planId = requireString(values, 'plan-id');
    const reason = optionalString(values, 'reason');
    const agent = await agentOf(values);
    const answer = await callAgent(agent, 'POST', '/v1/cancel', { planId, ...(reason === undefined ? {} : { reason }) });
    out.success(String(answer.message ?? `plan ${planId} cancelled`), answer);
    return EXIT_OK;
  },
};

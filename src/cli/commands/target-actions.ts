import { optionalString, parseCommandArgs, requireString } from '../args.js';
import { callAgent } from '../agent-client.js';
import { EXIT_OK } from '../cli-error.js';
import { printHelp, type Command } from '../command.js';
import { AGENT_FLAGS, AGENT_USAGE, agentOf } from './agent-flags.js';

/** promote / abort / rollback / freeze: one POST naming a target. */
function targetAction(
  name: string,
  summary: string,
  usageTail: string,
  help: string,
  body: (v: Record<string, unknown>) => { path: string; body: Record<string, unknown> },
): Command {
  return {
    name,
    summary,
    usage: `hotpatch ${name} ${AGENT_USAGE} --target T${usageTail} [--json]\n\n${help}`,
    async run(argv, out) {
      const { values, help: wantsHelp } = parseCommandArgs(argv, {
        ...AGENT_FLAGS,
        target: { type: 'string' },
        reason: { type: 'string' },
        unfreeze: { type: 'boolean' },
        to: { type: 'string' },
      });
      if (wantsHelp) return printHelp(out, this.usage);
      const agent = await agentOf(values);
      const request = body(values);
      const answer = await callAgent(agent, 'POST', request.path, request.body);
      out.success(String(answer.message ?? `${name} done`), answer);
      return EXIT_OK;
    },
  };
}

export const promoteCommand = targetAction(
  'promote',
  'finish a running or paused canary now',
  '',
  'Promotes the candidate of the running (or paused) canary of T at once.',
  (v) => ({
    path: '/v1/promote',
    body: { target: requireString(v, 'target') },
  }),
);

export const abortCommand = targetAction(
  'abort',
  'stop a running apply',
  ' [--reason TEXT]',
  'Stops the apply running on T; its canary is rolled back (or paused, per the plan).',
  (v) => {
    const reason = optionalString(v, 'reason');
    return { path: '/v1/abort', body: { target: requireString(v, 'target'), ...(reason === undefined ? {} : { reason }) } };
  },
);

export const rollbackCommand = targetAction(
  'rollback',
  'flip a target back to its previous version (or --to a retained one)',
  ' [--to VERSION] [--reason TEXT]',
  'Routes T back to its warm previous version (no reload; after a restart too); during a canary, aborts it.\n--to VERSION picks among the retained versions: previous, last good, the built-in one.',
  (v) => {
    const reason = optionalString(v, 'reason');
    const to = optionalString(v, 'to');
    return {
      path: '/v1/rollback',
      body: { target: requireString(v, 'target'), ...(reason === undefined ? {} : { reason }), ...(to === undefined ? {} : { to }) },
    };
  },
);

export const confirmCommand = targetAction(
  'confirm',
  'end the probation of the version T serves now: recorded good',
  ' [--reason TEXT]',
  'Ends the probation of the version T serves: it is recorded good (last good) and a restart keeps it.',
  (v) => {
    const reason = optionalString(v, 'reason');
    return { path: '/v1/confirm', body: { target: requireString(v, 'target'), ...(reason === undefined ? {} : { reason }) } };
  },
);

export const freezeCommand = targetAction(
  'freeze',
  'freeze (or --unfreeze) a target: no patch is applied while frozen',
  ' (--reason TEXT | --unfreeze)',
  'A frozen target refuses every apply (POLICY_DENIED) until unfrozen.',
  (v) => {
    const target = requireString(v, 'target');
    if (v.unfreeze === true) return { path: '/v1/unfreeze', body: { target } };
    return { path: '/v1/freeze', body: { target, reason: requireString(v, 'reason') } };
  },
);

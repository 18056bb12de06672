import { optionalString, parseCommandArgs } from '../args.js';
import { followEvents } from '../agent-client.js';
import { EXIT_OK, UsageError } from '../cli-error.js';
import { printHelp, type Command } from '../command.js';
import { AGENT_FLAGS, AGENT_HELP, AGENT_USAGE, agentOf } from './agent-flags.js';

export const eventsCommand: Command = {
  name: 'events',
  summary: "follow an agent's events as they happen",
  usage: `hotpatch events ${AGENT_USAGE} [--target T] [--count N] [--json]

Prints each event (one JSON object per line with --json) until N events were seen, until
interrupted, or until the reader of standard output goes away (hotpatch events | head -3).

${AGENT_HELP}`,
  async run(argv, out) {
    const { values, help } = parseCommandArgs(argv, { ...AGENT_FLAGS, target: { type: 'string' }, count: { type: 'string' } });
    if (help) return printHelp(out, this.usage);
    const agent = await agentOf(values);
    const countText = optionalString(values, 'count');
    const count = countText === undefined ? Infinity : Number(countText);
    if (!(count > 0) || (countText !== undefined && !Number.isInteger(count))) throw new UsageError('--count must be a positive integer');
    const controller = new AbortController();
    const stop = (): void => controller.abort();
    process.once('SIGINT', stop);
    // Nobody reads any more (a pipe closed): stop following, as an interrupt would.
    out.closed.addEventListener('abort', stop, { once: true });
    let seen = 0;
    try {
      await followEvents(
        agent,
        optionalString(values, 'target'),
        (e) => {
          seen += 1;
          if (out.json) out.raw(`${JSON.stringify(e)}\n`);
          else out.line(`${e.ts} ${e.type.padEnd(13)} ${e.target} ${e.version} ${e.id}${e.reason === '' ? '' : `: ${e.reason}`}`);
          if (seen >= count) controller.abort();
        },
        controller.signal,
      );
    } finally {
      process.off('SIGINT', stop);
      out.closed.removeEventListener('abort', stop);
    }
    out.success(`${seen} event(s)`, { events: seen });
    return EXIT_OK;
  },
};

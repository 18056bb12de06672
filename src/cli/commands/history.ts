import { isTargetName } from '../../core/index.js';
import { buildHistory, formatHistory } from '../../observability/index.js';
import { optionalString, parseCommandArgs, requireString } from '../args.js';
import { EXIT_OK, UsageError } from '../cli-error.js';
import { printHelp, type Command } from '../command.js';

export const historyCommand: Command = {
  name: 'history',
  summary: 'every version that ran on a target: when, by whom, how it ended',
  usage: `hotpatch history --target T --state DIR [--limit N] [--json]

Reads DIR/audit.log (verifying its chain; a broken chain is shown, and the rows built from
lines at or after the first bad one are marked [unverified]) and prints one row per version
episode of target T: version, patch, when it started serving (promoted, restored after a
restart, brought back by a rollback) and stopped, how it ended (serving, rolled back,
replaced, reverted at restart), who asked (credential, named token, declared actor) and the
reason — and one row per attempt that never served (refused: canary failed, load failed,
aborted …). Works with the agent down. --limit N keeps the N most recent rows; --json puts
every row, with its full reason, in the last line.`,
  async run(argv, out) {
    const { values, help } = parseCommandArgs(argv, { target: { type: 'string' }, state: { type: 'string' }, limit: { type: 'string' } });
    if (help) return printHelp(out, this.usage);
    const target = requireString(values, 'target');
    if (!isTargetName(target))
      throw new UsageError(`--target ${JSON.stringify(String(target).slice(0, 80))} is not a target name (dotted segments of [A-Za-z0-9_-])`);
    const state = requireString(values, 'state');
    const limitText = optionalString(values, 'limit');
    let limit: number | undefined;
    if (limitText !== undefined) {
      limit = /^[1-9][0-9]{0,8}$/.test(limitText) ? Number(limitText) : Number.NaN;
      if (Number.isNaN(limit)) throw new UsageError(`--limit must be a positive integer, got ${JSON.stringify(limitText.slice(0, 40))}`);
    }
    const history = await buildHistory(state, limit === undefined ? { target } : { target, limit });
    for (const line of formatHistory(history).trimEnd().split('\n')) out.line(line);
    const verdict = history.audit.ok ? 'audit log verified' : `AUDIT LOG NOT VERIFIED from line ${history.audit.firstBad?.line ?? '?'}`;
    out.success(`${history.rows.length} row(s) for ${history.target}; ${verdict}`, { history });
    return EXIT_OK;
  },
};

import { buildReport, formatReport } from '../../observability/index.js';
import { optionalString, parseCommandArgs, requireString } from '../args.js';
import { EXIT_OK, UsageError } from '../cli-error.js';
import { printHelp, type Command } from '../command.js';

export const reportCommand: Command = {
  name: 'report',
  summary: 'compliance report: what was applied, signers, approvals, outcomes',
  usage: `hotpatch report --state DIR [--since ISO] [--format md|json] [--json]

Reads DIR/audit.log (verifying its chain) and the signed manifests in DIR/manifests, and
prints per patch: target, version, payload hash, signers, approvals, timeline, outcome.`,
  async run(argv, out) {
    const { values, help } = parseCommandArgs(argv, { state: { type: 'string' }, since: { type: 'string' }, format: { type: 'string' } });
    if (help) return printHelp(out, this.usage);
    const format = optionalString(values, 'format') ?? 'md';
    if (format !== 'md' && format !== 'json') throw new UsageError(`--format must be md or json, got ${JSON.stringify(format)}`);
    const sinceText = optionalString(values, 'since');
    const since = sinceText === undefined ? undefined : new Date(sinceText);
    if (since !== undefined && Number.isNaN(since.getTime())) throw new UsageError(`--since ${sinceText} is not a date`);
    const report = await buildReport(requireString(values, 'state'), since === undefined ? {} : { since });
    if (out.json) out.success('report', { report });
    else {
      const text = formatReport(report, format);
      out.raw(text.endsWith('\n') ? text : `${text}\n`);
    }
    return EXIT_OK;
  },
};

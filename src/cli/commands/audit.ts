import { verifyAuditLog } from '../../observability/index.js';
import { HotPatchError } from '../../core/index.js';
import { parseCommandArgs, requireString } from '../args.js';
import { EXIT_OK, UsageError } from '../cli-error.js';
import { printHelp, type Command } from '../command.js';

export const auditCommand: Command = {
  name: 'audit',
  summary: "audit verify: check the hash chain of a state directory's audit log",
  usage: `hotpatch audit verify --state DIR [--json]

Checks every line of DIR/audit.log: it parses, its seq follows, it carries the SHA-256
of the line before, and the last line is the head recorded in DIR/state.json. An edited,
reordered, dropped, truncated or appended line is reported with its line number (exit 1).`,
  async run(argv, out) {
    const [sub, ...rest] = argv;
    if (sub === '--help' || sub === '-h') return printHelp(out, this.usage);
    if (sub !== 'verify') throw new UsageError(`audit takes the subcommand "verify", got ${JSON.stringify(sub ?? '')}`);
    const { values, help } = parseCommandArgs(rest, { state: { type: 'string' } });
    if (help) return printHelp(out, this.usage);
    const result = await verifyAuditLog(requireString(values, 'state'));
    if (!result.ok) {
      const bad = result.firstBad!;
      throw new HotPatchError('INVALID', `audit log broken at line ${bad.line}: ${bad.reason}`, { detail: { lines: result.lines, firstBad: bad } });
    }
    out.success(`audit OK: ${result.lines} line(s), head ${result.head ?? '(empty)'}`, { lines: result.lines, head: result.head });
    return EXIT_OK;
  },
};

#!/usr/bin/env node
import { pathToFileURL } from 'node:url';
import { realpathSync } from 'node:fs';
import { EXIT_OK, UsageError, exitCodeFor } from './cli-error.js';
import type { Command } from './command.js';
import { demoCommand } from './demo/demo.js';
import { keygenCommand } from './commands/keygen.js';
import { packCommand } from './commands/pack.js';
import { signCommand } from './commands/sign.js';
import { verifyCommand } from './commands/verify.js';
import { statusCommand } from './commands/status.js';
import { applyCommand } from './commands/apply.js';
import { abortCommand, freezeCommand, promoteCommand, rollbackCommand } from './commands/target-actions.js';
import { eventsCommand } from './commands/events.js';
import { auditCommand } from './commands/audit.js';
import { reportCommand } from './commands/report.js';
import { proposeCommand } from './commands/propose.js';
import { approveCommand } from './commands/approve.js';
import { proposalsCommand } from './commands/proposals.js';
import { fleetCommand } from './commands/fleet.js';
import { Output, type OutputStreams } from './output.js';

const COMMANDS: readonly Command[] = [
  keygenCommand,
  packCommand,
  signCommand,
  verifyCommand,
  statusCommand,
  applyCommand,
  promoteCommand,
  abortCommand,
  rollbackCommand,
  freezeCommand,
  eventsCommand,
  auditCommand,
  reportCommand,
  fleetCommand,
  proposeCommand,
  approveCommand,
  proposalsCommand,
  demoCommand,
];

export function usage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return `hotpatch — signed, zero-downtime hot patches for Node.js services

Usage: hotpatch <command> [options]   (hotpatch <command> --help for details)

Commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join('\n')}

Every command takes --json: the last line of standard output is then one JSON object
{"ok": true|false, "code": "...", "message": "...", ...}.
Exit status: 0 success, 1 patch rejected, 2 usage error, 3 operational error.`;
}

/** Runs one command line; returns the exit status (never calls process.exit). */
export async function runCli(argv: string[], streams?: OutputStreams): Promise<number> {
  const out = new Output(argv.includes('--json'), streams);
  const [name, ...rest] = argv;
  try {
    if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
      if (name === undefined) throw new UsageError('no command given');
      out.line(usage());
      if (out.json) out.success('usage', { usage: usage() });
      return EXIT_OK;
    }
    if (name === '--json' && rest.length === 0) throw new UsageError('no command given');
    const command = COMMANDS.find((c) => c.name === name);
    if (command === undefined) throw new UsageError(`unknown command ${JSON.stringify(name)} (commands: ${COMMANDS.map((c) => c.name).join(', ')})`);
    return await command.run(rest, out);
  } catch (error) {
    out.failure(error);
    if (error instanceof UsageError && name === undefined) process.stderr.write(`\n${usage()}\n`);
    return exitCodeFor(error);
  }
}

function invokedDirectly(): boolean {
  const entry = process.argv[1];
  if (entry === undefined) return false;
  try {
    return import.meta.url === pathToFileURL(realpathSync(entry)).href;
  } catch {
    // argv[1] may name something that is not a file (e.g. `node -e`): then we were imported.
    return false;
  }
}

if (invokedDirectly()) {
  const status = await runCli(process.argv.slice(2));
  process.exitCode = status;
}

#!/usr/bin/env node
import { pathToFileURL } from 'node:url';
import { realpathSync } from 'node:fs';
import { EXIT_OK, UsageError, exitCodeFor } from './cli-error.js';
import type { Command } from './command.js';
import { formatTable } from './help-format.js';
import { Output, type OutputStreams } from './output.js';

/**
 * Commands load on demand: `hotpatch verify` must not pay for the agent, etcd and metrics
 * modules at start-up (they cost about 120 ms of imports).
 */
const COMMANDS: readonly { name: string; load: () => Promise<Command> }[] = [
  { name: 'keygen', load: async () => (await import('./commands/keygen.js')).keygenCommand },
  { name: 'pack', load: async () => (await import('./commands/pack.js')).packCommand },
  { name: 'sign', load: async () => (await import('./commands/sign.js')).signCommand },
  { name: 'verify', load: async () => (await import('./commands/verify.js')).verifyCommand },
  { name: 'timestamp', load: async () => (await import('./commands/timestamp.js')).timestampCommand },
  { name: 'index', load: async () => (await import('./commands/index-command.js')).indexCommand },
  { name: 'serve', load: async () => (await import('./commands/serve.js')).serveCommand },
  { name: 'trust', load: async () => (await import('./commands/trust.js')).trustCommand },
  { name: 'status', load: async () => (await import('./commands/status.js')).statusCommand },
  { name: 'apply', load: async () => (await import('./commands/apply.js')).applyCommand },
  { name: 'promote', load: async () => (await import('./commands/target-actions.js')).promoteCommand },
  { name: 'abort', load: async () => (await import('./commands/target-actions.js')).abortCommand },
  { name: 'rollback', load: async () => (await import('./commands/target-actions.js')).rollbackCommand },
  { name: 'freeze', load: async () => (await import('./commands/target-actions.js')).freezeCommand },
  { name: 'confirm', load: async () => (await import('./commands/target-actions.js')).confirmCommand },
  { name: 'cancel', load: async () => (await import('./commands/cancel.js')).cancelCommand },
  { name: 'events', load: async () => (await import('./commands/events.js')).eventsCommand },
  { name: 'audit', load: async () => (await import('./commands/audit.js')).auditCommand },
  { name: 'report', load: async () => (await import('./commands/report.js')).reportCommand },
  { name: 'history', load: async () => (await import('./commands/history.js')).historyCommand },
  { name: 'fleet', load: async () => (await import('./commands/fleet.js')).fleetCommand },
  { name: 'propose', load: async () => (await import('./commands/propose.js')).proposeCommand },
  { name: 'approve', load: async () => (await import('./commands/approve.js')).approveCommand },
  { name: 'proposals', load: async () => (await import('./commands/proposals.js')).proposalsCommand },
  { name: 'demo', load: async () => (await import('./demo/demo.js')).demoCommand },
];

export async function usage(): Promise<string> {
  const commands = await Promise.all(COMMANDS.map((c) => c.load()));
  return `hotpatch — signed, zero-downtime hot patches for Node.js services

Usage: hotpatch <command> [options]   (hotpatch <command> --help for details)

Commands:
${formatTable(commands.map((c): [string, string] => [c.name, c.summary]))}

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
      const text = await usage();
      out.line(text);
      if (out.json) out.success('usage', { usage: text });
      return EXIT_OK;
    }
    if (name === '--json' && rest.length === 0) throw new UsageError('no command given');
    const entry = COMMANDS.find((c) => c.name === name);
    if (entry === undefined) throw new UsageError(`unknown command ${JSON.stringify(name)} (commands: ${COMMANDS.map((c) => c.name).join(', ')})`);
    return await (await entry.load()).run(rest, out);
  } catch (error) {
    out.failure(error);
    if (error instanceof UsageError && name === undefined) out.note(`\n${await usage()}\n`);
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

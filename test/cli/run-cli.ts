import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';

export const CLI = resolve('dist/src/cli/main.js');

export interface CliResult {
  status: number;
  stdout: string;
  stderr: string;
  /** The JSON object on the last line of stdout, when there is one. */
  json: Record<string, unknown> | undefined;
}

/** Runs the real `hotpatch` binary in a child process. */
export function hotpatch(args: string[], options: { cwd?: string } = {}): CliResult {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', cwd: options.cwd, timeout: 60_000 });
  const lines = r.stdout.trimEnd().split('\n');
  let json: Record<string, unknown> | undefined;
  try {
    json = JSON.parse(lines[lines.length - 1] ?? '') as Record<string, unknown>;
  } catch {
    json = undefined; // not --json output: callers that need it assert on `json` themselves
  }
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr, json };
}

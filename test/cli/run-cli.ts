import { spawn, spawnSync } from 'node:child_process';
import { resolve } from 'node:path';

export const CLI = resolve('dist/src/cli/main.js');

export interface CliResult {
  status: number;
  stdout: string;
  stderr: string;
  /** The JSON object on the last line of stdout, when there is one. */
  json: Record<string, unknown> | undefined;
}

/** Runs the real `hotpatch` binary in a child process (`env` replaces the environment when given). */
export function hotpatch(args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): CliResult {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', cwd: options.cwd, env: options.env ?? process.env, timeout: 60_000 });
  const lines = r.stdout.trimEnd().split('\n');
  let json: Record<string, unknown> | undefined;
  try {
    json = JSON.parse(lines[lines.length - 1] ?? '') as Record<string, unknown>;
  } catch {
    json = undefined; // not --json output: callers that need it assert on `json` themselves
  }
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr, json };
}

/**
 * The same, without blocking this process's event loop: for tests whose agent runs in this
 * process (a spawnSync would stop it from answering).
 */
export function hotpatchAsync(args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], cwd: options.cwd, env: options.env ?? process.env });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (status) => {
      const lines = stdout.trimEnd().split('\n');
      let json: Record<string, unknown> | undefined;
      try {
        json = JSON.parse(lines[lines.length - 1] ?? '') as Record<string, unknown>;
      } catch {
        json = undefined;
      }
      resolveRun({ status: status ?? -1, stdout, stderr, json });
    });
  });
}

/** The environment without anything that names an agent or a config file (HOME is `home`). */
export function cleanEnv(home: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, HOME: home, ...extra };
  for (const name of ['HOTPATCH_AGENT', 'HOTPATCH_TOKEN_FILE', 'XDG_CONFIG_HOME']) if (!(name in extra)) delete env[name];
  return env;
}

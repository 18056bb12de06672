/*
 * Runs a node script in a child process without blocking this process's event loop (unlike
 * spawnSync), capturing its output. `hangGuardMs` only stops a child that hangs for good (it is
 * killed and the result says so); it is not a time limit anything is judged by.
 */
import { spawn } from 'node:child_process';

export interface NodeRun {
  /** Exit status, or null when the child was killed by a signal. */
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** The child was killed by the hang guard. */
  hung: boolean;
  /** The JSON object on the last line of stdout, when there is one (`--json` output). */
  json: Record<string, unknown> | undefined;
}

export function lastJsonLine(stdout: string): Record<string, unknown> | undefined {
  const lines = stdout.trimEnd().split('\n');
  try {
    const value: unknown = JSON.parse(lines[lines.length - 1] ?? '');
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

export function runNode(args: readonly string[], options: { cwd?: string; hangGuardMs?: number } = {}): Promise<NodeRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...args], { cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let hung = false;
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (d: string) => (stdout += d));
    child.stderr.on('data', (d: string) => (stderr += d));
    const guard =
      options.hangGuardMs === undefined
        ? undefined
        : setTimeout(() => {
            hung = true;
            child.kill('SIGKILL');
          }, options.hangGuardMs);
    child.once('error', (error) => {
      if (guard !== undefined) clearTimeout(guard);
      reject(new Error(`cannot run node ${args.join(' ')}: ${error.message}`));
    });
    child.once('close', (status, signal) => {
      if (guard !== undefined) clearTimeout(guard);
      resolve({ status, signal, stdout, stderr, hung, json: lastJsonLine(stdout) });
    });
  });
}

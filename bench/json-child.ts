/*
 * Benchmarks that measure in a fresh process (a clean heap and JIT, or pinned to one CPU)
 * start it here and read back the one `RESULT <json>` line it prints.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';

/** `taskset`, when the machine has it (util-linux), to pin a child to one CPU. */
export const TASKSET = ['/usr/bin/taskset', '/bin/taskset'].find((p) => existsSync(p));

/**
 * Runs `script` in a fresh node (with `nodeFlags`, pinned to `cpu` when given) and returns
 * what it printed on its `RESULT <json>` line; rejects with its stderr when it fails.
 */
export function runJsonChild<T>(script: string, args: readonly string[], options: { nodeFlags?: readonly string[]; cpu?: number } = {}): Promise<T> {
  return new Promise((resolvePromise, reject) => {
    const node = [...(options.nodeFlags ?? []), script, ...args];
    const proc =
      options.cpu === undefined || TASKSET === undefined
        ? spawn(process.execPath, node, { stdio: ['ignore', 'pipe', 'pipe'] })
        : spawn(TASKSET, ['-c', String(options.cpu), process.execPath, ...node], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    proc.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    proc.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    proc.on('error', reject);
    proc.on('close', (code) => {
      const line = out.split('\n').find((l) => l.startsWith('RESULT '));
      if (code !== 0 || line === undefined) reject(new Error(`child ${args.join(' ')} exited with ${code}: ${err.trim()}`));
      else resolvePromise(JSON.parse(line.slice('RESULT '.length)) as T);
    });
  });
}

/*
 * A long-running `hotpatch fleet …` command as a real process (`node dist/src/cli/main.js`):
 * its standard output read as JSON lines, waited on line by line, signalled like an operator
 * or a service manager would.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { collectJsonLines, type JsonLine } from '../support/json-lines.js';
import { withDeadline } from '../support/wait.js';
import { CLI } from '../cli/run-cli.js';

/** Only stops a test that would hang for good: never what anything is judged by. */
const HANG_GUARD_MS = 60_000;

export class CliProcess {
  readonly lines: JsonLine[] = [];
  stdout = '';
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly #child: ChildProcess;
  #waiters: (() => void)[] = [];
  #done = false;

  constructor(
    readonly name: string,
    args: string[],
  ) {
    this.#child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.#child.stdout!.on('data', (d: Buffer) => (this.stdout += d.toString()));
    collectJsonLines(this.#child.stdout!, this.lines, () => this.#wake());
    this.#child.stderr!.setEncoding('utf8').on('data', (d: string) => (this.stderr += d));
    this.exited = new Promise((resolve) => {
      this.#child.once('close', (code, signal) => {
        this.#done = true;
        this.#wake();
        resolve({ code, signal });
      });
    });
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  /** Resolves with the first line (from the start) that `match` accepts; fails if the process ends without one. */
  async line(what: string, match: (line: JsonLine) => boolean): Promise<JsonLine> {
    const find = async (): Promise<JsonLine> => {
      for (;;) {
        const found = this.lines.find(match);
        if (found !== undefined) return found;
        if (this.#done) throw new Error(`${this.name} ended without ${what}:\n${this.stdout}\n${this.stderr}`);
        await new Promise<void>((resolve) => this.#waiters.push(resolve));
      }
    };
    return withDeadline(find(), HANG_GUARD_MS, `${this.name}: ${what} (so far:\n${this.stdout}\n${this.stderr})`);
  }

  /** Resolves with the first text output (stdout) for which `match` holds. */
  async text(what: string, match: (stdout: string) => boolean): Promise<string> {
    const find = async (): Promise<string> => {
      for (;;) {
        if (match(this.stdout)) return this.stdout;
        if (this.#done) throw new Error(`${this.name} ended without ${what}:\n${this.stdout}\n${this.stderr}`);
        await new Promise<void>((resolve) => this.#waiters.push(resolve));
      }
    };
    return withDeadline(find(), HANG_GUARD_MS, `${this.name}: ${what}`);
  }

  kill(signal: NodeJS.Signals): void {
    this.#child.kill(signal);
  }

  /** Sends `signal` and resolves with the exit status once the process has ended. */
  async stop(signal: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (!this.#done) this.#child.kill(signal);
    return withDeadline(this.exited, HANG_GUARD_MS, `${this.name} to exit after ${signal}`);
  }
}

/** `etcd://127.0.0.1:A,127.0.0.1:B,…` of a cluster's client URLs. */
export const etcdSpec = (endpoints: readonly string[]): string => `etcd://${endpoints.map((e) => e.replace(/^http:\/\//, '')).join(',')}`;

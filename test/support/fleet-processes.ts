/*
 * Separate OS processes for the fleet tests: service processes (fleet-host.ts) that join the
 * fleet through `startAgent({ fleet })`, and `hotpatch fleet controller` processes — each
 * with its JSON-lines output collected, waited on by what it prints, and killed by the test.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { collectJsonLines, type JsonLine } from './json-lines.js';

/** What a service process (fleet-host.ts) is started with: one JSON argument. */
export interface HostConfig {
  stateDir: string;
  repository: string;
  trustStore: string;
  store: string;
  ring: number;
  agentId: string;
  /** The agent's private key file (`fleet.key`): its reports are signed (required when the trust store has an agents role). */
  key?: string;
  /** Fleet lease TTL and report polling (short in tests). */
  leaseTtlMs?: number;
  reportIntervalMs?: number;
}

/** The one target every service process declares (built-in SHA-256). */
export const HOST_TARGET = 'xps.crypto.hash.sha256';

const HERE = dirname(fileURLToPath(import.meta.url));
/** dist/src/cli/main.js: the `hotpatch` binary. */
export const CLI_MAIN = resolve(HERE, '..', '..', 'src', 'cli', 'main.js');
const HOST_MAIN = resolve(HERE, 'fleet-host.js');

/** One child process and what it printed. */
export interface Child {
  readonly name: string;
  readonly process: ChildProcess;
  readonly lines: JsonLine[];
  stderr(): string;
  /** Resolves with the first line `match` accepts (now or later); rejects if the process exits first. */
  line(match: (l: JsonLine) => boolean, what: string): Promise<JsonLine>;
  /** Resolves once its stderr (the last 8,000 characters kept) matches `pattern`; rejects if the process exits first. */
  warned(pattern: RegExp, what: string): Promise<void>;
  /** SIGKILL (a crash); resolves once it has exited. */
  kill(): Promise<void>;
  /** SIGTERM, then SIGKILL if it has not exited after `graceMs`; resolves once it has exited. */
  stop(graceMs?: number): Promise<void>;
  readonly exited: boolean;
}

const live = new Set<ChildProcess>();
let hooked = false;

function track(name: string, child: ChildProcess): Child {
  if (!hooked) {
    hooked = true;
    process.on('exit', () => {
      for (const c of live) c.kill('SIGKILL');
    });
  }
  live.add(child);
  const lines: JsonLine[] = [];
  let stderr = '';
  const waiters = new Set<() => void>();
  const wake = (): void => {
    for (const w of [...waiters]) w();
  };
  collectJsonLines(child.stdout!, lines, wake);
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    stderr = (stderr + d).slice(-8000);
    wake();
  });
  const exit = new Promise<void>((done) =>
    child.once('exit', () => {
      live.delete(child);
      wake();
      done();
    }),
  );
  const exited = (): boolean => child.exitCode !== null || child.signalCode !== null;
  const self: Child = {
    name,
    process: child,
    lines,
    stderr: () => stderr,
    line(match, what) {
      return new Promise((resolveLine, reject) => {
        const look = (): void => {
          const found = lines.find(match);
          if (found !== undefined) {
            waiters.delete(look);
            resolveLine(found);
          } else if (exited()) {
            waiters.delete(look);
            reject(new Error(`${name} exited (${child.exitCode ?? child.signalCode}) before ${what}: ${stderr.slice(-2000)}`));
          }
        };
        waiters.add(look);
        look();
      });
    },
    warned(pattern, what) {
      return new Promise((resolveWarning, reject) => {
        const look = (): void => {
          if (pattern.test(stderr)) {
            waiters.delete(look);
            resolveWarning();
          } else if (exited()) {
            waiters.delete(look);
            reject(new Error(`${name} exited (${child.exitCode ?? child.signalCode}) before ${what}: ${stderr.slice(-2000)}`));
          }
        };
        waiters.add(look);
        look();
      });
    },
    async kill() {
      if (!exited()) child.kill('SIGKILL');
      await exit;
    },
    async stop(graceMs = 10_000) {
      if (exited()) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exit;
      clearTimeout(timer);
    },
    get exited() {
      return exited();
    },
  };
  return self;
}

/** A service process that joins the fleet; resolves once it is ready (its agent started and joined). */
export async function startHost(config: HostConfig): Promise<Child> {
  const child = track(config.agentId, spawn(process.execPath, [HOST_MAIN, JSON.stringify(config)], { stdio: ['ignore', 'pipe', 'pipe'] }));
  await child.line((l) => l.event === 'ready', 'it was ready');
  return child;
}

/** `hotpatch fleet controller …` as its own process; resolves once it has started. */
export async function startControllerProcess(name: string, args: readonly string[]): Promise<Child> {
  const child = track(name, spawn(process.execPath, [CLI_MAIN, 'fleet', 'controller', ...args, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] }));
  await child.line((l) => l.event === 'started', 'it started');
  return child;
}

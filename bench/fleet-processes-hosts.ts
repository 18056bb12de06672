/*
 * The fleet-processes benchmark's service processes: each one test/support/fleet-host.ts (a
 * service that joins the fleet with `startAgent({ fleet })`), configured by one JSON argument,
 * its JSON lines collected with the moment each arrived here (performance.now()). Waits look
 * again at every line and every exit; a process that exits while the benchmark still needs it
 * fails every wait, now and later, with its stderr tail. `onInterrupt` kills everything and
 * removes the directories before the process exits on SIGINT / SIGTERM.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { HostConfig } from '../test/support/fleet-processes.js';
import { collectJsonLines, type JsonLine } from '../test/support/json-lines.js';
import { stopChild, tail, track } from './peer-processes.js';

/** dist/test/support/fleet-host.js. */
export const HOST_MAIN = fileURLToPath(new URL('../test/support/fleet-host.js', import.meta.url));

export interface Host {
  readonly config: HostConfig;
  readonly child: ChildProcess;
  readonly spawnedAt: number;
  readonly lines: JsonLine[];
  /** performance.now() when each line arrived (same index as `lines`). */
  readonly arrivals: number[];
  stderr: string;
}

/** A line `match` accepts and when it arrived, or undefined. */
export function lineOf(host: Host, match: (l: JsonLine) => boolean): { line: JsonLine; at: number } | undefined {
  const i = host.lines.findIndex(match);
  return i === -1 ? undefined : { line: host.lines[i]!, at: host.arrivals[i]! };
}

export class HostFleet {
  readonly hosts: Host[] = [];
  #stopping = false;
  #died: Error | undefined;
  readonly #waiters = new Set<() => void>();

  spawn(config: HostConfig): Host {
    const child = track(spawn(process.execPath, [HOST_MAIN, JSON.stringify(config)], { stdio: ['ignore', 'pipe', 'pipe'] }));
    const host: Host = { config, child, spawnedAt: performance.now(), lines: [], arrivals: [], stderr: '' };
    collectJsonLines(child.stdout!, host.lines, () => {
      const now = performance.now();
      while (host.arrivals.length < host.lines.length) host.arrivals.push(now);
      this.wake();
    });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      host.stderr = (host.stderr + d).slice(-8000);
    });
    child.once('error', (error) => this.#fail(new Error(`cannot start ${config.agentId}: ${error.message}`)));
    // 'close': after its output is read to the end, so the stderr tail is whole.
    child.once('close', (code, signal) => {
      if (!this.#stopping)
        this.#fail(new Error(`${config.agentId} exited (${code ?? signal}) during the benchmark; stderr: ${tail(host.stderr, 12) || '(empty)'}`));
    });
    this.hosts.push(host);
    return host;
  }

  #fail(error: Error): void {
    this.#died ??= error;
    this.wake();
  }

  /** Makes every wait look again (a line arrived, the controller wrote a state…). */
  wake(): void {
    for (const w of [...this.#waiters]) w();
  }

  /**
   * Resolves with `check()`'s first value other than undefined, looked at now and after every
   * `wake()`; rejects when a host died or after `timeoutMs` (saying what `missing()` says).
   */
  waitFor<T>(what: string, timeoutMs: number, check: () => T | undefined, missing: () => string = () => ''): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const end = (): void => {
        clearTimeout(timer);
        this.#waiters.delete(look);
      };
      const timer = setTimeout(() => {
        end();
        const detail = missing();
        reject(new Error(`${what}: not within ${timeoutMs} ms${detail === '' ? '' : ` (${detail})`}`));
      }, timeoutMs);
      const look = (): void => {
        if (this.#died !== undefined) {
          end();
          reject(new Error(`${what}: ${this.#died.message}`));
          return;
        }
        let value: T | undefined;
        try {
          value = check();
        } catch (error) {
          end();
          reject(error instanceof Error ? error : new Error(String(error)));
          return;
        }
        if (value !== undefined) {
          end();
          resolve(value);
        }
      };
      this.#waiters.add(look);
      look();
    });
  }

  /** Throws when a host died (between waits). */
  check(): void {
    if (this.#died !== undefined) throw this.#died;
  }

  /** SIGTERM to every host (a graceful close: the agent leaves the fleet), SIGKILL after 10 s. */
  async stop(): Promise<void> {
    this.#stopping = true;
    await Promise.all(this.hosts.map((h) => stopChild(h.child)));
  }

  /** At once, synchronously (an interrupt). */
  killAll(): void {
    this.#stopping = true;
    for (const h of this.hosts) if (h.child.exitCode === null && h.child.signalCode === null) h.child.kill('SIGKILL');
  }
}

/**
 * Until the returned function is called: on SIGINT / SIGTERM, runs `cleanup` (synchronous:
 * kill the children, remove the directories) and exits 130 / 143.
 */
export function onInterrupt(cleanup: () => void): () => void {
  const handler = (signal: NodeJS.Signals): void => {
    try {
      cleanup();
    } finally {
      process.exit(signal === 'SIGINT' ? 130 : 143);
    }
  };
  process.once('SIGINT', handler);
  process.once('SIGTERM', handler);
  return () => {
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
  };
}

/** Removes a directory at once (retrying while a just-killed process may still write in it). */
export function removeNow(dir: string): void {
  try {
    rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
  } catch {
    // best effort on the way out
  }
}

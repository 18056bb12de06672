/*
 * The peer-reload benchmark's child processes: every child it starts (services, wrk, pm2's
 * commands) is tracked and killed by an exit hook should the run be interrupted, along with
 * whatever else registered a cleanup (the pm2 daemon); running a command to its end; a free
 * loopback port for a service.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';

/** Only stops a command that hangs for good; nothing is judged by it. */
export const HANG_GUARD_MS = 120_000;

const live = new Set<ChildProcess>();
const cleanups = new Set<() => void>();
let exitHook = false;

function installExitHook(): void {
  if (exitHook) return;
  exitHook = true;
  process.on('exit', () => {
    for (const child of live) child.kill('SIGKILL');
    for (const cleanup of cleanups) cleanup();
  });
}

/** Runs `cleanup` (synchronously) when the process exits, after the tracked children are killed. */
export function atExit(cleanup: () => void): void {
  installExitHook();
  cleanups.add(cleanup);
}

export function track(child: ChildProcess): ChildProcess {
  installExitHook();
  live.add(child);
  child.once('exit', () => live.delete(child));
  return child;
}

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((r) => child.once('exit', () => r()));
}

/** SIGTERM, then SIGKILL after 10 s; resolves once it has exited. */
export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited(child);
  clearTimeout(timer);
}

export interface Ran {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function runCommand(command: string, args: readonly string[], env: NodeJS.ProcessEnv, hangGuardMs = HANG_GUARD_MS): Promise<Ran> {
  return new Promise((resolvePromise, reject) => {
    const child = track(spawn(command, [...args], { env, stdio: ['ignore', 'pipe', 'pipe'] }));
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const guard = setTimeout(() => child.kill('SIGKILL'), hangGuardMs);
    child.once('error', (error) => {
      clearTimeout(guard);
      reject(new Error(`cannot run ${command}: ${error.message}`));
    });
    child.once('close', (status) => {
      clearTimeout(guard);
      resolvePromise({ status, stdout, stderr });
    });
  });
}

/** The last lines of a command's output, on one line, for an error message. */
export const tail = (text: string, lines = 6): string => text.trim().split('\n').slice(-lines).join(' | ');

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => r());
  });
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  await new Promise((r) => server.close(r));
  if (port === 0) throw new Error('no free port on 127.0.0.1');
  return port;
}

/*
 * CPU-burning neighbours for tests and benchmarks: child `node` processes that spin a core
 * each, so the code under test runs on a machine as busy as a shared CI runner.
 *
 * Never leaked: `stop()` kills them (SIGKILL, then waits for their exit); a process-exit hook
 * kills any still running; and each burner also exits on its own when its IPC channel to the
 * parent closes (the parent died, however abruptly) or after `maxSeconds`.
 */
import { spawn, type ChildProcess } from 'node:child_process';

export interface CpuBurners {
  /** Process ids of the burners (for reports). */
  readonly pids: readonly number[];
  /** Kills every burner and resolves once all have exited. Safe to call more than once. */
  stop(): Promise<void>;
}

export interface CpuBurnerOptions {
  /** A burner exits by itself after this long, whatever happens to its parent (default 900). */
  maxSeconds?: number;
}

/**
 * The burner: spins in 25 ms slices and yields to its event loop in between, so that the
 * IPC channel's close ('disconnect') is noticed even though the process is busy.
 */
function burnerSource(maxSeconds: number): string {
  return `
const deadline = Date.now() + ${Math.round(maxSeconds * 1000)};
process.on('disconnect', () => process.exit(0));
let x = 1;
const burn = () => {
  const until = Date.now() + 25;
  while (Date.now() < until) for (let i = 0; i < 1000; i++) x = (Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) + i) | 0;
  if (Date.now() > deadline) process.exit(0);
  setImmediate(burn);
};
process.send('burning');
burn();
`;
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of live) child.kill('SIGKILL');
  });
}

function startOne(maxSeconds: number): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', burnerSource(maxSeconds)], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
    live.add(child);
    const onError = (error: Error): void => {
      live.delete(child);
      reject(new Error(`cannot start a CPU burner: ${error.message}`));
    };
    const onExit = (code: number | null, signal: NodeJS.Signals | null): void => {
      live.delete(child);
      reject(new Error(`a CPU burner exited before it started burning (code ${code}, signal ${signal})`));
    };
    child.once('error', onError);
    child.once('exit', onExit);
    child.once('message', () => {
      child.off('error', onError);
      child.off('exit', onExit);
      child.once('exit', () => live.delete(child));
      // Neither the child nor its channel keeps this process alive: if we exit, it follows.
      child.unref();
      child.channel?.unref();
      resolve(child);
    });
  });
}

function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    // Referenced again so that this process waits for the exit it is awaiting.
    child.ref();
    child.kill('SIGKILL');
  });
}

/** Starts `count` burners and resolves once each is spinning (no sleep: each says so over IPC). */
export async function startCpuBurners(count: number, options: CpuBurnerOptions = {}): Promise<CpuBurners> {
  installExitHook();
  const maxSeconds = options.maxSeconds ?? 900;
  const started = await Promise.allSettled(Array.from({ length: count }, () => startOne(maxSeconds)));
  const children = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed !== undefined) {
    await Promise.all(children.map(kill));
    throw failed.reason;
  }
  let stopped: Promise<void> | undefined;
  return {
    pids: children.map((c) => c.pid ?? -1),
    stop: () => (stopped ??= Promise.all(children.map(kill)).then(() => undefined)),
  };
}

import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { PROCESS_RUNTIME_MB, type ResolvedIsolation } from './limits.js';
import type { HostMessage, IsolateMessage } from './protocol.js';

/** The isolate's main module, beside this file (in dist: dist/src/installer/isolate/entry.js). */
const ENTRY = fileURLToPath(new URL('./entry.js', import.meta.url));

/** What a channel tells its owner: each message, and the isolate's end (once) with why it ended. */
export interface ChannelEvents {
  message(message: IsolateMessage): void;
  exit(reason: string): void;
}

/** One incarnation of an isolate: a worker thread or a child process, and the way to talk to it. */
export interface Channel {
  /** The worker's thread id or the child's pid. */
  readonly id: number;
  send(message: HostMessage): void;
  /** Ends it now, whatever it is doing (an infinite loop included); `exit` follows. */
  kill(): void;
  /** Whether it keeps the host's event loop alive (only while the host awaits an answer). */
  hold(held: boolean): void;
}

export function openChannel(settings: ResolvedIsolation, events: ChannelEvents): Channel {
  return settings.mode === 'worker' ? workerChannel(settings, events) : processChannel(settings, events);
}

function workerChannel(settings: ResolvedIsolation, events: ChannelEvents): Channel {
  const worker = new Worker(ENTRY, {
    resourceLimits: {
      maxOldGenerationSizeMb: settings.memoryMb,
      ...(settings.stackMb === undefined ? {} : { stackSizeMb: settings.stackMb }),
    },
  });
  let failure: string | undefined;
  worker.on('message', (message: IsolateMessage) => events.message(message));
  // An uncaught error in the worker (the payload threw from a timer, or ran out of heap: ERR_WORKER_OUT_OF_MEMORY); exit follows.
  worker.on('error', (error: Error & { code?: string }) => {
    failure ??= `failed: ${error.code === undefined ? '' : `${error.code}: `}${error.message}`;
  });
  worker.on('exit', (code) => events.exit(failure ?? `exited with code ${code}`));
  worker.unref();
  return {
    id: worker.threadId,
    send: (message) => worker.postMessage(message),
    kill: () => {
      void worker.terminate();
    },
    hold: (held) => (held ? worker.ref() : worker.unref()),
  };
}

function processChannel(settings: ResolvedIsolation, events: ChannelEvents): Channel {
  // RLIMIT_DATA caps every writable private mapping of the child (JS heap, buffers, malloc):
  // an allocation past it fails inside the child, never in the host. The JS heap gets what
  // the Node runtime itself does not need. `ulimit -d` counts KiB.
  const heapMb = settings.memoryMb - PROCESS_RUNTIME_MB;
  const argv = [
    ...(settings.stackMb === undefined ? [] : [`--stack-size=${Math.floor(settings.stackMb * 1024 * 0.9)}`]),
    `--max-old-space-size=${heapMb}`,
    ENTRY,
  ];
  // A larger JS stack needs a larger OS stack under it, or deep recursion would fault (`ulimit -s` counts KiB).
  const stack = settings.stackMb === undefined ? '' : ` && ulimit -s ${Math.ceil(settings.stackMb * 1024)}`;
  const child = spawn('/bin/sh', ['-c', `ulimit -d ${settings.memoryMb * 1024}${stack} && exec "$0" "$@"`, process.execPath, ...argv], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    serialization: 'advanced',
  });
  let ended = false;
  const end = (reason: string): void => {
    if (ended) return;
    ended = true;
    events.exit(reason);
  };
  child.on('message', (message: IsolateMessage) => events.message(message));
  child.on('error', (error) => end(`could not be started or signalled: ${error.message}`));
  child.on('exit', (code, signal) => end(signal === null ? `exited with code ${String(code)}` : `was killed by ${signal}`));
  const unref = (): void => {
    child.unref();
    (child.channel as { unref?: () => void } | null | undefined)?.unref?.();
  };
  unref();
  return {
    id: child.pid ?? -1,
    send: (message) => {
      // A send to a child that just died fails; its `exit` event is what reports the death.
      child.send(message, (error) => {
        if (error !== null && error !== undefined && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      });
    },
    kill: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
    hold: (held) => {
      if (!held) return unref();
      child.ref();
      (child.channel as { ref?: () => void } | null | undefined)?.ref?.();
    },
  };
}

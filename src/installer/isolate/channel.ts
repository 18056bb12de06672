import { spawn, type ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { MessageChannel, Worker } from 'node:worker_threads';
import { FrameReader, encodeFrame } from './frames.js';
import { PROCESS_RUNTIME_MB, type ResolvedIsolation } from './limits.js';
import { errorInfo, isolateMessage, type HostMessage, type IsolateMessage } from './protocol.js';

/** The isolate's main module, beside this file (in dist: dist/src/installer/isolate/entry.js). */
const ENTRY = fileURLToPath(new URL('./entry.js', import.meta.url));

/**
 * How long an ended isolate may take to exit before it is given up on (ms): a worker blocked
 * in a system call (execSync, a blocking read) cannot be interrupted by terminate().
 */
export const KILL_GRACE_MS = 2_000;

/** What a channel tells its owner: each well-formed message, and the isolate's end (once) with why it ended. */
export interface ChannelEvents {
  message(message: IsolateMessage): void;
  exit(reason: string): void;
}

/** One incarnation of an isolate: a worker thread or a child process, and the way to talk to it. */
export interface Channel {
  /** The worker's thread id or the child's pid. */
  readonly id: number;
  /** Throws (DataCloneError …) when the message cannot be cloned; nothing is sent then. */
  send(message: HostMessage): void;
  /** Ends it now, whatever it is doing (an infinite loop included); `exit` follows, at the latest after KILL_GRACE_MS. */
  kill(reason: string): void;
  /** Whether it keeps the host's event loop alive (only while the host awaits an answer). */
  hold(held: boolean): void;
}

/** The child processes alive, ended with the host: a child stuck in a loop never sees its channel close. */
const children = new Set<ChildProcess>();
let exitHookInstalled = false;

function killChildrenAtExit(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of children) child.kill('SIGKILL');
  });
}

/** Opens an isolate; throws when the thread or process cannot be created (EAGAIN under a thread or pid limit …). */
export function openChannel(settings: ResolvedIsolation, events: ChannelEvents): Channel {
  return settings.mode === 'worker' ? workerChannel(settings, events) : processChannel(settings, events);
}

/** Calls `exit` once: from the isolate's real end, or from the grace timer of a kill. */
function onceExit(events: ChannelEvents): { end(reason: string): void; ended(): boolean; graced(reason: string, kill: () => void): void } {
  let done = false;
  let grace: NodeJS.Timeout | undefined;
  const end = (reason: string): void => {
    clearTimeout(grace);
    if (done) return;
    done = true;
    events.exit(reason);
  };
  return {
    end,
    ended: () => done,
    graced(reason, kill) {
      if (done || grace !== undefined) return;
      kill();
      grace = setTimeout(
        () => end(`${reason}; it did not exit within ${KILL_GRACE_MS} ms of being ended (blocked in a system call?) and was given up on`),
        KILL_GRACE_MS,
      );
    },
  };
}

/** A message from the isolate: well-formed, or the isolate is ended for speaking outside the protocol. */
function receiver(events: ChannelEvents, kill: (reason: string) => void): (raw: unknown) => void {
  return (raw) => {
    const message = isolateMessage(raw);
    if (message === undefined) kill('sent a message outside the protocol on its channel (the patch wrote to it?)');
    else events.message(message);
  };
}

function workerChannel(settings: ResolvedIsolation, events: ChannelEvents): Channel {
  // A private port, not the worker's parentPort: whatever the patch posts on parentPort goes nowhere.
  const { port1, port2 } = new MessageChannel();
  const worker = new Worker(ENTRY, {
    workerData: { port: port2 },
    transferList: [port2],
    resourceLimits: {
      maxOldGenerationSizeMb: settings.memoryMb,
      ...(settings.stackMb === undefined ? {} : { stackSizeMb: settings.stackMb }),
    },
  });
  const exit = onceExit(events);
  let failure: string | undefined;
  let killReason: string | undefined;
  const kill = (reason: string): void => {
    killReason ??= reason;
    exit.graced(reason, () => void worker.terminate());
  };
  port1.on('message', receiver(events, kill));
  // An uncaught throw in the worker (the payload threw from a timer — anything, null included —
  // or ran out of heap: ERR_WORKER_OUT_OF_MEMORY); exit follows.
  worker.on('error', (error: unknown) => {
    const info = errorInfo(error);
    failure ??= `failed: ${info.code === undefined ? '' : `${info.code}: `}${info.message}`;
  });
  worker.on('exit', (code) => {
    port1.close();
    exit.end(killReason ?? failure ?? `exited with code ${code}`);
  });
  worker.unref();
  port1.unref();
  return {
    id: worker.threadId,
    send: (message) => port1.postMessage(message),
    kill,
    hold: (held) => {
      if (held) {
        worker.ref();
        port1.ref();
      } else {
        worker.unref();
        port1.unref();
      }
    },
  };
}

function processChannel(settings: ResolvedIsolation, events: ChannelEvents): Channel {
  // RLIMIT_DATA caps every writable private mapping of the child (JS heap, buffers, malloc,
  // thread stacks): an allocation past it fails inside the child, never in the host. The JS
  // heap gets what the Node runtime itself does not need. `ulimit` counts KiB.
  const heapMb = settings.memoryMb - PROCESS_RUNTIME_MB;
  const argv = [
    ...(settings.stackMb === undefined ? [] : [`--stack-size=${Math.floor(settings.stackMb * 1024 * 0.9)}`]),
    `--max-old-space-size=${heapMb}`,
    ENTRY,
  ];
  // A larger JS stack needs a larger OS stack under it, or deep recursion would fault.
  const stack = settings.stackMb === undefined ? '' : ` && ulimit -s ${Math.ceil(settings.stackMb * 1024)}`;
  const child = spawn('/bin/sh', ['-c', `ulimit -d ${settings.memoryMb * 1024}${stack} && exec "$0" "$@"`, process.execPath, ...argv], {
    // fd 3: the channel, a socket pair carrying frames the host parses itself (frames.ts).
    stdio: ['ignore', 'inherit', 'inherit', 'pipe'],
  });
  killChildrenAtExit();
  children.add(child);
  const socket = child.stdio[3] as Socket;
  const exit = onceExit(events);
  let killReason: string | undefined;
  const kill = (reason: string): void => {
    killReason ??= reason;
    exit.graced(reason, () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
  };
  const receive = receiver(events, kill);
  const reader = new FrameReader();
  socket.on('data', (chunk: Buffer) => {
    if (exit.ended() || killReason !== undefined) return;
    let values: unknown[];
    try {
      values = reader.push(chunk);
    } catch (error) {
      kill(`sent malformed data on its channel: ${errorInfo(error).message}`);
      return;
    }
    for (const value of values) receive(value);
  });
  // A write to a child that just died fails (EPIPE): its `exit` event reports the death (a
  // signal, an exit code). Only a child still running after a moment has really lost its channel.
  socket.on('error', () => {
    setTimeout(() => {
      if (child.exitCode === null && child.signalCode === null) kill('lost its channel');
    }, 500).unref();
  });
  child.on('error', (error) => {
    children.delete(child);
    exit.end(`could not be started or signalled: ${errorInfo(error).message}`);
  });
  child.on('exit', (code, signal) => {
    children.delete(child);
    socket.destroy();
    exit.end(killReason ?? (signal === null ? `exited with code ${String(code)}` : `was killed by ${signal}`));
  });
  child.unref();
  socket.unref();
  return {
    id: child.pid ?? -1,
    send: (message) => {
      socket.write(encodeFrame(message));
    },
    kill,
    hold: (held) => {
      if (held) {
        child.ref();
        socket.ref();
      } else {
        child.unref();
        socket.unref();
      }
    },
  };
}

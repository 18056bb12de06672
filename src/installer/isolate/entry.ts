/*
 * The main module of an isolate: a worker thread or a child process that runs one version of
 * one target. It loads the staged payload it is told to (esm by import(), native by
 * require()), runs init(ctx), then answers calls until the host ends it. Nothing here trusts
 * the payload: whatever it throws becomes an error reply, and whatever it does to its own
 * thread or process (loops, exits, crashes, writes to the channel) is the host's to notice
 * and contain.
 *
 * The channel: in a worker, a private MessagePort handed over in workerData (taken out of it
 * before the payload loads, so the payload cannot reach it; what it posts on parentPort goes
 * nowhere); in a child, fd 3 carrying length-prefixed V8 frames (frames.ts).
 */
import { createRequire } from 'node:module';
import { Socket } from 'node:net';
import { pathToFileURL } from 'node:url';
import { Worker, workerData, type MessagePort } from 'node:worker_threads';
import type { LoadedModule } from '../../core/index.js';
import { esmLoadedModule } from '../loaders.js';
import { FrameReader, encodeFrame } from './frames.js';
import { HOOK_INDEX, HOOK_NAMES, asBuffer, errorInfo, type CallRequest, type HostMessage, type IsolateMessage, type LoadRequest } from './protocol.js';

type AnyFunction = (...args: unknown[]) => unknown;

const port = (workerData as { port?: MessagePort } | null)?.port;
let send: (message: IsolateMessage) => void;

if (port !== undefined) {
  (workerData as { port?: MessagePort }).port = undefined;
  send = (message) => port.postMessage(message);
  port.on('message', onMessage);
} else {
  const socket = new Socket({ fd: 3, readable: true, writable: true });
  const reader = new FrameReader();
  send = (message) => {
    socket.write(encodeFrame(message));
  };
  socket.on('data', (chunk: Buffer) => {
    for (const message of reader.push(chunk)) onMessage(message as HostMessage);
  });
  // The host went away (it exited, or closed the channel): so does this child.
  socket.on('close', () => process.exit(0));
  socket.on('error', () => process.exit(0));
  // An uncaught error ends the child; the host is told why first (else it sees only "code 1").
  process.on('uncaughtException', (error) => {
    try {
      send({ t: 'fatal', message: `an uncaught ${errorInfo(error).name}: ${errorInfo(error).message}` });
    } finally {
      process.exitCode = 70;
      socket.end(() => process.exit(70));
    }
  });
  watchParent();
}

/**
 * A child whose main thread is stuck in a loop never sees its channel close: a watchdog
 * thread checks that the parent is still the one that started it, and ends the child when the
 * host is gone (re-parented), so no orphan keeps a CPU busy.
 */
function watchParent(): void {
  const watchdog = new Worker(
    `const ppid = ${process.ppid};
     setInterval(() => { if (process.ppid !== ppid) process.kill(process.pid, 'SIGKILL'); }, 250);`,
    { eval: true },
  );
  watchdog.unref();
}

let loaded: LoadedModule | undefined;
let functions: AnyFunction[] = [];
let hooks: (AnyFunction | undefined)[] = [];

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const key of Object.keys(value)) deepFreeze((value as Record<string, unknown>)[key]);
  }
  return value;
}

/** A native addon's exports: an esm-like namespace when it exports `api`, else the exports are the api and hooks sit beside. */
function nativeNamespace(exports: unknown): Record<string, unknown> {
  if (typeof exports !== 'object' || exports === null) return { api: exports };
  const e = exports as Record<string, unknown>;
  if ('api' in e) return e;
  const namespace: Record<string, unknown> = { api: e };
  for (const name of [...HOOK_NAMES, 'init']) if (typeof e[name] === 'function') namespace[name] = e[name];
  return namespace;
}

async function load(request: LoadRequest): Promise<void> {
  let namespace: Record<string, unknown>;
  try {
    namespace =
      request.type === 'esm'
        ? ((await import(pathToFileURL(request.path).href)) as Record<string, unknown>)
        : nativeNamespace(createRequire(import.meta.url)(request.path));
  } catch (error) {
    throw new Error(`${request.type === 'esm' ? 'importing' : 'loading the native addon'} ${request.path} failed: ${errorInfo(error).message}`);
  }
  const { loaded: mod, init } = esmLoadedModule(namespace, request.requiredFunctions, request.subject);
  if (init !== undefined) {
    try {
      await init(deepFreeze(request.initContext));
    } catch (error) {
      throw new Error(`its init(ctx) threw: ${errorInfo(error).message}`);
    }
  }
  loaded = mod;
  const api = mod.api as Record<string, unknown>;
  functions = request.requiredFunctions.map((name) => (api[name] as AnyFunction).bind(api));
  hooks = [];
  for (const name of HOOK_NAMES) hooks[-HOOK_INDEX[name]] = mod[name] as AnyFunction | undefined;
}

function reply(id: number, ok: 0 | 1, value: unknown, started: number): void {
  const ms = performance.now() - started;
  try {
    send([id, ok, value, ms, ok === 1 && Buffer.isBuffer(value) ? 1 : 0]);
  } catch (error) {
    // The value cannot be cloned (a function, a class with private state …).
    send([
      id,
      0,
      { name: 'DataCloneError', message: `the ${ok === 1 ? 'result' : 'error'} cannot cross the isolation boundary: ${errorInfo(error).message}` },
      ms,
      0,
    ]);
  }
}

function call([id, index, args, buffers]: CallRequest): void {
  const started = performance.now();
  const fn = index >= 0 ? functions[index] : hooks[-index];
  if (loaded === undefined || fn === undefined) {
    reply(id, 0, { name: 'Error', message: loaded === undefined ? 'called before the payload was loaded' : `no function or hook at index ${index}` }, started);
    return;
  }
  // Buffers the host passed are Buffers here too (a worker's clone made them Uint8Arrays).
  if (buffers !== 0) for (let i = 0; i < args.length && i < 31; i++) if ((buffers & (1 << i)) !== 0) args[i] = asBuffer(args[i]);
  let result: unknown;
  let promised: boolean;
  try {
    result = fn(...args);
    // Inside the try: a hostile result's `then` getter may throw.
    promised = typeof (result as { then?: unknown } | null)?.then === 'function';
  } catch (error) {
    reply(id, 0, errorInfo(error), started);
    return;
  }
  if (promised) {
    Promise.resolve(result).then(
      (value) => reply(id, 1, value, started),
      (error: unknown) => reply(id, 0, errorInfo(error), started),
    );
  } else reply(id, 1, result, started);
}

function onMessage(message: HostMessage): void {
  if (Array.isArray(message)) return call(message);
  if (message.t === 'ping') return send({ t: 'pong' });
  load(message).then(
    () => send({ t: 'loaded', hooks: HOOK_NAMES.filter((name) => hooks[-HOOK_INDEX[name]] !== undefined) }),
    (error: unknown) => send({ t: 'load-failed', message: errorInfo(error).message }),
  );
}

/*
 * The main module of an isolate: a worker thread or a child process that runs one version of
 * one target. It loads the staged payload it is told to (esm by import(), native by
 * require()), runs init(ctx), then answers calls until the host ends it. Nothing here trusts
 * the payload: whatever it throws becomes an error reply, and whatever it does to its own
 * thread or process (loops, exits, crashes) is the host's to notice and contain.
 */
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { parentPort } from 'node:worker_threads';
import type { LoadedModule } from '../../core/index.js';
import { esmLoadedModule } from '../loaders.js';
import { HOOK_INDEX, HOOK_NAMES, errorInfo, type CallRequest, type HostMessage, type IsolateMessage, type LoadRequest } from './protocol.js';

type AnyFunction = (...args: unknown[]) => unknown;

const send: (message: IsolateMessage) => void =
  parentPort !== null
    ? (message) => parentPort!.postMessage(message)
    : (message) => {
        if (process.send === undefined) throw new Error('the isolate entry runs only as a worker thread or a forked child with an IPC channel');
        process.send(message);
      };

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
    send([id, ok, value, ms]);
  } catch (error) {
    // The value cannot be structured-cloned (a function, a class with private state …).
    send([
      id,
      0,
      { name: 'DataCloneError', message: `the ${ok === 1 ? 'result' : 'error'} cannot cross the isolation boundary: ${errorInfo(error).message}` },
      ms,
    ]);
  }
}

function call([id, index, args]: CallRequest): void {
  const started = performance.now();
  const fn = index >= 0 ? functions[index] : hooks[-index];
  if (loaded === undefined || fn === undefined) {
    reply(id, 0, { name: 'Error', message: loaded === undefined ? 'called before the payload was loaded' : `no function or hook at index ${index}` }, started);
    return;
  }
  let result: unknown;
  try {
    result = fn(...args);
  } catch (error) {
    reply(id, 0, errorInfo(error), started);
    return;
  }
  if (typeof (result as { then?: unknown } | null)?.then === 'function') {
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

if (parentPort !== null) parentPort.on('message', onMessage);
else {
  process.on('message', (message) => onMessage(message as HostMessage));
  // The host went away (it exited, or it killed the channel): so does this child.
  process.on('disconnect', () => process.exit(0));
}

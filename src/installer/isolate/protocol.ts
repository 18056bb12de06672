/*
 * The messages between the host and an isolate (a worker thread or a child process running
 * entry.ts). Calls are small arrays, the cheapest shape to structured-clone; control messages
 * are objects with a `t` tag. Both directions use structured clone (postMessage, or the IPC
 * channel with `serialization: 'advanced'`), so arguments and results may be anything it can
 * carry: plain data, typed arrays, Maps, Dates, errors — not functions.
 */

/** Negative call indexes name the version's lifecycle hooks; 0 … n-1 are the interface's functions. */
export const HOOK_INDEX = { selfTest: -1, dispose: -2, exportState: -3, importState: -4 } as const;
export type HookName = keyof typeof HOOK_INDEX;
export const HOOK_NAMES = Object.keys(HOOK_INDEX) as HookName[];

/** host → isolate: call function (or hook) `index` with `args`, answer under `id`. */
export type CallRequest = [id: number, index: number, args: unknown[]];
/** isolate → host: `ok` 1 with the value, or 0 with an `ErrorInfo`; `ms`: how long the call ran in the isolate. */
export type CallReply = [id: number, ok: 0 | 1, value: unknown, ms?: number];

/** host → isolate, once per incarnation: what to load and how to initialise it. */
export interface LoadRequest {
  t: 'load';
  path: string;
  type: 'esm' | 'native';
  requiredFunctions: readonly string[];
  initContext: Record<string, unknown>;
  subject: { target: string; version: string; patchId: string; sha256: string };
}

export interface Ping {
  t: 'ping';
}

/** isolate → host control messages. */
export type ControlReply = { t: 'loaded'; hooks: HookName[] } | { t: 'load-failed'; message: string } | { t: 'pong' };

export type HostMessage = CallRequest | LoadRequest | Ping;
export type IsolateMessage = CallReply | ControlReply;

/** An error as it crosses the boundary: its class name, message and `code` (a HotPatchError's, or a Node error's). */
export interface ErrorInfo {
  name: string;
  message: string;
  code?: string;
}

/** Longest error message carried across (the host bounds it again). */
const MAX_MESSAGE = 2048;

export function errorInfo(error: unknown): ErrorInfo {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    const info: ErrorInfo = { name: error.name, message: error.message.slice(0, MAX_MESSAGE) };
    if (typeof code === 'string') info.code = code;
    return info;
  }
  return { name: 'Error', message: `a non-Error value was thrown: ${String(error).slice(0, 200)}` };
}

/** The error a caller sees for an `ErrorInfo`: same name, message and code as thrown in the isolate. */
export function errorFromInfo(value: unknown): Error {
  const info = (typeof value === 'object' && value !== null ? value : {}) as Partial<ErrorInfo>;
  const error = new Error(typeof info.message === 'string' ? info.message : 'the isolate reported an error without a message');
  if (typeof info.name === 'string') error.name = info.name;
  if (typeof info.code === 'string') (error as Error & { code?: string }).code = info.code;
  return error;
}

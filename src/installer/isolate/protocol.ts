/*
 * The messages between the host and an isolate (a worker thread or a child process running
 * entry.ts). Calls are small arrays, the cheapest shape to clone; control messages are objects
 * with a `t` tag. Workers talk over a private MessagePort (structured clone), children over
 * fd 3 in length-prefixed V8 frames (frames.ts): arguments and results may be anything
 * structured clone carries (plain data, typed arrays, Map, Set, Date, errors — not functions).
 *
 * Nothing the isolate sends is trusted: the payload runs there and may write to the channel
 * itself. `isolateMessage` accepts exactly the shapes below; anything else ends the isolate.
 */

/** Negative call indexes name the version's lifecycle hooks; 0 … n-1 are the interface's functions. */
export const HOOK_INDEX = { selfTest: -1, dispose: -2, exportState: -3, importState: -4 } as const;
export type HookName = keyof typeof HOOK_INDEX;
export const HOOK_NAMES = Object.keys(HOOK_INDEX) as HookName[];

/**
 * host → isolate: call function (or hook) `index` with `args`, answer under `id`. `buffers`:
 * bit i set when args[i] is a Buffer (a worker's structured clone turns it into a plain
 * Uint8Array; the isolate makes it a Buffer view again). Top-level arguments only.
 */
export type CallRequest = [id: number, index: number, args: unknown[], buffers: number];
/** isolate → host: `ok` 1 with the value, or 0 with an `ErrorInfo`; `ms`: time the call ran inside; `buffer` 1: the value was a Buffer. */
export type CallReply = [id: number, ok: 0 | 1, value: unknown, ms: number, buffer: 0 | 1];

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

/** isolate → host control messages. `fatal`: an uncaught error is about to end a child (its message is the death's reason). */
export type ControlReply = { t: 'loaded'; hooks: HookName[] } | { t: 'load-failed'; message: string } | { t: 'pong' } | { t: 'fatal'; message: string };

export type HostMessage = CallRequest | LoadRequest | Ping;
export type IsolateMessage = CallReply | ControlReply;

/** An error as it crosses the boundary: its class name, message and `code` (a HotPatchError's, or a Node error's). */
export interface ErrorInfo {
  name: string;
  message: string;
  code?: string;
}

/** Longest message, name or code carried across; the host bounds them again. */
const MAX_TEXT = 2048;

/** A string of at most MAX_TEXT characters from anything, never throwing (a getter may throw, String() may throw). */
function text(read: () => unknown, fallback: string): string {
  try {
    const value = read();
    return (typeof value === 'string' ? value : String(value)).slice(0, MAX_TEXT);
  } catch {
    return fallback;
  }
}

/** What is carried of a thrown value: total — whatever was thrown (null, a proxy, an object with a throwing getter). */
export function errorInfo(error: unknown): ErrorInfo {
  if (error instanceof Error) {
    const info: ErrorInfo = { name: text(() => error.name, 'Error'), message: text(() => error.message, '(an error whose message could not be read)') };
    const code = text(() => (error as { code?: unknown }).code ?? '', '');
    if (code !== '' && code !== 'undefined') info.code = code;
    return info;
  }
  return { name: 'Error', message: `a non-Error value was thrown: ${text(() => error, '(a value that cannot be shown)').slice(0, 200)}` };
}

/** The standard error classes, rebuilt as themselves on the host's side (others arrive as Error with their name). */
const STANDARD_ERRORS: Record<string, ErrorConstructor> = { TypeError, RangeError, SyntaxError, ReferenceError, EvalError, URIError };

/** The error a caller sees for an `ErrorInfo`: same class (for the standard ones) or name, message and code as thrown in the isolate. */
export function errorFromInfo(value: unknown): Error {
  const info = (typeof value === 'object' && value !== null ? value : {}) as Partial<ErrorInfo>;
  const message = typeof info.message === 'string' ? info.message.slice(0, MAX_TEXT) : 'the isolate reported an error without a message';
  const Standard = typeof info.name === 'string' && Object.hasOwn(STANDARD_ERRORS, info.name) ? STANDARD_ERRORS[info.name]! : Error;
  const error = new Standard(message);
  if (typeof info.name === 'string') error.name = info.name.slice(0, 200);
  if (typeof info.code === 'string') (error as Error & { code?: string }).code = info.code.slice(0, 200);
  return error;
}

const isId = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v > 0;

/** `raw` as an IsolateMessage if it is exactly one of the shapes above, else undefined. */
export function isolateMessage(raw: unknown): IsolateMessage | undefined {
  if (Array.isArray(raw)) {
    const [id, ok, , ms, buffer] = raw as unknown[];
    const valid =
      raw.length === 5 && isId(id) && (ok === 0 || ok === 1) && typeof ms === 'number' && Number.isFinite(ms) && ms >= 0 && (buffer === 0 || buffer === 1);
    return valid ? (raw as CallReply) : undefined;
  }
  if (typeof raw !== 'object' || raw === null) return undefined;
  const m = raw as { t?: unknown; hooks?: unknown; message?: unknown };
  switch (m.t) {
    case 'pong':
      return { t: 'pong' };
    case 'loaded':
      return Array.isArray(m.hooks) && m.hooks.every((h) => (HOOK_NAMES as unknown[]).includes(h)) ? { t: 'loaded', hooks: m.hooks as HookName[] } : undefined;
    case 'load-failed':
    case 'fatal':
      return typeof m.message === 'string' ? { t: m.t, message: m.message.slice(0, MAX_TEXT) } : undefined;
    default:
      return undefined;
  }
}

/** Bit i set when values[i] is a Buffer (first 31 only). */
export function bufferMask(values: readonly unknown[]): number {
  let mask = 0;
  for (let i = 0; i < values.length && i < 31; i++) if (Buffer.isBuffer(values[i])) mask |= 1 << i;
  return mask;
}

/** A Uint8Array as a Buffer over the same bytes (no copy). */
export function asBuffer(value: unknown): unknown {
  return value instanceof Uint8Array && !Buffer.isBuffer(value) ? Buffer.from(value.buffer, value.byteOffset, value.byteLength) : value;
}

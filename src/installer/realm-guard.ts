/**
 * A payload runs in the host's own realm: it can add a property to `Object.prototype`,
 * replace `globalThis.fetch` or `JSON.stringify`, and every later `{}`, label set or request
 * of the host (and of this library) sees it. The guard records the own properties of the
 * shared built-ins before a payload runs, and afterwards names every change and undoes it, so
 * a patch that tampers with them is refused and the process goes on with the built-ins it had.
 *
 * It cannot undo everything (a property made non-configurable, an object frozen, state kept
 * in closures the payload captured) — it says so — and it cannot see what a payload does
 * through the filesystem or the network: the README's "What a payload can do" spells that out.
 */

/** Built-ins whose own properties are watched, by the name a change is reported under. */
function watchedObjects(): [string, object][] {
  const typedArray = Object.getPrototypeOf(Uint8Array.prototype) as object;
  const objects: [string, object][] = [
    ['Object.prototype', Object.prototype],
    ['Array.prototype', Array.prototype],
    ['Function.prototype', Function.prototype],
    ['String.prototype', String.prototype],
    ['Number.prototype', Number.prototype],
    ['Boolean.prototype', Boolean.prototype],
    ['Symbol.prototype', Symbol.prototype],
    ['BigInt.prototype', BigInt.prototype],
    ['Promise.prototype', Promise.prototype],
    ['Map.prototype', Map.prototype],
    ['Set.prototype', Set.prototype],
    ['WeakMap.prototype', WeakMap.prototype],
    ['RegExp.prototype', RegExp.prototype],
    ['Date.prototype', Date.prototype],
    ['Error.prototype', Error.prototype],
    ['ArrayBuffer.prototype', ArrayBuffer.prototype],
    ['TypedArray.prototype', typedArray],
    ['Uint8Array.prototype', Uint8Array.prototype],
    ['Buffer.prototype', Buffer.prototype],
    ['Object', Object],
    ['Array', Array],
    ['Promise', Promise],
    ['JSON', JSON],
    ['Math', Math],
    ['Reflect', Reflect],
  ];
  return objects;
}

/** Globals the host and this library rely on; each must stay the very value it was. */
const WATCHED_GLOBALS = [
  'Object', 'Array', 'Function', 'String', 'Number', 'Boolean', 'Symbol', 'BigInt', 'Promise', 'Map', 'Set',
  'WeakMap', 'RegExp', 'Date', 'Error', 'TypeError', 'RangeError', 'JSON', 'Math', 'Reflect', 'Proxy',
  'ArrayBuffer', 'Uint8Array', 'DataView', 'TextEncoder', 'TextDecoder', 'URL', 'URLSearchParams',
  'AbortController', 'AbortSignal', 'Buffer', 'process', 'console', 'crypto', 'performance', 'fetch',
  'Headers', 'Request', 'Response', 'setTimeout', 'clearTimeout', 'setInterval', 'clearInterval',
  'setImmediate', 'clearImmediate', 'queueMicrotask', 'structuredClone', 'EventTarget', 'Event',
  'WebAssembly', 'globalThis',
] as const;

interface Recorded {
  name: string;
  target: object;
  extensible: boolean;
  props: Map<PropertyKey, PropertyDescriptor>;
}

/** A watched global: what reading it gave, and how it was defined. */
interface RecordedGlobal {
  key: string;
  value: unknown;
  descriptor: PropertyDescriptor;
}

export interface RealmCheck {
  /** Each change found, e.g. `Object.prototype.polluted added`, `globalThis.fetch replaced`. */
  changes: string[];
  /** Changes that could not be undone (non-configurable now, or an object frozen). */
  permanent: string[];
}

const keyText = (key: PropertyKey): string => (typeof key === 'symbol' ? `[${key.description ?? 'symbol'}]` : String(key));

function sameDescriptor(a: PropertyDescriptor, b: PropertyDescriptor): boolean {
  return (
    a.value === b.value &&
    a.get === b.get &&
    a.set === b.set &&
    a.writable === b.writable &&
    a.enumerable === b.enumerable &&
    a.configurable === b.configurable
  );
}

function record(name: string, target: object): Recorded {
  const props = new Map<PropertyKey, PropertyDescriptor>();
  for (const key of Reflect.ownKeys(target)) {
    const d = Reflect.getOwnPropertyDescriptor(target, key);
    if (d !== undefined) props.set(key, d);
  }
  return { name, target, extensible: Reflect.isExtensible(target), props };
}

/** What the shared built-ins look like now; `check()` compares with it and undoes changes. */
export class RealmSnapshot {
  readonly #recorded: Recorded[];
  readonly #globals: RecordedGlobal[];

  private constructor(recorded: Recorded[], globals: RecordedGlobal[]) {
    this.#recorded = recorded;
    this.#globals = globals;
  }

  static capture(): RealmSnapshot {
    const g = globalThis as Record<string, unknown>;
    const globals: RecordedGlobal[] = [];
    for (const key of WATCHED_GLOBALS) {
      // Node defines some globals lazily (a getter that turns into a plain value on first
      // read): read first, so that first read is not taken for tampering later.
      const value = g[key];
      const descriptor = Reflect.getOwnPropertyDescriptor(globalThis, key);
      if (descriptor !== undefined) globals.push({ key, value, descriptor });
    }
    return new RealmSnapshot(
      watchedObjects().map(([name, target]) => record(name, target)),
      globals,
    );
  }

  /** Every change since the capture, each undone where it can be (see `RealmCheck`). */
  check(): RealmCheck {
    const out: RealmCheck = { changes: [], permanent: [] };
    for (const r of this.#recorded) compare(r, out);
    const g = globalThis as Record<string, unknown>;
    for (const { key, value, descriptor } of this.#globals) {
      // A global is judged by what reading it gives: the same object, however it is defined.
      if (g[key] === value) continue;
      const what = `globalThis.${key} replaced`;
      out.changes.push(what);
      if (!Reflect.defineProperty(globalThis, key, descriptor) || g[key] !== value) out.permanent.push(`${what} (cannot be undone)`);
    }
    return out;
  }
}

function compare(r: Recorded, out: RealmCheck): void {
  const { target, name } = r;
  if (r.extensible && !Reflect.isExtensible(target)) {
    out.changes.push(`${name} made non-extensible`);
    out.permanent.push(`${name} made non-extensible (cannot be undone)`);
  }
  for (const [key, before] of r.props) {
    const now = Reflect.getOwnPropertyDescriptor(target, key);
    if (now !== undefined && sameDescriptor(before, now)) continue;
    const what = `${name}.${keyText(key)} ${now === undefined ? 'deleted' : 'replaced'}`;
    out.changes.push(what);
    if (!Reflect.defineProperty(target, key, before)) out.permanent.push(`${what} (cannot be undone)`);
  }
  for (const key of Reflect.ownKeys(target)) {
    if (r.props.has(key)) continue;
    const what = `${name}.${keyText(key)} added`;
    out.changes.push(what);
    if (!Reflect.deleteProperty(target, key)) out.permanent.push(`${what} (cannot be undone)`);
  }
}

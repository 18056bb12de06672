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

import { EventEmitter } from 'node:events';
import { promises as fsPromises } from 'node:fs';
import { Readable, Writable } from 'node:stream';

// The guard's own tools, taken when this module loads — before any payload could replace
// them — and used by plain indexed loops only (no for…of, Map or Set, whose prototypes a
// payload could patch to blind the check).
const ownKeys = Reflect.ownKeys;
const getOwnPropertyDescriptor = Reflect.getOwnPropertyDescriptor;
const defineProperty = Reflect.defineProperty;
const deleteProperty = Reflect.deleteProperty;
const isExtensible = Reflect.isExtensible;
const getPrototypeOf = Reflect.getPrototypeOf;
const same = Object.is; // NaN is NaN (Number.NaN is a watched value)

/** Built-ins whose own properties are watched, by the name a change is reported under. */
function watchedObjects(): [string, object][] {
  const typedArray = getPrototypeOf(Uint8Array.prototype) as object;
  const arrayIterator = getPrototypeOf([][Symbol.iterator]()) as object;
  const iterator = getPrototypeOf(arrayIterator) as object;
  const generator = getPrototypeOf(function* () {}.prototype) as object;
  const asyncGenerator = getPrototypeOf(async function* () {}.prototype) as object;
  const asyncIterator = getPrototypeOf(asyncGenerator) as object;
  const objects: [string, object][] = [
    ['%IteratorPrototype%', iterator],
    ['%ArrayIteratorPrototype%', arrayIterator],
    ['%MapIteratorPrototype%', getPrototypeOf(new Map()[Symbol.iterator]()) as object],
    ['%SetIteratorPrototype%', getPrototypeOf(new Set()[Symbol.iterator]()) as object],
    ['%StringIteratorPrototype%', getPrototypeOf(''[Symbol.iterator]()) as object],
    ['%GeneratorPrototype%', generator],
    ['%AsyncIteratorPrototype%', asyncIterator],
    ['%AsyncGeneratorPrototype%', asyncGenerator],
    ['Date', Date],
    ['Number', Number],
    ['String', String],
    ['Symbol', Symbol],
    ['Map', Map],
    ['Set', Set],
    ['Function', Function],
    ['EventEmitter.prototype', EventEmitter.prototype],
    ['Readable.prototype', Readable.prototype],
    ['Writable.prototype', Writable.prototype],
    ['fs.promises', fsPromises],
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
  'Object',
  'Array',
  'Function',
  'String',
  'Number',
  'Boolean',
  'Symbol',
  'BigInt',
  'Promise',
  'Map',
  'Set',
  'WeakMap',
  'RegExp',
  'Date',
  'Error',
  'TypeError',
  'RangeError',
  'JSON',
  'Math',
  'Reflect',
  'Proxy',
  'ArrayBuffer',
  'Uint8Array',
  'DataView',
  'TextEncoder',
  'TextDecoder',
  'URL',
  'URLSearchParams',
  'AbortController',
  'AbortSignal',
  'Buffer',
  'process',
  'console',
  'crypto',
  'performance',
  'fetch',
  'Headers',
  'Request',
  'Response',
  'setTimeout',
  'clearTimeout',
  'setInterval',
  'clearInterval',
  'setImmediate',
  'clearImmediate',
  'queueMicrotask',
  'structuredClone',
  'EventTarget',
  'Event',
  'WebAssembly',
  'globalThis',
] as const;

interface Recorded {
  name: string;
  target: object;
  extensible: boolean;
  keys: PropertyKey[];
  descriptors: PropertyDescriptor[];
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
    same(a.value, b.value) &&
    a.get === b.get &&
    a.set === b.set &&
    a.writable === b.writable &&
    a.enumerable === b.enumerable &&
    a.configurable === b.configurable
  );
}

function record(name: string, target: object): Recorded {
  const keys = ownKeys(target);
  const descriptors: PropertyDescriptor[] = [];
  for (let i = 0; i < keys.length; i++) descriptors[i] = getOwnPropertyDescriptor(target, keys[i]!)!;
  return { name, target, extensible: isExtensible(target), keys, descriptors };
}

function indexOfKey(keys: readonly PropertyKey[], key: PropertyKey): number {
  for (let i = 0; i < keys.length; i++) if (keys[i] === key) return i;
  return -1;
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
    for (let i = 0; i < WATCHED_GLOBALS.length; i++) {
      const key = WATCHED_GLOBALS[i]!;
      // Node defines some globals lazily (a getter that turns into a plain value on first
      // read): read first, so that first read is not taken for tampering later.
      const value = g[key];
      const descriptor = getOwnPropertyDescriptor(globalThis, key);
      if (descriptor !== undefined) globals[globals.length] = { key, value, descriptor };
    }
    const watched = watchedObjects();
    const recorded: Recorded[] = [];
    for (let i = 0; i < watched.length; i++) recorded[i] = record(watched[i]![0], watched[i]![1]);
    return new RealmSnapshot(recorded, globals);
  }

  /** Every change since the capture, each undone where it can be (see `RealmCheck`). */
  check(): RealmCheck {
    const out: RealmCheck = { changes: [], permanent: [] };
    // The guard's own tools first: a payload may have replaced them to blind what follows.
    restoreTools(out);
    for (let i = 0; i < this.#recorded.length; i++) compare(this.#recorded[i]!, out);
    const g = globalThis as Record<string, unknown>;
    for (let i = 0; i < this.#globals.length; i++) {
      const { key, value, descriptor } = this.#globals[i]!;
      // A global is judged by what reading it gives: the same object, however it is defined.
      if (g[key] === value) continue;
      const what = `globalThis.${key} replaced`;
      note(out.changes, what);
      if (!defineProperty(globalThis, key, descriptor) || g[key] !== value) note(out.permanent, `${what} (cannot be undone)`);
    }
    return out;
  }
}

/** Appends without Array.prototype.push, which a payload may have replaced. */
function note(list: string[], text: string): void {
  list[list.length] = text;
}

/** Puts back the Reflect functions the guard took at load, if a payload replaced them. */
function restoreTools(out: RealmCheck): void {
  const tools: [string, unknown][] = [
    ['ownKeys', ownKeys],
    ['getOwnPropertyDescriptor', getOwnPropertyDescriptor],
    ['defineProperty', defineProperty],
    ['deleteProperty', deleteProperty],
    ['isExtensible', isExtensible],
    ['getPrototypeOf', getPrototypeOf],
  ];
  for (let i = 0; i < tools.length; i++) {
    const [key, original] = tools[i]!;
    const now = getOwnPropertyDescriptor(Reflect, key);
    if (now !== undefined && now.value === original) continue;
    note(out.changes, `Reflect.${key} replaced`);
    if (!defineProperty(Reflect, key, { value: original, writable: true, enumerable: false, configurable: true }))
      note(out.permanent, `Reflect.${key} replaced (cannot be undone)`);
  }
}

function compare(r: Recorded, out: RealmCheck): void {
  const { target, name } = r;
  if (r.extensible && !isExtensible(target)) {
    note(out.changes, `${name} made non-extensible`);
    note(out.permanent, `${name} made non-extensible (cannot be undone)`);
  }
  for (let i = 0; i < r.keys.length; i++) {
    const key = r.keys[i]!;
    const before = r.descriptors[i]!;
    const now = getOwnPropertyDescriptor(target, key);
    if (now !== undefined && sameDescriptor(before, now)) continue;
    const what = `${name}.${keyText(key)} ${now === undefined ? 'deleted' : 'replaced'}`;
    note(out.changes, what);
    if (!defineProperty(target, key, before)) note(out.permanent, `${what} (cannot be undone)`);
  }
  const current = ownKeys(target);
  for (let i = 0; i < current.length; i++) {
    const key = current[i]!;
    if (indexOfKey(r.keys, key) !== -1) continue;
    const what = `${name}.${keyText(key)} added`;
    note(out.changes, what);
    if (!deleteProperty(target, key)) note(out.permanent, `${what} (cannot be undone)`);
  }
}

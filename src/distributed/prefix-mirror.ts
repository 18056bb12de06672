import type { KvStore } from './kv-store.js';

/**
 * A local copy of every key under a prefix, kept current by one watch: what a fleet member
 * reads its rollouts from, and what a leading controller reads agents and rollouts from.
 *
 * Why not list the prefix when something changes: a controller of n agents hears about 2n
 * report writes per rollout, and listing (and parsing) all n agents for each of them is
 * O(n²) work and bytes per rollout; the copy takes each change once, parsed once.
 *
 * Start-up: the watch opens first, then one list fills the copy, so no change falls between
 * the two. A key the watch changed while the list was in flight keeps the watched value (the
 * listed one may be older). `resync()` lists again, as a safety net for changes a failed
 * watch lost; a listed value equal to the copy's is not parsed again, so a resync of an
 * unchanged prefix costs one list and no parsing.
 *
 * Values are parsed by the owner's `parse`; `undefined` means "ignore this key" (a document
 * that does not parse: the owner reports it, the copy remembers the text so the same bad
 * text is not reported again by every resync). `onChange` is called, synchronously, for every
 * key whose text changed (appeared, changed, vanished), with the parsed values before and after.
 */
export interface PrefixMirrorOptions<T> {
  parse(key: string, raw: string): T | undefined;
  onChange(key: string, before: T | undefined, after: T | undefined): void;
}

interface Entry<T> {
  raw: string;
  value: T | undefined;
}

export class PrefixMirror<T> {
  readonly #store: KvStore;
  readonly #prefix: string;
  readonly #options: PrefixMirrorOptions<T>;
  readonly #entries = new Map<string, Entry<T>>();
  /** Per list in flight: the keys the watch changed meanwhile (that list's copy of them may be older). */
  readonly #listsInFlight = new Set<Set<string>>();
  #stopWatch: (() => Promise<void>) | undefined;
  #stopped = false;

  constructor(store: KvStore, prefix: string, options: PrefixMirrorOptions<T>) {
    this.#store = store;
    this.#prefix = prefix;
    this.#options = options;
  }

  get prefix(): string {
    return this.#prefix;
  }

  /** Opens the watch, then fills the copy with one list. Throws (IO) when the store cannot be reached. */
  async start(): Promise<void> {
    this.#stopWatch = await this.#store.watch(this.#prefix, (event) => {
      if (this.#stopped) return;
      for (const changed of this.#listsInFlight) changed.add(event.key);
      this.#apply(event.key, event.type === 'put' ? event.value : undefined);
    });
    if (this.#stopped) {
      await this.stop();
      return;
    }
    await this.resync();
  }

  /** Lists the prefix again and brings the copy in line with it (see the class comment). */
  async resync(): Promise<void> {
    const changed = new Set<string>();
    this.#listsInFlight.add(changed);
    let kvs;
    try {
      kvs = await this.#store.list(this.#prefix);
    } finally {
      this.#listsInFlight.delete(changed);
    }
    if (this.#stopped) return;
    const present = new Set<string>();
    for (const kv of kvs) {
      present.add(kv.key);
      if (!changed.has(kv.key)) this.#apply(kv.key, kv.value);
    }
    for (const key of [...this.#entries.keys()]) {
      if (!present.has(key) && !changed.has(key)) this.#apply(key, undefined);
    }
  }

  /** Stops the watch; the copy stays readable but no longer changes. */
  async stop(): Promise<void> {
    this.#stopped = true;
    const stop = this.#stopWatch;
    this.#stopWatch = undefined;
    await stop?.();
  }

  get(key: string): T | undefined {
    return this.#entries.get(key)?.value;
  }

  /** The parsed values (keys that did not parse are left out), in no particular order. */
  *values(): IterableIterator<T> {
    for (const entry of this.#entries.values()) if (entry.value !== undefined) yield entry.value;
  }

  /** A put (`raw` set) or a delete (`raw` undefined) of one key, from the watch or a list. */
  #apply(key: string, raw: string | undefined): void {
    const before = this.#entries.get(key);
    if (raw === undefined) {
      if (before === undefined) return;
      this.#entries.delete(key);
      this.#options.onChange(key, before.value, undefined);
      return;
    }
    if (before?.raw === raw) return;
    const value = this.#options.parse(key, raw);
    this.#entries.set(key, { raw, value });
    this.#options.onChange(key, before?.value, value);
  }
}

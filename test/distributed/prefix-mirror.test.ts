import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { EmbeddedStore, type KvStore, type WatchEvent } from '../../src/distributed/index.js';
import { PrefixMirror } from '../../src/distributed/prefix-mirror.js';
import { waitFor } from '../support/wait.js';

let dir: string;
let seq = 0;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hotpatch-mirror-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A fresh store directory per test. */
const open = (): Promise<EmbeddedStore> => EmbeddedStore.open(join(dir, `s${++seq}`), { pollMs: 10 });

/** `base` with some of its methods replaced (the rest are its own). */
const wrap = (base: KvStore, methods: Partial<Pick<KvStore, 'list' | 'watch'>>): KvStore =>
  Object.create(base, Object.fromEntries(Object.entries(methods).map(([k, v]) => [k, { value: v }]))) as KvStore;

/** A mirror of `/m/` whose values are the raw texts, recording every change and every parse. */
function mirrorOf(store: KvStore): { mirror: PrefixMirror<string>; changes: [string, string | undefined][]; parsed: string[] } {
  const changes: [string, string | undefined][] = [];
  const parsed: string[] = [];
  const mirror = new PrefixMirror<string>(store, '/m/', {
    parse: (key, raw) => {
      parsed.push(key);
      return raw;
    },
    onChange: (key, _before, after) => changes.push([key, after]),
  });
  return { mirror, changes, parsed };
}

test('a change the watch brings while the start-up list is in flight wins over the older listed value', async () => {
  const base = await open();
  let listRead!: () => void;
  const read = new Promise<void>((resolve) => (listRead = resolve));
  let releaseList!: () => void;
  const release = new Promise<void>((resolve) => (releaseList = resolve));
  // The list reads the store, then is held until the test lets it answer.
  const store = wrap(base, {
    list: async (prefix) => {
      const kvs = await base.list(prefix);
      listRead();
      await release;
      return kvs;
    },
  });
  try {
    await base.put('/m/a', 'old');
    const { mirror, changes } = mirrorOf(store);
    const started = mirror.start();
    await read;
    await base.put('/m/a', 'new');
    await waitFor('the watch to bring the new value', () => changes.some(([k, v]) => k === '/m/a' && v === 'new'));
    releaseList();
    await started;
    assert.equal(mirror.get('/m/a'), 'new', 'the list read "old" before the change: the watched value is kept');
    await mirror.stop();
  } finally {
    await base.close();
  }
});

test('a resync brings back what a lost watch event missed, and parses only the values that changed', async () => {
  const base = await open();
  let dropping = false;
  // A watch that loses its events while `dropping` is set.
  const store = wrap(base, {
    watch: (prefix: string, onEvent: (event: WatchEvent) => void) =>
      base.watch(prefix, (e) => {
        if (!dropping) onEvent(e);
      }),
  });
  try {
    await base.put('/m/kept', '1');
    await base.put('/m/gone', '1');
    await base.put('/m/changed', '1');
    const { mirror, parsed } = mirrorOf(store);
    await mirror.start();
    assert.deepEqual([...mirror.values()].length, 3);
    dropping = true;
    await base.delete('/m/gone');
    await base.put('/m/changed', '2');
    parsed.length = 0;
    await mirror.resync();
    assert.equal(mirror.get('/m/gone'), undefined, 'the key deleted behind the watch is gone');
    assert.equal(mirror.get('/m/changed'), '2');
    assert.equal(mirror.get('/m/kept'), '1');
    assert.deepEqual(parsed, ['/m/changed'], 'the unchanged value was not parsed again');
    await mirror.stop();
  } finally {
    await base.close();
  }
});

test('a value that does not parse is left out of values(), and the same bad text is not parsed again', async () => {
  const base = await open();
  try {
    await base.put('/m/bad', 'not a number');
    await base.put('/m/good', '7');
    let parses = 0;
    const mirror = new PrefixMirror<number>(base, '/m/', {
      parse: (_key, raw) => {
        parses += 1;
        const n = Number(raw);
        return Number.isInteger(n) ? n : undefined;
      },
      onChange: () => undefined,
    });
    await mirror.start();
    assert.deepEqual([...mirror.values()], [7]);
    const before = parses;
    await mirror.resync();
    assert.equal(parses, before, 'a resync of the same texts parses nothing');
    await mirror.stop();
  } finally {
    await base.close();
  }
});

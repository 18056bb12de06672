import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { EmbeddedStore, EVENT_LOG_SIZE, LOCK_FILE, STORE_FILE, type WatchEvent } from '../../src/distributed/index.js';
import { isCode } from '../support/assertions.js';
import { until } from '../support/wait.js';

// The embedded store is shared by several processes on one host (an agent waiting for a
// quorum, an approver running `hotpatch approve`): they coordinate through the file and its
// lock only. These tests use two instances in one process, and real child processes.

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const dirs: string[] = [];
const stores: EmbeddedStore[] = [];

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'hotpatch-embedded-'));
  dirs.push(dir);
  return dir;
}

async function open(dir: string, options: Parameters<typeof EmbeddedStore.open>[1] = {}): Promise<EmbeddedStore> {
  const store = await EmbeddedStore.open(dir, options);
  stores.push(store);
  return store;
}

/** Polls `check` until it holds; `ms` is a generous guard, not a bound under test. */
const eventually = (what: string, ms: number, check: () => boolean | Promise<boolean>): Promise<void> => until(check, ms, what, 20);

/** The compiled store module, for child processes. */
const STORE_MODULE = pathToFileURL(join(process.cwd(), 'dist', 'src', 'distributed', 'embedded-store.js')).href;

/** Runs `code` (an ES module body; `EmbeddedStore` and `dir` in scope) in a child node process. */
function child(dir: string, code: string): ReturnType<typeof spawn> {
  const body = `import { EmbeddedStore } from ${JSON.stringify(STORE_MODULE)};\nconst dir = ${JSON.stringify(dir)};\n${code}`;
  return spawn(process.execPath, ['--input-type=module', '-e', body], { stdio: ['ignore', 'pipe', 'pipe'] });
}

/** A pid that belonged to a process which has exited. */
async function deadPid(): Promise<number> {
  const proc = spawn(process.execPath, ['-e', '']);
  await new Promise((resolve) => proc.once('exit', resolve));
  assert.ok(proc.pid !== undefined);
  return proc.pid;
}

after(async () => {
  await Promise.all(stores.map((s) => s.close()));
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

describe('EmbeddedStore across processes', () => {
  test("two instances on one directory see each other's writes and watch events", { timeout: 10_000 }, async () => {
    const dir = await tempDir();
    const [a, b] = [await open(dir), await open(dir)];
    const seenByA: WatchEvent[] = [];
    const stopA = await a.watch('/shared/', (e) => seenByA.push(e));
    await b.put('/shared/x', 'from b');
    assert.equal(await a.get('/shared/x'), 'from b');
    assert.equal(await a.create('/shared/x', 'from a'), false);
    assert.equal(await a.compareAndSwap('/shared/x', 'from b', 'from a'), true);
    assert.equal(await b.get('/shared/x'), 'from a');
    await b.delete('/shared/x');
    await eventually('three events', 8000, () => seenByA.length === 3);
    assert.deepEqual(seenByA, [
      { type: 'put', key: '/shared/x', value: 'from b' },
      { type: 'put', key: '/shared/x', value: 'from a' },
      { type: 'delete', key: '/shared/x' },
    ]);
    await stopA();
    assert.ok(a.requestCount > 0 && b.requestCount > 0);
  });

  test("a child process writing into the store is seen by the parent's watch; its lease ends when it is killed", { timeout: 15_000 }, async () => {
    const dir = await tempDir();
    const parent = await open(dir);
    const events: WatchEvent[] = [];
    const stop = await parent.watch('/child/', (e) => events.push(e));
    const proc = child(
      dir,
      `const s = await EmbeddedStore.open(dir);
       await s.put('/child/hello', String(process.pid));
       const lease = await s.grantLease(800);
       await s.put('/child/alive', 'yes', { lease });
       process.stdout.write('ready\\n');
       setInterval(() => {}, 1000);`,
    );
    let stderr = '';
    proc.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    try {
      await eventually("the child's two puts", 10_000, () => events.length >= 2 || proc.exitCode !== null);
      assert.deepEqual(
        events.slice(0, 2),
        [
          { type: 'put', key: '/child/hello', value: String(proc.pid) },
          { type: 'put', key: '/child/alive', value: 'yes' },
        ],
        stderr,
      );
      // Renewed while the child lives.
      await sleep(1200);
      assert.equal(await parent.get('/child/alive'), 'yes');
    } finally {
      proc.kill('SIGKILL');
      await exited;
    }
    // The dead child renews no more: its key goes after the TTL, seen by the parent's watch
    // (the watcher's poll is what deletes it: nobody else touches the store).
    await eventually("the delete of the dead child's leased key", 10_000, () => events.some((e) => e.type === 'delete'));
    assert.deepEqual(events.at(-1), { type: 'delete', key: '/child/alive' });
    assert.equal(await parent.get('/child/hello'), String(proc.pid));
    await stop();
  });

  test('concurrent writers in two processes: creates stay exclusive, no write is lost', { timeout: 20_000 }, async () => {
    const dir = await tempDir();
    const parent = await open(dir);
    const code = (who: string) => `const s = await EmbeddedStore.open(dir);
       let won = 0;
       for (let i = 0; i < 15; i += 1) {
         await s.put('/race/${who}/' + i, String(i));
         if (await s.create('/race/slot/' + i, '${who}')) won += 1;
       }
       process.stdout.write(String(won));
       await s.close();`;
    const run = (who: string) =>
      new Promise<number>((resolve, reject) => {
        const proc = child(dir, code(who));
        let out = '';
        let err = '';
        proc.stdout?.on('data', (d: Buffer) => (out += d.toString()));
        proc.stderr?.on('data', (d: Buffer) => (err += d.toString()));
        proc.once('exit', (status) => (status === 0 ? resolve(Number(out)) : reject(new Error(`child ${who} exited ${status}: ${err}`))));
      });
    const [wonA, wonB] = await Promise.all([run('a'), run('b')]);
    assert.equal(wonA + wonB, 15, 'each slot won exactly once');
    const all = await parent.list('/race/');
    assert.equal(all.filter((kv) => kv.key.startsWith('/race/a/')).length, 15);
    assert.equal(all.filter((kv) => kv.key.startsWith('/race/b/')).length, 15);
    assert.equal(all.filter((kv) => kv.key.startsWith('/race/slot/')).length, 15);
    assert.equal((await readdir(dir)).filter((n) => n !== STORE_FILE).length, 0, 'no lock or temp file left behind');
  });

  test('readers never see a torn file while another instance writes', { timeout: 15_000 }, async () => {
    const dir = await tempDir();
    const [writer, reader] = [await open(dir), await open(dir)];
    let done = false;
    const writes = (async () => {
      for (let i = 0; i < 60; i += 1) await writer.put(`/torn/${i % 7}`, 'x'.repeat(i * 97));
      done = true;
    })();
    let reads = 0;
    while (!done) {
      await reader.list('/torn/');
      reads += 1;
    }
    await writes;
    assert.ok(reads > 0);
  });

  test('a watcher that falls behind the event log still converges (diff fallback)', { timeout: 15_000 }, async () => {
    const dir = await tempDir();
    const writer = await open(dir);
    // Its first poll comes after more than EVENT_LOG_SIZE changes: the log no longer reaches
    // back to its revision, so it diffs (or, on a slow machine, replays part of the log).
    const slow = await open(dir, { pollMs: 2000 });
    const mirror = new Map<string, string>();
    let events = 0;
    const watchStart = Date.now();
    const stop = await slow.watch('/bulk/', (e) => {
      events += 1;
      if (e.type === 'put') mirror.set(e.key, e.value!);
      else mirror.delete(e.key);
    });
    await writer.put('/bulk/gone', 'soon deleted');
    for (let i = 0; i < EVENT_LOG_SIZE + 40; i += 1) await writer.put(`/bulk/${i % 40}`, String(i));
    await writer.delete('/bulk/gone');
    const beforeFirstPoll = Date.now() - watchStart < 1900 && events === 0;
    const expected = new Map((await writer.list('/bulk/')).map((kv) => [kv.key, kv.value] as const));
    await eventually('the mirror matches the store', 10_000, () => JSON.stringify([...mirror].sort()) === JSON.stringify([...expected].sort()));
    if (beforeFirstPoll) {
      // All changes landed before the first poll: the diff path ran, one put per live key.
      assert.equal(events, 40, `coalesced events: ${events}`);
    }
    await stop();
    const state = JSON.parse(await readFile(join(dir, STORE_FILE), 'utf8')) as { events: unknown[] };
    assert.ok(state.events.length >= EVENT_LOG_SIZE && state.events.length <= EVENT_LOG_SIZE + 1, `event log bounded: ${state.events.length}`);
  });
});

describe('EmbeddedStore lock', () => {
  test('a stale lock left by a dead process is broken', { timeout: 10_000 }, async () => {
    const dir = await tempDir();
    // The lock is fresh (stale only after an hour) and a writer would wait for it up to 5 s:
    // the put succeeding proves the dead pid was recognised, not that time ran out.
    const store = await open(dir, { lockTimeoutMs: 5000, lockStaleMs: 3_600_000 });
    const pid = await deadPid();
    await writeFile(join(dir, LOCK_FILE), JSON.stringify({ pid, time: Date.now(), token: 'dead' }));
    await store.put('/k', 'v');
    assert.equal(await store.get('/k'), 'v');
    await assert.rejects(stat(join(dir, LOCK_FILE)), /ENOENT/);
  });

  test('a lock held by a live process blocks writers until the timeout (IO, naming the pid)', { timeout: 10_000 }, async () => {
    const dir = await tempDir();
    const store = await open(dir, { lockTimeoutMs: 300 });
    await writeFile(join(dir, LOCK_FILE), JSON.stringify({ pid: process.pid, time: Date.now(), token: 'alive' }));
    await assert.rejects(store.put('/k', 'v'), isCode('IO', new RegExp(`held by pid ${process.pid}`)));
    assert.equal(await store.get('/k'), undefined, 'reads need no lock');
    // Released: writes go through again.
    await rm(join(dir, LOCK_FILE));
    await store.put('/k', 'v');
    assert.equal(await store.get('/k'), 'v');
  });

  test('a lock older than lockStaleMs is broken even if its pid is alive; so is an empty one by mtime', { timeout: 10_000 }, async () => {
    const dir = await tempDir();
    const store = await open(dir, { lockTimeoutMs: 3000, lockStaleMs: 500 });
    await writeFile(join(dir, LOCK_FILE), JSON.stringify({ pid: process.pid, time: Date.now() - 60_000, token: 'hung' }));
    await store.put('/a', '1');
    // A lock file whose creator crashed before writing it: judged by its modification time.
    await writeFile(join(dir, LOCK_FILE), '');
    const old = new Date(Date.now() - 60_000);
    await utimes(join(dir, LOCK_FILE), old, old);
    await store.put('/b', '2');
    assert.deepEqual(
      (await store.list('/')).map((kv) => kv.key),
      ['/a', '/b'],
    );
  });
});

describe('EmbeddedStore file errors', () => {
  test('a corrupted store.json is PARSE / INVALID, never silently reset', { timeout: 10_000 }, async () => {
    const dir = await tempDir();
    const store = await open(dir);
    await store.put('/k', 'v');
    const file = join(dir, STORE_FILE);

    await writeFile(file, '{"format":1,"revision":1,"keys":{"/k":{"value":"v","modRev');
    await assert.rejects(EmbeddedStore.open(dir), isCode('PARSE', /store file .* not valid JSON/));
    await assert.rejects(store.get('/k'), isCode('PARSE'));
    await assert.rejects(store.put('/k', 'new'), isCode('PARSE'));
    assert.equal(await readFile(file, 'utf8'), '{"format":1,"revision":1,"keys":{"/k":{"value":"v","modRev', 'left as it was');

    await writeFile(file, Buffer.from([0xff, 0xfe, 0x00]));
    await assert.rejects(store.list('/'), isCode('PARSE', /UTF-8/));

    const bad = async (doc: unknown, message: RegExp): Promise<void> => {
      await writeFile(file, JSON.stringify(doc));
      await assert.rejects(store.get('/k'), isCode('INVALID', message));
    };
    await bad([], /must be a JSON object/);
    await bad({ format: 2, revision: 0, keys: {}, leases: {} }, /format must be 1/);
    await bad({ format: 1, revision: -1, keys: {}, leases: {} }, /revision/);
    await bad({ format: 1, revision: 1, keys: { '/k': { value: 'v', modRevision: 5 } }, leases: {} }, /modRevision/);
    await bad({ format: 1, revision: 1, keys: { '/k': { value: 7, modRevision: 1 } }, leases: {} }, /value must be a string/);
    await bad({ format: 1, revision: 1, keys: { '/k': { value: 'v', modRevision: 1, lease: '9' } }, leases: {} }, /names no lease/);
    await bad({ format: 1, revision: 0, keys: {}, leases: { x: { ttlMs: 1, expiresAt: 1 } } }, /lease id/);
    await bad({ format: 1, revision: 0, keys: {}, leases: {}, extra: true }, /unknown field "extra"/);

    // A write that would make the file larger than maxFileBytes is refused; nothing written.
    const small = await open(await tempDir(), { maxFileBytes: 400 });
    await small.put('/a', 'x');
    await assert.rejects(small.put('/b', 'y'.repeat(400)), isCode('TOO_LARGE'));
    assert.equal(await small.get('/b'), undefined);
    assert.equal(await small.get('/a'), 'x');
  });

  test('a key named like an object prototype is just a key', { timeout: 10_000 }, async () => {
    const dir = await tempDir();
    const [a, b] = [await open(dir), await open(dir)];
    await a.put('__proto__', 'p');
    await a.put('constructor', 'c');
    assert.equal(await b.get('__proto__'), 'p');
    assert.deepEqual(
      (await b.list('')).map((kv) => kv.key),
      ['__proto__', 'constructor'],
    );
    assert.equal(await b.get('toString'), undefined);
  });
});

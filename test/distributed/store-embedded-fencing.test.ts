import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtemp, readdir, rm, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import fc from 'fast-check';
import { EmbeddedStore, LOCK_FILE } from '../../src/distributed/index.js';
import { setCommitHookForTests, type CommitStage } from '../../src/distributed/embedded-lock.js';

// A writer whose lock is broken while it is only paused (SIGSTOP, swap, a stalled disk) must
// never commit what it computed from the state it read before: its write is refused and its
// cycle re-run on the new state. Real processes first (one is stopped inside its cycle while
// another does 30 compare-and-swaps), then random in-process interleavings.

const dirs: string[] = [];
after(async () => {
  setCommitHookForTests(undefined);
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'hotpatch-fencing-'));
  dirs.push(dir);
  return dir;
}

const moduleUrl = (name: string): string => pathToFileURL(join(process.cwd(), 'dist', 'src', 'distributed', name)).href;

/** A child node process running `code` (an ES module body; `EmbeddedStore`, `setCommitHookForTests` and `dir` in scope). */
function child(dir: string, code: string): ChildProcessWithoutNullStreams {
  const body = `import { EmbeddedStore } from ${JSON.stringify(moduleUrl('embedded-store.js'))};
import { setCommitHookForTests } from ${JSON.stringify(moduleUrl('embedded-lock.js'))};
const dir = ${JSON.stringify(dir)};
${code}`;
  const proc = spawn(process.execPath, ['--input-type=module', '-e', body], { stdio: ['pipe', 'pipe', 'pipe'] });
  proc.stdout.setEncoding('utf8');
  proc.stderr.setEncoding('utf8');
  return proc;
}

/** Resolves with stdout once a line equal to `line` arrives; rejects if the child exits first. */
function lineFrom(proc: ChildProcessWithoutNullStreams, line: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const onErr = (d: string): void => void (err += d);
    const onData = (d: string): void => {
      out += d;
      if (out.split('\n').includes(line)) {
        proc.stdout.off('data', onData);
        proc.stderr.off('data', onErr);
        proc.off('exit', onExit);
        resolve();
      }
    };
    const onExit = (status: number | null): void => reject(new Error(`child exited (${status}) before printing ${line}: ${out}${err}`));
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onErr);
    proc.once('exit', onExit);
  });
}

/** The JSON object on the child's last stdout line, once it exits with status 0. */
function resultOf(proc: ChildProcessWithoutNullStreams): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    proc.stdout.on('data', (d: string) => (out += d));
    proc.stderr.on('data', (d: string) => (err += d));
    proc.once('exit', (status, signal) => {
      if (status !== 0) return reject(new Error(`child exited ${status ?? signal}: ${err}`));
      try {
        resolve(JSON.parse(out.trimEnd().split('\n').at(-1) ?? '') as Record<string, unknown>);
      } catch {
        reject(new Error(`child printed no result: ${out}${err}`));
      }
    });
  });
}

const LOCK_STALE_MS = 300;
const INCREMENTS = 30;

/**
 * One child starts `operation` and is held at `stage` of its commit (state read, temp file
 * written), then stopped with SIGSTOP; its lock goes stale (its pid stays alive); a second
 * child breaks it and does 30 compare-and-swap increments of /counter; then the first resumes.
 */
async function pausedWriterScenario(operation: 'cas' | 'put', stage: CommitStage) {
  const dir = await tempDir();
  const store = await EmbeddedStore.open(dir);
  await store.put('/counter', '0');
  const paused = child(
    dir,
    `import { createInterface } from 'node:readline';
     const lines = createInterface({ input: process.stdin });
     const go = new Promise((resolve) => lines.once('line', resolve));
     let held = false;
     setCommitHookForTests(async (stage) => {
       if (held || stage !== ${JSON.stringify(stage)}) return;
       held = true;
       process.stdout.write('holding\\n');
       await go;
     });
     const s = await EmbeddedStore.open(dir, { lockStaleMs: ${LOCK_STALE_MS} });
     const result = ${operation === 'cas' ? `await s.compareAndSwap('/counter', '0', '1')` : `(await s.put('/late', 'written late'), true)`};
     lines.close();
     await s.close();
     process.stdout.write(JSON.stringify({ result }) + '\\n');`,
  );
  const pausedResult = resultOf(paused);
  let incrementer: ChildProcessWithoutNullStreams | undefined;
  try {
    await lineFrom(paused, 'holding');
    paused.kill('SIGSTOP');
    incrementer = child(
      dir,
      `const s = await EmbeddedStore.open(dir, { lockStaleMs: ${LOCK_STALE_MS} });
       const acknowledged = [];
       while (acknowledged.length < ${INCREMENTS}) {
         const seen = await s.get('/counter');
         const next = String(Number(seen) + 1);
         if (await s.compareAndSwap('/counter', seen, next)) acknowledged.push(next);
       }
       await s.close();
       process.stdout.write(JSON.stringify({ acknowledged }) + '\\n');`,
    );
    const { acknowledged } = (await resultOf(incrementer)) as { acknowledged: string[] };
    assert.equal(paused.exitCode, null, 'the stopped writer was still alive, mid-cycle, all along');
    const leftovers = (await readdir(dir)).filter((n) => n.endsWith('.tmp'));
    paused.kill('SIGCONT');
    paused.stdin.write('go\n');
    const { result } = await pausedResult;
    const final = await store.get('/counter');
    const late = await store.get('/late');
    await store.close();
    return { acknowledged, result, final, late, leftovers };
  } finally {
    // On failure: never leave a stopped or running child behind.
    for (const proc of [paused, incrementer]) {
      if (proc !== undefined && proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGCONT');
        proc.kill('SIGKILL');
      }
    }
  }
}

describe('EmbeddedStore fencing: a writer whose lock was broken never commits stale state', () => {
  test(
    'a compare-and-swap stopped with SIGSTOP after reading, whose lock is broken, is re-evaluated; none of the 30 acknowledged increments is lost',
    { timeout: 60_000 },
    async () => {
      const { acknowledged, result, final, leftovers } = await pausedWriterScenario('cas', 'written');
      assert.deepEqual(
        acknowledged,
        Array.from({ length: INCREMENTS }, (_, i) => String(i + 1)),
        'each acknowledged CAS advanced the counter by one',
      );
      assert.equal(final, String(INCREMENTS), `every acknowledged CAS is in the final value (got ${final})`);
      assert.equal(result, false, 'the stale CAS (0 → 1) was evaluated again on the new state, and refused');
      assert.deepEqual(leftovers, [], "the stopped writer's temp file was fenced (removed) by the next writer");
    },
  );

  test(
    'a put stopped with SIGSTOP after its lock check, just before its rename, is redone on the new state; no acknowledged increment is lost',
    { timeout: 60_000 },
    async () => {
      const { acknowledged, result, final, late, leftovers } = await pausedWriterScenario('put', 'verified');
      assert.equal(acknowledged.length, INCREMENTS);
      assert.equal(final, String(INCREMENTS), `every acknowledged CAS is in the final value (got ${final})`);
      assert.equal(result, true);
      assert.equal(late, 'written late', 'the put was redone, on top of the increments');
      assert.deepEqual(leftovers, []);
    },
  );

  test('over random interleavings with injected lock breaks mid-commit, no acknowledged write is lost', { timeout: 120_000 }, async () => {
    type Step = { kind: 'cas' | 'put'; stage: CommitStage | 'none'; competing: number };
    const step: fc.Arbitrary<Step> = fc.record({
      kind: fc.constantFrom('cas' as const, 'put' as const),
      stage: fc.constantFrom('none' as const, 'written' as const, 'verified' as const),
      competing: fc.integer({ min: 0, max: 3 }),
    });
    let interfered = 0;
    try {
      await fc.assert(
        fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 8 }), async (steps) => {
          const dir = await tempDir();
          // Locks never go stale by time here: every break is injected.
          const [a, b] = [await EmbeddedStore.open(dir), await EmbeddedStore.open(dir)];
          await a.put('/counter', '0');
          let increments = 0;
          const puts = new Map<string, string>();
          const increment = async (store: EmbeddedStore): Promise<void> => {
            const seen = await store.get('/counter');
            if (await store.compareAndSwap('/counter', seen, String(Number(seen) + 1))) increments += 1;
          };
          try {
            for (const [i, s] of steps.entries()) {
              let armed = s.stage !== 'none';
              setCommitHookForTests(async (stage) => {
                if (!armed || stage !== s.stage) return;
                armed = false;
                interfered += 1;
                // a's lock is broken under it (as after a pause longer than lockStaleMs); b then writes.
                await unlink(join(dir, LOCK_FILE)).catch(() => undefined);
                for (let k = 0; k < s.competing; k += 1) await increment(b);
              });
              if (s.kind === 'cas') await increment(a);
              else {
                await a.put(`/put/${i}`, `value ${i}`);
                puts.set(`/put/${i}`, `value ${i}`);
              }
              setCommitHookForTests(undefined);
            }
            const where = JSON.stringify(steps);
            assert.equal(Number(await b.get('/counter')), increments, `acknowledged increments all counted after ${where}`);
            for (const [key, value] of puts) assert.equal(await b.get(key), value, `acknowledged ${key} kept after ${where}`);
            assert.deepEqual(
              (await readdir(dir)).filter((n) => n !== 'store.json'),
              [],
              'no lock or temp file left behind',
            );
          } finally {
            setCommitHookForTests(undefined);
            await Promise.all([a.close(), b.close()]);
          }
        }),
        { numRuns: 60 },
      );
    } finally {
      setCommitHookForTests(undefined);
    }
    assert.ok(interfered > 0, 'lock breaks were injected');
  });
});

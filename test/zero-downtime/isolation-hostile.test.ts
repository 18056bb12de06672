/*
 * Hostile patches against the isolation boundary itself: they talk on the channel, throw what
 * is not an Error, block their thread in a system call, leave their host, answer with Buffers,
 * fill the host with calls while stuck, or come back slowly after a death. The host must
 * survive each, name what happened, and leave no thread or process behind.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { createInterface } from 'node:readline';
import { HotPatchRuntime, twoPhaseApply } from '../../src/zero-downtime/index.js';
import { isCode } from '../support/assertions.js';
import { cpuTicks, isolateProcesses, running } from '../support/isolates.js';
import { held, until } from '../support/wait.js';
import { FAST, drive, signedPatch, world, type World } from './fixtures.js';

const T = 'xps.hostile.echo';
const MODES = ['worker', 'process'] as const;
type Mode = (typeof MODES)[number];

interface EchoApi {
  echo(value: unknown): unknown;
  poke(what: string): unknown;
}
const builtin: EchoApi = { echo: (v) => v, poke: () => 'built-in' };

async function promoted(mode: Mode, source: string, limits: Record<string, unknown> = {}, declaration: Record<string, unknown> = {}) {
  const w = await world();
  const target = w.runtime.target(T, {
    version: '1.0.0',
    impl: builtin,
    isolation: mode,
    isolationLimits: { callTimeoutMs: 1_000, ...limits },
    ...declaration,
  });
  const { verified, payload } = signedPatch('hostile-1', T, '1.0.1', source);
  const apply = twoPhaseApply(w.installer, verified, payload, { ...FAST, steps: [0.5], probationMs: 0, maxLatencyShift: 10, runtime: w.runtime });
  await drive((i) => target.api.echo(i), apply);
  const result = await apply;
  assert.equal(result.outcome, 'promoted', result.reason);
  return { w, target };
}

const ECHO = (extra: string): string => `import { parentPort } from 'node:worker_threads';
import { writeSync } from 'node:fs';
export const api = { echo(v) { return v; }, poke(what) { ${extra} } };`;

for (const mode of MODES) {
  test(`${mode}: a patch writing on the channel itself cannot crash the host: ignored (worker) or the isolate ended (process)`, async () => {
    const poke =
      mode === 'worker'
        ? `parentPort?.postMessage(null); parentPort?.postMessage({ t: 'loaded', hooks: ['x'] }); return 'posted';`
        : `writeSync(3, Buffer.from([0, 0, 0, 1, 0])); return 'wrote';`;
    const { w, target } = await promoted(mode, ECHO(poke));
    try {
      if (mode === 'worker') {
        assert.equal(await target.api.poke('x'), 'posted');
        assert.equal(await target.api.echo(7), 7);
        assert.equal(target.active.isolate?.state, 'ready');
      } else {
        await assert.rejects(target.api.poke('x'), isCode('CRASHED', /malformed data on its channel|outside the protocol/));
        assert.equal(await target.api.echo(7), 7, 'restarted on the next call');
        assert.equal(target.active.isolate?.restarts, 1);
      }
    } finally {
      await w.close();
    }
  });

  test(`${mode}: throwing null from a timer, or a thrown object with no prototype, is named and never reaches the host`, async () => {
    const { w, target } = await promoted(mode, ECHO(`if (what === 'bare') throw Object.create(null); setTimeout(() => { throw null; }); return 'armed';`));
    try {
      await assert.rejects(target.api.poke('bare'), /a non-Error value was thrown/);
      assert.equal(target.active.isolate?.restarts, 0, 'a strange throw fails its call only');
      const died = held(new Promise<string>((resolve) => target.active.isolate!.onDeath(resolve)));
      assert.equal(await target.api.poke('timer'), 'armed');
      assert.match(await died, /null/);
      assert.equal(await target.api.echo(1), 1);
    } finally {
      await w.close();
    }
  });

  test(`${mode}: a Buffer crosses as a Buffer both ways, so a deterministic canary of an identical patch finds no difference`, async () => {
    const source = `import { createHash } from 'node:crypto';
export const api = { echo(v) { return Buffer.isBuffer(v) ? createHash('sha256').update(v).digest() : v; }, poke() { return Buffer.from('hi'); } };`;
    const w = await world();
    try {
      const { createHash } = await import('node:crypto');
      const target = w.runtime.target(T, {
        version: '1.0.0',
        impl: { echo: (v: unknown) => (Buffer.isBuffer(v) ? createHash('sha256').update(v).digest() : v), poke: (_what: string) => Buffer.from('hi') },
        isolation: mode,
        deterministic: true,
      });
      const { verified, payload } = signedPatch('buffers-1', T, '1.0.1', source);
      const apply = twoPhaseApply(w.installer, verified, payload, { ...FAST, steps: [0.5], probationMs: 0, maxLatencyShift: 10, runtime: w.runtime });
      await drive((i) => target.api.echo(Buffer.from(`m${i}`)), apply);
      const result = await apply;
      assert.equal(result.outcome, 'promoted', result.reason);
      const out = await target.api.echo(Buffer.from('abc'));
      assert.ok(Buffer.isBuffer(out));
      assert.equal((out as Buffer).toString('hex'), createHash('sha256').update('abc').digest('hex'));
      assert.ok(Buffer.isBuffer(await target.api.poke('x')));
    } finally {
      await w.close();
    }
  });

  test(`${mode}: while an isolate is stuck, new calls fail at once instead of piling up in the host; at most maxPendingCalls wait`, async () => {
    const { w, target } = await promoted(mode, ECHO(`if (what === 'loop') for (;;) {} return what;`), { callTimeoutMs: 300, maxPendingCalls: 50 });
    try {
      // Its rejection is awaited from the start: it may settle before the queued calls do.
      const stuck = assert.rejects(target.api.poke('loop'), isCode('TIMEOUT'));
      const queued = Array.from({ length: 60 }, (_, i) => target.api.echo(i));
      const outcomes = await Promise.allSettled(queued);
      assert.equal(outcomes.filter((o) => o.status === 'rejected' && isCode('TOO_LARGE', /maxPendingCalls/)(o.reason)).length, 11);
      await stuck;
      // Refused at once, not queued: settled before the event loop could deliver any answer (an answer is a message, later than setImmediate).
      const refusedAtOnce = async (): Promise<boolean> => {
        const first = await Promise.race([
          target.api.echo(0).then(
            () => 'answered',
            (error: unknown) => error,
          ),
          new Promise((resolve) => setImmediate(() => resolve('queued'))),
        ]);
        return isCode('TIMEOUT', /is not answering/)(first);
      };
      await until(refusedAtOnce, 15_000, 'calls refused while stuck');
      await until(() => target.active.isolate?.state === 'dead', 15_000, 'the stuck isolate killed');
      // A fresh isolate serves (a child's start may take longer than this test's short callTimeoutMs on a busy host).
      await until(async () => (await target.api.echo(5).catch(() => undefined)) === 5, 15_000, 'a fresh isolate serving');
    } finally {
      await w.close();
    }
  });

  test(`${mode}: a call made while the version restarts is still held to callTimeoutMs (a slow init does not make it wait longer)`, async () => {
    const marker = join(await mkdtemp(join(tmpdir(), 'hotpatch-marker-')), 'started');
    const source = `import { existsSync, writeFileSync } from 'node:fs';
export async function init(ctx) { if (existsSync(ctx.config.marker)) await new Promise((r) => setTimeout(r, 5000)); else writeFileSync(ctx.config.marker, '1'); }
export const api = { echo(v) { return v; }, poke() { process.exit(3); } };`;
    const { w, target } = await promoted(mode, source, { callTimeoutMs: 300, loadTimeoutMs: 20_000 }, { config: { marker } });
    try {
      await assert.rejects(target.api.poke('x'), isCode('CRASHED', /exited with code 3/));
      await assert.rejects(target.api.echo(1), isCode('TIMEOUT', /still starting again .* after 300 ms/));
    } finally {
      await w.close();
      await rm(join(marker, '..'), { recursive: true, force: true });
    }
  });

  test(`${mode}: a death reason is bounded (and redacted) however long the patch's message`, async () => {
    const { w, target } = await promoted(mode, ECHO(`setTimeout(() => { throw new Error('x'.repeat(1_000_000)); }); return 'armed';`));
    try {
      const died = held(new Promise<string>((resolve) => target.active.isolate!.onDeath(resolve)));
      await target.api.poke('x');
      const reason = await died;
      assert.ok(reason.length <= 1000, `a ${reason.length}-character reason`);
      assert.ok((w.runtime.status()[0]!.active.isolate?.death ?? '').length <= 1000);
    } finally {
      await w.close();
    }
  });
}

test('worker: a worker blocked in a system call cannot be ended by terminate(); it is given up on after the grace period and the service serves on', async () => {
  const { w, target } = await promoted(
    'worker',
    `import { execSync } from 'node:child_process';
export const api = { echo(v) { return v; }, poke(what) { if (what === 'block') execSync('sleep 4'); return 'x'; } };`,
    {
      callTimeoutMs: 200,
    },
  );
  try {
    const died = held(new Promise<string>((resolve) => target.active.isolate!.onDeath(resolve)));
    await assert.rejects(target.api.poke('block'), isCode('TIMEOUT'));
    assert.match(await died, /did not exit within 2000 ms of being ended .* given up on/);
    assert.equal(target.active.isolate?.state, 'dead');
    await w.runtime.rollback(T);
    assert.equal(await target.api.echo(3), 3);
  } finally {
    await w.close();
  }
});

for (const how of ['SIGKILL', 'exit'] as const) {
  test(`process: a child stuck in a loop does not outlive its host (host ${how === 'SIGKILL' ? 'SIGKILLed' : 'calls process.exit'})`, async () => {
    const host = spawn(process.execPath, [fileURLToPath(new URL('./isolation-orphan-host.js', import.meta.url)), how === 'SIGKILL' ? 'wait' : 'exit'], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    try {
      const line = await new Promise<string>((resolve, reject) => {
        createInterface({ input: host.stdout! }).once('line', resolve);
        host.once('exit', (code) => reject(new Error(`the host exited (${String(code)}) before printing its child's pid`)));
      });
      const { pid } = JSON.parse(line) as { pid: number };
      assert.ok(running(pid));
      // Seen looping: its CPU time grows by a fifth of a second (20 clock ticks).
      const start = cpuTicks(pid);
      await until(() => cpuTicks(pid) >= start + 20, 15_000, `the child ${pid} looping`);
      host.stdin!.write('go\n');
      if (how === 'SIGKILL') host.kill('SIGKILL');
      await until(() => !running(pid), 15_000, `the looping child ${pid} ended`);
      assert.deepEqual(
        isolateProcesses('any').filter((p) => p === pid),
        [],
      );
    } finally {
      host.kill('SIGKILL');
    }
  });
}

test('process: restore() ends the isolates of versions it refuses (a failing self-test), leaving none behind', async () => {
  const w: World = await world();
  try {
    const target = w.runtime.target(T, { version: '1.0.0', impl: builtin, isolation: 'process' });
    for (const [id, version] of [
      ['restore-1', '1.0.1'],
      ['restore-2', '1.0.2'],
    ] as const) {
      const { verified, payload } = signedPatch(id, T, version, ECHO(`return ${JSON.stringify(version)};`));
      const apply = twoPhaseApply(w.installer, verified, payload, { ...FAST, steps: [0.5], probationMs: 0, maxLatencyShift: 10, runtime: w.runtime });
      await drive((i) => target.api.echo(i), apply);
      assert.equal((await apply).outcome, 'promoted');
    }
    const before = new Set(isolateProcesses());
    const runtime = new HotPatchRuntime({ stateDir: w.dir, installer: w.installer, bus: w.bus });
    try {
      // The next start's host refuses every patch version at its known-answer test.
      runtime.target(T, {
        version: '1.0.0',
        impl: builtin,
        isolation: 'process',
        selfTest: async (api) => {
          if ((await api.poke('x')) !== 'built-in') throw new Error('not the built-in');
        },
      });
      const reports = await runtime.restore();
      assert.equal(reports[0]?.patchId, null);
      await until(() => isolateProcesses().every((pid) => before.has(pid)), 15_000, 'the refused versions’ children ended');
    } finally {
      runtime.close();
    }
  } finally {
    await w.close();
  }
});

test('process: stackMb over memoryMb / 16 is INVALID (every thread of the child gets that stack, counted against the cap)', async () => {
  const w = await world();
  try {
    assert.throws(
      () => w.runtime.target('xps.a.stack', { version: '1.0.0', impl: builtin, isolation: 'process', isolationLimits: { stackMb: 96, memoryMb: 512 } }),
      isCode('INVALID', /stackMb 96 is over memoryMb \/ 16/),
    );
  } finally {
    await w.close();
  }
});

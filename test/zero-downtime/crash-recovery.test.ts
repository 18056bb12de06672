/*
 * Crash recovery (docs/ARCHITECTURE.md "On-disk formats" and "Data flow of one apply": probation): a real
 * child process running the target (crash-child.ts) is killed with SIGKILL at each phase of
 * an apply — during staging, after staging, mid-canary, right after promotion, during the
 * writes of state.json — and restarted. After every kill:
 *   - state.json, when present, parses (JSON.parse and the project's strict parseStateFile);
 *   - every `staging/<sha256>.<ext>` hashes to its name; anything else there is a temp file;
 *   - the restarted process comes up on the version state.json calls for (the active one,
 *     unless it was still inside its probation: then the last good one, and the patch is
 *     marked failed), and a call through the target's api answers as that version;
 *   - a second restart comes up on the same version with nothing left to drop.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, mkdtemp, readFile, readdir, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseStateFile, type StateFile, type TargetState } from '../../src/rollback/index.js';
import { seeded } from './fixtures.js';
import { BUILTIN_VERSION, PATCHES, TARGET, expectedDigest, isolationUnderTest, patchSha256, type ChildAction, type ChildConfig } from './crash-shared.js';

const CHILD = fileURLToPath(new URL('./crash-child.js', import.meta.url));
/**
 * The isolation the child declares its target with: inline here; crash-recovery-worker.test and
 * crash-recovery-process.test run this whole suite again with the versions in workers / children.
 */
const ISOLATION = isolationUnderTest();
const PROBE = 'probe';
const LONG_PROBATION = 60_000;
/** A canary whose first step ends quickly and whose second lasts seconds: a kill lands inside it. */
const SLOW_CANARY = { steps: [0.25, 1], canaryInterval: 60, backoffFactor: 60, minCallsPerStep: 5 };

// --- child processes ---

type Line = Record<string, unknown> & { event: string };

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Date.now() when the parent saw the process end (an upper bound of its death). */
  at: number;
}

const live = new Set<ChildProcess>();
const dirs = new Set<string>();

after(async () => {
  for (const proc of live) proc.kill('SIGKILL');
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

class Child {
  readonly proc: ChildProcess;
  readonly lines: Line[] = [];
  stderr = '';
  readonly closed: Promise<Exit>;
  #waiters: { pred: (l: Line) => boolean; resolve: (l: Line) => void }[] = [];
  #onClose: (() => void)[] = [];

  constructor(config: ChildConfig) {
    const isolated = ISOLATION === undefined ? config : { ...config, isolation: ISOLATION };
    this.proc = spawn(process.execPath, [CHILD, JSON.stringify(isolated)], { stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(this.proc);
    this.proc.stderr!.setEncoding('utf8').on('data', (d: string) => {
      this.stderr += d;
    });
    const rl = createInterface({ input: this.proc.stdout! });
    rl.on('line', (text) => {
      let line: Line;
      try {
        line = JSON.parse(text) as Line;
      } catch {
        line = { event: 'raw', text };
      }
      this.lines.push(line);
      for (const w of [...this.#waiters]) {
        if (w.pred(line)) {
          this.#waiters.splice(this.#waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    });
    this.closed = new Promise((resolve) => {
      this.proc.on('close', (code, signal) => {
        live.delete(this.proc);
        const exit = { code, signal, at: Date.now() };
        for (const f of this.#onClose) f();
        resolve(exit);
      });
    });
  }

  /** The first line (already printed or to come) matching `pred`; rejects if the child ends first. */
  waitFor(pred: (l: Line) => boolean, what: string, timeoutMs = 30_000): Promise<Line> {
    const seen = this.lines.find(pred);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}\n${this.describe()}`)), timeoutMs);
      this.#waiters.push({
        pred,
        resolve: (l) => {
          clearTimeout(timer);
          resolve(l);
        },
      });
      this.#onClose.push(() => {
        clearTimeout(timer);
        const hit = this.lines.find(pred);
        if (hit !== undefined) resolve(hit);
        else reject(new Error(`child ended before ${what}\n${this.describe()}`));
      });
    });
  }

  async kill(): Promise<Exit> {
    this.proc.kill('SIGKILL');
    const exit = await this.closed;
    assert.equal(exit.signal, 'SIGKILL', `the child should die of SIGKILL\n${this.describe()}`);
    return exit;
  }

  describe(): string {
    return `stdout:\n${this.lines
      .map((l) => JSON.stringify(l))
      .join('\n')
      .slice(-4000)}\nstderr:\n${this.stderr.slice(-4000)}`;
  }

  /** Bus events printed by the child. */
  events(type?: string): Line[] {
    return this.lines.filter((l) => l.event === 'bus' && (type === undefined || l.type === type));
  }
}

function isBus(type: string, id?: string): (l: Line) => boolean {
  return (l) => l.event === 'bus' && l.type === type && (id === undefined || l.id === id);
}

async function stateDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'hotpatch-crash-'));
  dirs.add(dir);
  return dir;
}

async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  dirs.delete(dir);
}

/** Runs a child to its end (no kill) and returns it; it must exit 0 (or `expectCode`). */
async function runToEnd(config: ChildConfig, expectCode = 0): Promise<{ child: Child; exit: Exit }> {
  const child = new Child(config);
  const exit = await child.closed;
  assert.equal(exit.code, expectCode, `child exit status\n${child.describe()}`);
  return { child, exit };
}

// --- the state directory after a crash ---

function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

const STAGED_NAME = /^([0-9a-f]{64})\.(mjs|wasm|node)$/;

interface DiskReport {
  state: StateFile | undefined;
  /** sha256 of every file under a final staged name. */
  staged: string[];
  stateTemps: string[];
}

/**
 * The invariants that hold whatever the moment of the kill: state.json parses; a staged file
 * under its final name hashes to that name; everything else in staging/ and manifests/ is a
 * temp file; a manifest under its final name is a complete JSON envelope. `tampered`: staged
 * files the test itself changed.
 */
async function checkDisk(dir: string, tampered: readonly string[] = []): Promise<DiskReport> {
  let state: StateFile | undefined;
  let bytes: Buffer | undefined;
  try {
    bytes = await readFile(join(dir, 'state.json'));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  if (bytes !== undefined) {
    assert.doesNotThrow(() => JSON.parse(bytes.toString('utf8')), `state.json is not JSON: ${bytes.toString('utf8')}`);
    state = parseStateFile(bytes, 'state.json');
  }
  const top = await readdir(dir);
  const stateTemps = top.filter((n) => n.startsWith('.state.json.') && n.endsWith('.tmp'));
  const staged: string[] = [];
  for (const name of await readdir(join(dir, 'staging')).catch(() => [] as string[])) {
    const m = STAGED_NAME.exec(name);
    if (m === null) {
      assert.ok(name.startsWith('.') && name.endsWith('.tmp'), `unexpected file staging/${name}`);
      continue;
    }
    const content = await readFile(join(dir, 'staging', name));
    if (tampered.includes(m[1]!)) {
      assert.notEqual(sha256Hex(content), m[1], `staging/${name} was changed by the test`);
      continue;
    }
    assert.equal(sha256Hex(content), m[1], `staging/${name} does not hash to its name`);
    staged.push(m[1]!);
  }
  for (const name of await readdir(join(dir, 'manifests')).catch(() => [] as string[])) {
    if (name.startsWith('.') && name.endsWith('.tmp')) continue;
    assert.match(name, /^[A-Za-z0-9][A-Za-z0-9._-]*\.json$/, `unexpected file manifests/${name}`);
    const envelope = JSON.parse(await readFile(join(dir, 'manifests', name), 'utf8')) as Record<string, unknown>;
    assert.equal(typeof envelope.payload, 'string', `manifests/${name} is not a DSSE envelope`);
    assert.ok(Array.isArray(envelope.signatures), `manifests/${name} has no signatures`);
  }
  return { state, staged, stateTemps };
}

interface Expected {
  version: string;
  patchId: string | null;
  /** The persisted active patch that must not be restored (it died inside its probation). */
  drop?: string;
}

/**
 * What a restart must bring up, from the state.json the dead process left: the active version,
 * unless it is a patch that had not run through its probation when the process died (`diedAt`):
 * then the last good version (built-in when none), and the patch is dropped.
 */
function expectedFrom(state: StateFile | undefined, diedAt: number): Expected {
  const t: TargetState | undefined = state?.targets[TARGET];
  const active = t?.active ?? null;
  if (t === undefined || active === null || active.id === null) return { version: active?.version ?? BUILTIN_VERSION, patchId: null };
  assert.ok(active.promoted_at !== undefined && active.probation_ms !== undefined, `an active patch record carries its promotion: ${JSON.stringify(active)}`);
  const inProbation = active.good !== true && Date.parse(active.promoted_at) + active.probation_ms > diedAt;
  if (!inProbation) return { version: active.version, patchId: active.id };
  const good = t.last_good;
  if (good === null || good.id === null) return { version: good?.version ?? BUILTIN_VERSION, patchId: null, drop: active.id };
  return { version: good.version, patchId: good.id, drop: active.id };
}

interface Restart {
  child: Child;
  restored: Line;
  disk: DiskReport;
}

/**
 * Restarts a process on `dir` (restore only), checks that it came up on `expected`, that its api
 * answers as that version, that a drop was reported and recorded as failed, and that the state
 * it leaves says the same.
 */
async function restartAndCheck(dir: string, expected: Expected, label: string, tampered: readonly string[] = []): Promise<Restart> {
  const { child } = await runToEnd({ stateDir: dir, actions: [], probe: PROBE });
  const restored = await child.waitFor((l) => l.event === 'restored', 'restored');
  const where = `${label}: expected ${JSON.stringify(expected)}\n${child.describe()}`;
  assert.equal(restored.version, expected.version, where);
  assert.equal(restored.patchId, expected.patchId, where);
  assert.equal(restored.output, expectedDigest(expected.version, PROBE), where);
  const reports = restored.reports as { patchId: string | null; version: string; dropped?: { patchId: string; reason: string } }[];
  const dropped = reports.find((r) => r.dropped !== undefined)?.dropped;
  if (expected.drop === undefined) {
    assert.equal(dropped, undefined, `nothing should be dropped: ${where}`);
    assert.equal(child.events('Failed').length, 0, where);
  } else {
    assert.equal(dropped?.patchId, expected.drop, where);
    assert.ok(
      child.events('Failed').some((e) => e.id === expected.drop),
      `a Failed event for ${expected.drop}: ${where}`,
    );
  }
  const disk = await checkDisk(dir, tampered);
  assert.deepEqual(disk.stateTemps, [], `restore removes the temp files of a crashed state write: ${where}`);
  const t = disk.state?.targets[TARGET];
  if (t?.active != null) {
    assert.equal(t.active.id, expected.patchId, `state.json after the restart: ${where}`);
    assert.equal(t.active.version, expected.version, `state.json after the restart: ${where}`);
  } else {
    assert.equal(expected.patchId, null, where);
  }
  if (expected.drop !== undefined) assert.ok(t?.failed.includes(expected.drop), `${expected.drop} is marked failed in state.json: ${where}`);
  return { child, restored, disk };
}

/** restartAndCheck twice: the second restart must bring up the same version and drop nothing. */
async function restartTwice(dir: string, expected: Expected, label: string, tampered: readonly string[] = []): Promise<Restart> {
  const first = await restartAndCheck(dir, expected, `${label} (restart 1)`, tampered);
  await restartAndCheck(dir, { version: expected.version, patchId: expected.patchId }, `${label} (restart 2)`, tampered);
  return first;
}

function assertNoLoadErrors(child: Child): void {
  const bad = child.lines.filter((l) => l.event === 'load-error' || l.event === 'fatal');
  assert.deepEqual(bad, [], `every live call got a right answer\n${child.describe()}`);
}

function apply(patch: keyof typeof PATCHES, probationMs: number, extra: Partial<Extract<ChildAction, { op: 'apply' }>> = {}): ChildAction {
  return { op: 'apply', patch, probationMs, ...extra };
}

// --- the phases ---

test('SIGKILL while the payload is being staged: no half file under a content address; a retry stages and applies it', async () => {
  const dir = await stateDir();
  const S = PATCHES.S;
  const child = new Child({ stateDir: dir, actions: [apply('S', LONG_PROBATION, { slowStaging: { chunks: 16, delayMs: 80 } })] });
  try {
    await child.waitFor((l) => l.event === 'chunk' && (l.i as number) >= 3, 'the 4th chunk of the payload');
    const exit = await child.kill();
    const disk = await checkDisk(dir);
    assert.ok(!disk.staged.includes(patchSha256(S)), 'a payload cut short never appears under its content address');
    assert.equal(child.events('Staged').length, 0);
    await restartTwice(dir, expectedFrom(disk.state, exit.at), 'killed mid-staging');

    // The leftovers of the crash do not get in the way of applying the same patch again.
    const { child: retry } = await runToEnd({ stateDir: dir, actions: [apply('S', 0), { op: 'waitGood' }] });
    assert.ok(
      retry.lines.some((l) => l.event === 'applied' && l.outcome === 'promoted'),
      retry.describe(),
    );
    assertNoLoadErrors(retry);
    const after = await checkDisk(dir);
    assert.ok(after.staged.includes(patchSha256(S)));
    await restartTwice(dir, { version: S.version, patchId: S.id }, 'after the retry');
  } finally {
    child.proc.kill('SIGKILL');
    await removeDir(dir);
  }
});

test('SIGKILL right after Staged (loading, self-test, canary start): the running version stays', async () => {
  const dir = await stateDir();
  const A = PATCHES.A;
  const child = new Child({ stateDir: dir, actions: [apply('A', LONG_PROBATION, { canary: SLOW_CANARY })] });
  try {
    await child.waitFor(isBus('Staged', A.id), 'Staged');
    const exit = await child.kill();
    const disk = await checkDisk(dir);
    assert.ok(disk.staged.includes(patchSha256(A)), 'the staged payload is complete under its content address');
    const manifest = JSON.parse(await readFile(join(dir, 'manifests', `${A.id}.json`), 'utf8')) as { payload: string };
    assert.equal(JSON.parse(Buffer.from(manifest.payload, 'base64').toString('utf8')).id, A.id);
    assert.notEqual(disk.state?.targets[TARGET]?.active?.id, A.id, 'never promoted');
    const expected = expectedFrom(disk.state, exit.at);
    assert.deepEqual(expected, { version: BUILTIN_VERSION, patchId: null });
    await restartTwice(dir, expected, 'killed after Staged');
  } finally {
    child.proc.kill('SIGKILL');
    await removeDir(dir);
  }
});

test('SIGKILL mid-canary: the last good patch comes back, the candidate never does', async () => {
  const dir = await stateDir();
  const A = PATCHES.A;
  const B = PATCHES.B;
  const child = new Child({
    stateDir: dir,
    actions: [apply('A', 0), { op: 'waitGood' }, apply('B', LONG_PROBATION, { canary: SLOW_CANARY })],
  });
  try {
    await child.waitFor(isBus('CanaryStep', B.id), 'the first CanaryStep of B');
    const exit = await child.kill();
    assertNoLoadErrors(child);
    const disk = await checkDisk(dir);
    const t = disk.state?.targets[TARGET];
    assert.equal(t?.active?.id, A.id, 'B was never promoted');
    assert.equal(t?.active?.good, true);
    const expected = expectedFrom(disk.state, exit.at);
    assert.deepEqual(expected, { version: A.version, patchId: A.id });
    await restartTwice(dir, expected, 'killed mid-canary');
  } finally {
    child.proc.kill('SIGKILL');
    await removeDir(dir);
  }
});

test('SIGKILL right after promotion, inside the probation: the restart reverts to last good and marks the patch failed', async () => {
  const dir = await stateDir();
  const A = PATCHES.A;
  // The child stays up after the apply (a sleep), so the kill never races its own exit.
  const child = new Child({ stateDir: dir, actions: [apply('A', LONG_PROBATION), { op: 'sleep', ms: 600_000 }] });
  try {
    await child.waitFor(isBus('Activated', A.id), 'Activated');
    const exit = await child.kill();
    assertNoLoadErrors(child);
    const disk = await checkDisk(dir);
    const t = disk.state?.targets[TARGET];
    assert.equal(t?.active?.id, A.id, 'the promotion was recorded before Activated');
    assert.notEqual(t?.active?.good, true);
    assert.equal(t?.last_good?.id, null, 'the built-in version is the last good one');
    const expected = expectedFrom(disk.state, exit.at);
    assert.deepEqual(expected, { version: BUILTIN_VERSION, patchId: null, drop: A.id });
    const { restored, disk: after } = await restartTwice(dir, expected, 'killed inside probation');
    const report = (restored.reports as { dropped?: { reason: string } }[])[0];
    assert.match(report?.dropped?.reason ?? '', /probation/);
    assert.deepEqual(after.state?.targets[TARGET]?.failed, [A.id]);
  } finally {
    child.proc.kill('SIGKILL');
    await removeDir(dir);
  }
});

test('SIGKILL right after promotion with probation 0: the restart restores the patch and it answers', async () => {
  const dir = await stateDir();
  const A = PATCHES.A;
  // The child stays up after the apply (a sleep), so the kill never races its own exit.
  const child = new Child({ stateDir: dir, actions: [apply('A', 0), { op: 'sleep', ms: 600_000 }] });
  try {
    await child.waitFor(isBus('Activated', A.id), 'Activated');
    const exit = await child.kill();
    const disk = await checkDisk(dir);
    assert.equal(disk.state?.targets[TARGET]?.active?.id, A.id);
    const expected = expectedFrom(disk.state, exit.at);
    assert.deepEqual(expected, { version: A.version, patchId: A.id });
    await restartTwice(dir, expected, 'killed after promotion, probation 0');
  } finally {
    child.proc.kill('SIGKILL');
    await removeDir(dir);
  }
});

test('probation is judged at the death: a patch that died inside its probation is not restored by a restart that comes later', async () => {
  const dir = await stateDir();
  const A = PATCHES.A;
  // Long enough that the kill always lands inside it (a kill takes milliseconds).
  const probationMs = 4000;
  // The child stays up after the apply (a sleep), so the kill never races its own exit.
  const child = new Child({ stateDir: dir, actions: [apply('A', probationMs), { op: 'sleep', ms: 600_000 }] });
  try {
    await child.waitFor(isBus('Activated', A.id), 'Activated');
    const exit = await child.kill();
    const disk = await checkDisk(dir);
    const active = disk.state?.targets[TARGET]?.active;
    assert.equal(active?.id, A.id);
    const probationEnds = Date.parse(active!.promoted_at!) + probationMs;
    assert.ok(exit.at < probationEnds, 'the kill must land inside the probation for this scenario');
    // The process certainly died inside the probation. The restart comes after it would have
    // ended (a crash-looping service restarted with a back-off, a host reboot): the version
    // never ran healthy through its probation, so it must not come back.
    while (Date.now() <= probationEnds + 50) await new Promise((r) => setTimeout(r, probationEnds + 60 - Date.now()));
    await restartTwice(dir, { version: BUILTIN_VERSION, patchId: null, drop: A.id }, 'restarted after the probation would have ended');
  } finally {
    child.proc.kill('SIGKILL');
    await removeDir(dir);
  }
});

test('SIGKILL inside the probation of a patch that is also the last good version: the restart brings back the good record, once', async () => {
  // B runs through its probation (last good = B), A is promoted over it, then B is promoted
  // again (over A, still in probation, so last good stays B) and the process dies inside this
  // new probation. The restart reverts to last good, which is B as it was when it proved good.
  const dir = await stateDir();
  const B = PATCHES.B;
  const child = new Child({
    stateDir: dir,
    // The child stays up after the last apply (a sleep), so the kill never races its own exit.
    actions: [apply('B', 0), { op: 'waitGood' }, apply('A', LONG_PROBATION), apply('B', LONG_PROBATION), { op: 'sleep', ms: 600_000 }],
  });
  try {
    await child.waitFor(
      (l) => l.event === 'applied' && l.id === B.id && l.outcome === 'promoted' && child.lines.filter((x) => x.event === 'applied').length === 3,
      'B promoted again',
    );
    const exit = await child.kill();
    assertNoLoadErrors(child);
    const disk = await checkDisk(dir);
    const t = disk.state?.targets[TARGET];
    assert.equal(t?.active?.id, B.id);
    assert.notEqual(t?.active?.good, true);
    assert.equal(t?.last_good?.id, B.id);
    assert.equal(t?.last_good?.good, true);
    const expected = expectedFrom(disk.state, exit.at);
    assert.deepEqual(expected, { version: B.version, patchId: B.id, drop: B.id });
    const { disk: after } = await restartAndCheck(dir, expected, 'restart 1');
    // What is active now is the last good record, not the one that died in probation.
    assert.equal(after.state?.targets[TARGET]?.active?.good, true, `the restored version is the good one: ${JSON.stringify(after.state?.targets[TARGET])}`);
    await restartAndCheck(dir, { version: B.version, patchId: B.id }, 'restart 2 (nothing left to drop)');
  } finally {
    child.proc.kill('SIGKILL');
    await removeDir(dir);
  }
});

test('SIGKILL at random moments of endless promote/rollback cycles: state.json always parses and restarts are consistent', async (t) => {
  const dir = await stateDir();
  const random = seeded(20251027);
  const rounds = 15;
  let killedWithTemp = 0;
  const outcomes = new Map<string, number>();
  let previous: Expected | undefined;
  try {
    for (let round = 0; round < rounds; round++) {
      const child = new Child({ stateDir: dir, actions: [{ op: 'cycle', seed: round + 1 }] });
      try {
        const restored = await child.waitFor((l) => l.event === 'restored', 'restored');
        if (previous !== undefined) {
          // This process is the third start since the last kill: still the same version.
          assert.equal(restored.version, previous.version, child.describe());
          assert.equal(restored.patchId, previous.patchId, child.describe());
          assert.equal(restored.output, expectedDigest(previous.version, PROBE));
        }
        await new Promise((r) => setTimeout(r, 50 + Math.floor(random() * 350)));
        const exit = await child.kill();
        assertNoLoadErrors(child);
        const disk = await checkDisk(dir);
        if (disk.stateTemps.length > 0) killedWithTemp += 1;
        const expected = expectedFrom(disk.state, exit.at);
        const key = `${expected.version}${expected.drop === undefined ? '' : ` (dropped ${expected.drop})`}`;
        outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
        await restartAndCheck(dir, expected, `round ${round}`);
        previous = { version: expected.version, patchId: expected.patchId };
      } finally {
        child.proc.kill('SIGKILL');
      }
    }
    t.diagnostic(`${killedWithTemp} of ${rounds} kills left a state.json temp file behind`);
    t.diagnostic(`restarts came up on: ${[...outcomes].map(([k, n]) => `${k} x${n}`).join(', ')}`);
  } finally {
    await removeDir(dir);
  }
});

test('SIGKILL at each write of state.json (cut mid-write, or right after the rename), including the writes of restore()', async (t) => {
  // Plan: A promoted with probation 0 and confirmed good, then B promoted with a long
  // probation, then the process ends; the restart drops B (back to A, B marked failed). The
  // writes of state.json along the way are counted by an uninterrupted run, then a kill is
  // injected at each of them in turn. Whatever write is cut, the restarts must end on the
  // version the state before the restart called for, and with B marked failed whenever B
  // had died inside its probation.
  const A = PATCHES.A;
  const B = PATCHES.B;
  const plan: ChildAction[] = [apply('A', 0), { op: 'waitGood' }, apply('B', LONG_PROBATION)];
  const writesOf = (child: Child): number => {
    const done = child.lines.find((l) => l.event === 'done');
    assert.equal(typeof done?.stateWrites, 'number', child.describe());
    return done!.stateWrites as number;
  };

  let planWrites = 0;
  let restoreWrites = 0;
  {
    const dir = await stateDir();
    try {
      const { child, exit } = await runToEnd({ stateDir: dir, actions: plan });
      planWrites = writesOf(child);
      const expected = expectedFrom((await checkDisk(dir)).state, exit.at);
      assert.deepEqual(expected, { version: A.version, patchId: A.id, drop: B.id });
      const { child: restart } = await restartAndCheck(dir, expected, 'uninterrupted');
      restoreWrites = writesOf(restart);
    } finally {
      await removeDir(dir);
    }
  }
  assert.ok(planWrites >= 2 && restoreWrites >= 1, `writes: ${planWrites} by the plan, ${restoreWrites} by the restore`);
  t.diagnostic(`state.json writes: ${planWrites} by the plan, ${restoreWrites} by the restore that drops B`);

  for (const how of ['mid', 'after'] as const) {
    for (let n = 1; n <= planWrites + restoreWrites; n++) {
      const label = n <= planWrites ? `kill at write ${n} of the plan (${how})` : `kill at write ${n - planWrites} of the restore (${how})`;
      await t.test(label, async () => {
        const dir = await stateDir();
        try {
          if (n <= planWrites) {
            const child = new Child({ stateDir: dir, actions: plan, killAtStateWrite: { n, how } });
            const exit = await child.closed;
            assert.equal(exit.signal, 'SIGKILL', child.describe());
            assert.ok(
              child.lines.some((l) => l.event === 'injected-kill'),
              child.describe(),
            );
            assertNoLoadErrors(child);
            const disk = await checkDisk(dir);
            if (how === 'mid') assert.equal(disk.stateTemps.length, 1, 'the cut temp file is there');
            await restartTwice(dir, expectedFrom(disk.state, exit.at), label);
            return;
          }
          const { exit } = await runToEnd({ stateDir: dir, actions: plan });
          const expected = expectedFrom((await checkDisk(dir)).state, exit.at);
          assert.deepEqual(expected, { version: A.version, patchId: A.id, drop: B.id });
          const restart = new Child({ stateDir: dir, actions: [], killAtStateWrite: { n: n - planWrites, how } });
          const rexit = await restart.closed;
          assert.equal(rexit.signal, 'SIGKILL', restart.describe());
          await checkDisk(dir);
          // The restore that was killed never finished: the next one must still end on A with
          // B marked failed.
          const { child: next } = await runToEnd({ stateDir: dir, actions: [], probe: PROBE });
          const restored = await next.waitFor((l) => l.event === 'restored', 'restored');
          assert.equal(restored.version, A.version, next.describe());
          assert.equal(restored.output, expectedDigest(A.version, PROBE));
          const after = await checkDisk(dir);
          assert.deepEqual(after.stateTemps, []);
          assert.equal(after.state?.targets[TARGET]?.active?.id, A.id);
          assert.ok(
            after.state?.targets[TARGET]?.failed.includes(B.id),
            `B died inside its probation and was dropped, yet after a restore killed at its write ${n - planWrites} ` +
              `and another restart it is not marked failed: ${JSON.stringify(after.state?.targets[TARGET])}\n${next.describe()}`,
          );
          await restartAndCheck(dir, { version: A.version, patchId: A.id }, 'stable');
        } finally {
          await removeDir(dir);
        }
      });
    }
  }
});

test('a staged file changed on disk between runs is not restored: the hash check drops it', async () => {
  const A = PATCHES.A;
  const B = PATCHES.B;
  const tamper = async (dir: string, sha: string): Promise<void> => {
    const file = join(dir, 'staging', `${sha}.mjs`);
    assert.equal((await stat(file)).mode & 0o777, 0o444, 'staged files are read-only');
    await chmod(file, 0o644);
    const text = await readFile(file, 'utf8');
    await writeFile(file, text.replace(/const V = "1\.0\.(\d)"/, 'const V = "6.6.6"'));
    assert.notEqual(await readFile(file, 'utf8'), text);
  };

  // The good active patch is tampered with: nothing good is left but the built-in version.
  const one = await stateDir();
  try {
    await runToEnd({ stateDir: one, actions: [apply('A', 0), { op: 'waitGood' }] });
    await tamper(one, patchSha256(A));
    const { restored } = await restartTwice(one, { version: BUILTIN_VERSION, patchId: null, drop: A.id }, 'active patch tampered with', [patchSha256(A)]);
    const reason = (restored.reports as { dropped?: { reason: string } }[])[0]?.dropped?.reason ?? '';
    assert.match(reason, /hash/i);
    assert.match(reason, new RegExp(patchSha256(A)));
    // Applying the patch again replaces the changed bytes under its content address.
    const { child } = await runToEnd({ stateDir: one, actions: [apply('A', 0), { op: 'waitGood' }] });
    assert.ok(
      child.lines.some((l) => l.event === 'applied' && l.id === A.id && l.outcome === 'promoted'),
      child.describe(),
    );
    assert.ok((await checkDisk(one)).staged.includes(patchSha256(A)));
    await restartAndCheck(one, { version: A.version, patchId: A.id }, 're-applied after tampering');
  } finally {
    await removeDir(one);
  }

  // B died inside its probation, so the last good A is due back, but A was changed on disk:
  // neither comes back, the built-in version does, and the reason says both.
  const two = await stateDir();
  try {
    await runToEnd({ stateDir: two, actions: [apply('A', 0), { op: 'waitGood' }, apply('B', LONG_PROBATION)] });
    const t = (await checkDisk(two)).state?.targets[TARGET];
    assert.equal(t?.active?.id, B.id);
    assert.equal(t?.last_good?.id, A.id);
    await tamper(two, patchSha256(A));
    const { restored } = await restartTwice(two, { version: BUILTIN_VERSION, patchId: null, drop: B.id }, 'last good patch tampered with', [patchSha256(A)]);
    const reason = (restored.reports as { dropped?: { reason: string } }[])[0]?.dropped?.reason ?? '';
    assert.match(reason, /probation/);
    assert.match(reason, /hash/i);
  } finally {
    await removeDir(two);
  }
});

test('a truncated state.json makes restore() fail loudly with PARSE, and the file is left as it was', async () => {
  const dir = await stateDir();
  try {
    await runToEnd({ stateDir: dir, actions: [apply('A', 0), { op: 'waitGood' }] });
    const file = join(dir, 'state.json');
    const { size } = await stat(file);
    await truncate(file, Math.floor(size / 2));
    const cut = await readFile(file);
    const { child } = await runToEnd({ stateDir: dir, actions: [] }, 3);
    const failed = await child.waitFor((l) => l.event === 'restore-failed', 'restore-failed');
    assert.equal(failed.code, 'PARSE', child.describe());
    assert.ok(!child.lines.some((l) => l.event === 'restored'), 'nothing was restored');
    assert.deepEqual(await readFile(file), cut, 'state.json was not silently replaced');
  } finally {
    await removeDir(dir);
  }
});

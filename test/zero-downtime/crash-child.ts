/*
 * A host process for crash-recovery.test.ts, killed with SIGKILL at chosen moments.
 *
 *   node crash-child.js '<ChildConfig JSON>'
 *
 * It declares the target with a built-in implementation, restores what state.json says, prints
 * `{"event":"restored",...}`, then runs its actions (apply / rollback / cycle ...) while calling
 * the target in a loop. Every bus event and every step is printed as one JSON line on stdout
 * (a pipe: writes are synchronous on Linux, so a line is out before the next step runs), so the
 * parent can kill it on seeing a given line. Exit status: 0 done, 3 restore() failed (the error
 * code is printed), 4 a wait timed out, 5 an unexpected error.
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { resolve } from 'node:path';
import { EventBus, HotPatchError } from '../../src/core/index.js';
import { DynamicInstaller } from '../../src/installer/index.js';
import { HotPatchRuntime, twoPhaseApply } from '../../src/zero-downtime/index.js';
import { seeded, signedPatch } from './fixtures.js';
import { BUILTIN_VERSION, PATCHES, TARGET, expectedDigest, patchSource, type ChildAction, type ChildConfig, type PatchName } from './crash-shared.js';

function out(line: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

function codeOf(error: unknown): string | undefined {
  return error instanceof HotPatchError ? error.code : undefined;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const never = (): Promise<never> => new Promise<never>(() => undefined);

const config = JSON.parse(process.argv[2] ?? '{}') as ChildConfig;

// --- fault injection: writes of state.json are counted; SIGKILL at the n-th one if asked ---
let stateWrites = 0;
{
  const kill = config.killAtStateWrite;
  const statePath = resolve(config.stateDir, 'state.json');
  const rename = fsp.rename.bind(fsp);
  fsp.rename = (async (from: string, to: string): Promise<void> => {
    if (resolve(String(to)) !== statePath) return rename(from, to);
    const n = ++stateWrites;
    if (kill === undefined || n !== kill.n) return rename(from, to);
    const { how } = kill;
    if (how === 'mid') {
      // A write cut short: half the temp file on disk, never renamed.
      const { size } = await fsp.stat(from);
      await fsp.truncate(from, Math.floor(size / 2));
      out({ event: 'injected-kill', n, how, temp: String(from) });
      process.kill(process.pid, 'SIGKILL');
      return never();
    }
    await rename(from, to);
    out({ event: 'injected-kill', n, how });
    process.kill(process.pid, 'SIGKILL');
    return never();
  }) as typeof fsp.rename;
}

const bus = new EventBus();
bus.subscribe((e) => {
  out({ event: 'bus', type: e.type, id: e.id, version: e.version, reason: e.reason, ...(e.detail === undefined ? {} : { detail: e.detail }) });
});
const installer = new DynamicInstaller(config.stateDir);
const runtime = new HotPatchRuntime({ stateDir: config.stateDir, bus, installer });
const target = runtime.target(TARGET, {
  version: BUILTIN_VERSION,
  impl: { digest: (s: string): string => expectedDigest(BUILTIN_VERSION, s) },
  ...(config.isolation === undefined ? {} : { isolation: config.isolation }),
});
/** Inline the answer itself; isolated (config.isolation) a promise of it. */
const digest = (input: string): string | Promise<string> => target.api.digest(input);

const KNOWN_VERSIONS = new Set<string>([BUILTIN_VERSION, ...Object.values(PATCHES).map((p) => p.version)]);

/** Live traffic: every answer must be some known version's right answer for its input. */
async function load(): Promise<void> {
  for (let i = 0; ; i++) {
    const input = `m${i}`;
    try {
      const answer = await digest(input);
      const colon = answer.indexOf(':');
      const version = answer.slice(0, colon);
      if (!KNOWN_VERSIONS.has(version) || answer.slice(colon + 1) !== createHash('sha256').update(input).digest('hex')) {
        out({ event: 'load-error', input, answer });
      }
    } catch (error) {
      out({ event: 'load-error', input, message: messageOf(error) });
    }
    if (i % 20 === 0) await new Promise((r) => setImmediate(r));
  }
}

async function* slowly(bytes: Uint8Array, chunks: number, delayMs: number): AsyncGenerator<Uint8Array> {
  const size = Math.ceil(bytes.length / chunks);
  for (let i = 0; i * size < bytes.length; i++) {
    out({ event: 'chunk', i });
    yield bytes.subarray(i * size, Math.min((i + 1) * size, bytes.length));
    await sleep(delayMs);
  }
}

async function apply(action: Extract<ChildAction, { op: 'apply' }>): Promise<void> {
  const p = PATCHES[action.patch];
  const { verified, payload } = signedPatch(p.id, TARGET, p.version, patchSource(p));
  const data = action.slowStaging === undefined ? payload : slowly(payload, action.slowStaging.chunks, action.slowStaging.delayMs);
  out({ event: 'applying', id: p.id, version: p.version, probationMs: action.probationMs });
  try {
    const result = await twoPhaseApply(installer, verified, data, {
      runtime,
      probationMs: action.probationMs,
      steps: [1],
      // An isolated call is a round trip to a worker or child: a longer look gathers as many calls.
      canaryInterval: config.isolation === undefined ? 5 : 20,
      backoffFactor: 1,
      jitterRatio: 0,
      minCallsPerStep: 5,
      maxLatencyRatio: 1e6,
      ...action.canary,
    });
    out({ event: 'applied', id: p.id, version: p.version, outcome: result.outcome });
  } catch (error) {
    out({ event: 'apply-failed', id: p.id, code: codeOf(error), message: messageOf(error) });
  }
}

async function rollback(): Promise<void> {
  try {
    const v = await runtime.rollback(TARGET, 'crash test rollback');
    out({ event: 'rolled-back', version: v.version, patchId: v.patchId });
  } catch (error) {
    out({ event: 'rollback-failed', code: codeOf(error), message: messageOf(error) });
  }
}

async function waitGood(): Promise<void> {
  for (let waited = 0; waited < 20_000; waited += 2) {
    const active = (await runtime.store!.read()).targets[TARGET]?.active;
    if (active?.good === true) {
      out({ event: 'good', id: active.id, version: active.version });
      return;
    }
    await sleep(2);
  }
  out({ event: 'timeout', what: 'waitGood' });
  process.exit(4);
}

async function cycle(seed: number): Promise<never> {
  const random = seeded(seed);
  const names: PatchName[] = ['A', 'B', 'C'];
  for (;;) {
    const patch = names[Math.floor(random() * names.length)]!;
    await apply({ op: 'apply', patch, probationMs: random() < 0.5 ? 0 : 60_000 });
    const r = random();
    if (r < 0.4) await rollback();
    else if (r < 0.7) await sleep(Math.floor(random() * 4)); // lets a probation timer write
  }
}

async function main(): Promise<void> {
  let reports;
  try {
    reports = await runtime.restore();
  } catch (error) {
    out({ event: 'restore-failed', code: codeOf(error) ?? null, message: messageOf(error) });
    process.exit(3);
  }
  const probe = config.probe ?? 'probe';
  out({ event: 'restored', version: target.active.version, patchId: target.active.patchId, reports, output: await digest(probe) });
  // Isolated calls wait on a round trip: several callers keep the candidate as busy as inline.
  if (config.load ?? config.actions.length > 0) for (let i = 0; i < (config.isolation === undefined ? 1 : 8); i++) void load();
  for (const action of config.actions) {
    switch (action.op) {
      case 'apply':
        await apply(action);
        break;
      case 'rollback':
        await rollback();
        break;
      case 'waitGood':
        await waitGood();
        break;
      case 'sleep':
        await sleep(action.ms);
        break;
      case 'cycle':
        await cycle(action.seed);
    }
  }
  // No macrotask turn between the last action and the exit: a probation timer armed by the
  // last promotion has not fired, so state.json is exactly what that promotion wrote.
  out({ event: 'done', version: target.active.version, patchId: target.active.patchId, stateWrites });
  process.exit(0);
}

main().catch((error: unknown) => {
  out({ event: 'fatal', code: codeOf(error) ?? null, message: messageOf(error), stack: (error as Error).stack });
  process.exit(5);
});

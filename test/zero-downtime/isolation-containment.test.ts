/*
 * What an isolated version cannot do to the service: each failure a real patch can commit (a
 * loop at import or in a call, an exit in init, a segfaulting native addon, a 1 GB allocation)
 * in each isolated mode, while the service is called all along. Every case must end with the
 * built-in serving, every caller answered, and the failure named.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { HotPatchEvent, VerifiedManifest } from '../../src/core/index.js';
import { twoPhaseApply, type RuntimeVersion, type Target } from '../../src/zero-downtime/index.js';
import { until } from '../support/wait.js';
import { addonSource, buildAddon } from '../support/native-addon.js';
import { ciManifest, ciVerifier, signManifest } from '../support/patches.js';
import { isCode } from '../support/assertions.js';
import { FAST, drive, signedPatch, world, type World } from './fixtures.js';

const T = 'xps.math.sum';
type SumApi = { add(a: number, b: number): number };
const builtin: SumApi = { add: (a, b) => a + b };
const MODES = ['worker', 'process'] as const;
const LIMITS = { callTimeoutMs: 400, loadTimeoutMs: 3_000, memoryMb: 256 };
/** Retried on the baseline, so no caller sees the candidate's failures (the target is idempotent). */
const CANARY = { ...FAST, retryOnBaseline: true, steps: [0.25, 0.5] };

async function isolatedWorld(
  mode: (typeof MODES)[number],
  limits: Partial<typeof LIMITS> = {},
): Promise<{ w: World; target: Target<SumApi, { add(a: number, b: number): Promise<number> }> }> {
  const w = await world();
  const target = w.runtime.target(T, { version: '1.0.0', impl: builtin, idempotent: true, isolation: mode, isolationLimits: { ...LIMITS, ...limits } });
  return { w, target };
}

function esmPatch(id: string, version: string, source: string): { verified: VerifiedManifest; payload: Uint8Array } {
  return signedPatch(id, T, version, source);
}

function nativePatch(id: string, version: string, bytes: Uint8Array): { verified: VerifiedManifest; payload: Uint8Array } {
  const envelope = signManifest(ciManifest(id, T, version, bytes, { payload_type: 'native' }));
  return { verified: ciVerifier.verifyEnvelope(new TextEncoder().encode(envelope)), payload: bytes };
}

/** Applies while calling add(i, 1) in a loop; every answer must be right. */
async function applyWhileServing(
  w: World,
  target: { api: { add(a: number, b: number): Promise<number> } },
  patch: { verified: VerifiedManifest; payload: Uint8Array },
  options: Record<string, unknown> = CANARY,
): Promise<{ outcome: PromiseSettledResult<{ outcome: string; reason: string }>; ok: number; wrong: number; errors: unknown[] }> {
  const apply = twoPhaseApply(w.installer, patch.verified, patch.payload, { ...options, runtime: w.runtime });
  let wrong = 0;
  const load = await drive(async (i) => {
    if ((await target.api.add(i, 1)) !== i + 1) wrong += 1;
  }, apply);
  const [outcome] = await Promise.allSettled([apply]);
  return { outcome, ok: load.ok, wrong, errors: load.errors };
}

function reasonOf(events: readonly HotPatchEvent[]): string {
  return events
    .filter((e) => e.type === 'RolledBack' || e.type === 'Failed')
    .map((e) => e.reason)
    .join(' | ');
}

/** The canary failed (CANARY_FAILED, every call back on the built-in) for the reason `why`. */
function assertCanaryFailed(outcome: PromiseSettledResult<unknown>, why: RegExp): void {
  if (outcome.status === 'fulfilled') assert.fail(`the apply ended ${JSON.stringify(outcome.value)} instead of failing its canary`);
  assert.ok(isCode('CANARY_FAILED', why)(outcome.reason), String((outcome.reason as Error)?.message));
}

/** The candidate version, once the canary has started. */
async function candidateWhenCanaried(target: { canary: { candidate: RuntimeVersion } | null }): Promise<RuntimeVersion> {
  await until(() => target.canary !== null, 15_000, 'the canary started');
  return target.canary!.candidate;
}

const addSource = (body: string, extra = ''): string => `${extra}\nexport const api = { add(a, b) { ${body} } };\n`;

for (const mode of MODES) {
  test(`${mode}: a patch that loops for ever at import is killed at loadTimeoutMs (LOAD_FAILED) while the built-in serves every call`, async () => {
    const { w, target } = await isolatedWorld(mode);
    try {
      const r = await applyWhileServing(w, target, esmPatch('loop-import', '1.0.1', addSource('return a + b;', 'for (;;) {}')), {
        ...CANARY,
        loadTimeoutMs: 1_000,
      });
      assert.equal(r.outcome.status, 'rejected');
      assert.ok(isCode('LOAD_FAILED', /did not finish loading within 1000 ms/)((r.outcome as PromiseRejectedResult).reason));
      assert.deepEqual([r.errors.length, r.wrong], [0, 0]);
      assert.ok(r.ok > 0);
      assert.equal(target.active.patchId, null);
      assert.equal(await target.api.add(2, 3), 5);
    } finally {
      await w.close();
    }
  });

  test(`${mode}: a patch that loops for ever inside a call is killed as stuck and rolled back; with retryOnBaseline no caller sees it`, async () => {
    const { w, target } = await isolatedWorld(mode);
    try {
      const candidate = candidateWhenCanaried(target);
      const r = await applyWhileServing(w, target, esmPatch('loop-call', '1.0.1', addSource('if (a % 5 === 3) for (;;) {} return a + b;')));
      // Its calls time out, new ones are refused while it ignores pings, it is killed as stuck:
      // whichever the judge sees first fails the canary.
      assertCanaryFailed(r.outcome, new RegExp(`candidate's ${mode} died: stopped answering|did not answer within|candidate failed \\d+ of \\d+ calls`));
      // However the canary failed, the looping isolate is ended.
      const stuck = await candidate;
      await until(() => stuck.isolate?.state === 'terminated' || stuck.isolate?.state === 'dead', 15_000, 'the looping isolate ended');
      assert.deepEqual([r.errors.length, r.wrong], [0, 0]);
      assert.equal(target.active.patchId, null);
      assert.equal(await target.api.add(2, 3), 5);
    } finally {
      await w.close();
    }
  });

  test(`${mode}: process.exit(3) in init ends only the isolate: LOAD_FAILED naming the exit, the service serving`, async () => {
    const { w, target } = await isolatedWorld(mode);
    try {
      const r = await applyWhileServing(w, target, esmPatch('exit-init', '1.0.1', addSource('return a + b;', 'export function init() { process.exit(3); }')));
      assert.equal(r.outcome.status, 'rejected');
      assert.ok(isCode('LOAD_FAILED', /exited with code 3/)((r.outcome as PromiseRejectedResult).reason));
      assert.deepEqual([r.errors.length, r.wrong], [0, 0]);
      assert.equal(await target.api.add(2, 3), 5);
    } finally {
      await w.close();
    }
  });

  test(`${mode}: a candidate that exits in the middle of its canary fails the canary; the service never notices`, async () => {
    const { w, target } = await isolatedWorld(mode);
    try {
      const r = await applyWhileServing(w, target, esmPatch('exit-call', '1.0.1', addSource('if (a > 200) process.exit(7); return a + b;')));
      assertCanaryFailed(r.outcome, new RegExp(`candidate's ${mode} died: exited with code 7`));
      assert.match(reasonOf(w.events), /exited with code 7/);
      assert.deepEqual([r.errors.length, r.wrong], [0, 0]);
      assert.equal(await target.api.add(2, 3), 5);
    } finally {
      await w.close();
    }
  });

  test(`${mode}: a 1 GB allocation in a call is contained by the memory cap and the candidate rolled back`, async () => {
    // A generous deadline: a heap filling up collects for a while before it gives up, and the
    // cap, not the stuck-isolate watchdog, is what this case proves.
    const { w, target } = await isolatedWorld(mode, { callTimeoutMs: 20_000 });
    try {
      // worker: 1 GB of JS heap, past the worker's 256 MB heap (resourceLimits); process: a
      // 1 GB buffer, past the child's RLIMIT_DATA. Either way the host's memory is untouched.
      const grab =
        mode === 'worker'
          ? 'const keep = []; for (let i = 0; i < 1024 * 1024; i++) keep.push(new Array(128).fill(i));'
          : 'globalThis.keep = Buffer.alloc(1024 * 1024 * 1024, 1);';
      const before = process.memoryUsage().rss;
      const r = await applyWhileServing(w, target, esmPatch('alloc-1g', '1.0.1', addSource(`if (a > 100) { ${grab} } return a + b;`)));
      // The worker is ended at its heap cap; the child's allocation fails inside it (it lives on).
      assertCanaryFailed(r.outcome, mode === 'worker' ? /ERR_WORKER_OUT_OF_MEMORY/ : /candidate failed \d+ of \d+ calls/);
      assert.deepEqual([r.errors.length, r.wrong], [0, 0]);
      assert.ok(process.memoryUsage().rss - before < 512 * 1024 * 1024, 'the host did not take the gigabyte');
      assert.equal(await target.api.add(2, 3), 5);
    } finally {
      await w.close();
    }
  });
}

test('native: a real Node-API addon is refused inline and in a worker, and runs in a child process (promoted, answering)', async () => {
  const bytes = await buildAddon(addonSource({ tag: 'good' }));
  const inline = await world();
  try {
    inline.runtime.target(T, { version: '1.0.0', impl: builtin });
    const p = nativePatch('native-good', '1.0.1', bytes);
    await assert.rejects(
      twoPhaseApply(inline.installer, p.verified, p.payload, { ...FAST, runtime: inline.runtime }),
      isCode('LOAD_FAILED', /isolation: 'process'/),
    );
  } finally {
    await inline.close();
  }
  const worker = await isolatedWorld('worker');
  try {
    const p = nativePatch('native-good', '1.0.1', bytes);
    const r = await applyWhileServing(worker.w, worker.target, p);
    assert.ok(isCode('LOAD_FAILED', /need isolation 'process'/)((r.outcome as PromiseRejectedResult).reason));
    assert.equal(r.errors.length, 0);
  } finally {
    await worker.w.close();
  }
  const child = await isolatedWorld('process');
  try {
    const r = await applyWhileServing(child.w, child.target, nativePatch('native-good', '1.0.1', bytes));
    assert.equal((r.outcome as PromiseFulfilledResult<{ outcome: string }>).value?.outcome, 'promoted');
    assert.deepEqual([r.errors.length, r.wrong], [0, 0]);
    assert.equal(child.target.active.isolate?.mode, 'process');
    assert.equal(await child.target.api.add(40, 2), 42);
  } finally {
    await child.w.close();
  }
});

test('native: an addon that segfaults in a call takes down only its child; the canary fails and the service serves on', async () => {
  const bytes = await buildAddon(addonSource({ tag: 'segv', crashAbove: 150 }));
  const { w, target } = await isolatedWorld('process');
  try {
    const r = await applyWhileServing(w, target, nativePatch('native-segv', '1.0.1', bytes));
    assertCanaryFailed(r.outcome, /candidate's process died: was killed by SIGSEGV/);
    assert.match(reasonOf(w.events), /SIGSEGV/);
    assert.deepEqual([r.errors.length, r.wrong], [0, 0]);
    assert.equal(await target.api.add(2, 3), 5);
  } finally {
    await w.close();
  }
});

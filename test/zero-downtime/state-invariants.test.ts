import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { EventBus, HotPatchError } from '../../src/core/index.js';
import { DynamicInstaller } from '../../src/installer/index.js';
import { HotPatchRuntime, twoPhaseApply, type Target } from '../../src/zero-downtime/index.js';
import { drive, signedPatch, verifier, world } from './fixtures.js';

// State invariants over random operation sequences (apply good or faulty, roll back, abort,
// restart): state.json never lists the active patch as failed, and after a restart the runtime
// serves what state.json says is active.

const T = 'xps.test.invariants';
type Api = { f(x: number): number };
const PATCHES = {
  a: signedPatch('inv-a', T, '1.0.1', `export const api = { f: (x) => x + 1 };`),
  b: signedPatch('inv-b', T, '1.0.2', `export const api = { f: (x) => x + 1 };`),
  bad: signedPatch('inv-bad', T, '1.0.3', `export const api = { f: (x) => { throw new Error('broken'); } };`),
};
const OPTIONS = {
  steps: [0.5],
  canaryInterval: 5,
  jitterRatio: 0,
  minCalls: 0,
  minCallsPerStep: 5,
  warmupCalls: 0,
  minLatencySamples: 5,
  maxLatencyShift: 1000,
};

type Op =
  | { kind: 'apply'; patch: keyof typeof PATCHES; probation: boolean }
  | { kind: 'rollback'; to?: string }
  | { kind: 'abort' }
  | { kind: 'confirm' }
  | { kind: 'restart'; graceful: boolean };

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('apply' as const), patch: fc.constantFrom('a', 'b', 'bad') as fc.Arbitrary<keyof typeof PATCHES>, probation: fc.boolean() }),
  fc.constant({ kind: 'rollback' as const }),
  fc.record({ kind: fc.constant('rollback' as const), to: fc.constantFrom('1.0.0', '1.0.1', '1.0.2') }),
  fc.constant({ kind: 'abort' as const }),
  fc.constant({ kind: 'confirm' as const }),
  fc.record({ kind: fc.constant('restart' as const), graceful: fc.boolean() }),
);

function declare(runtime: HotPatchRuntime): Target<Api> {
  return runtime.target<Api>(T, { version: '1.0.0', impl: { f: (x: number) => x + 1 } });
}

async function checkInvariants(dir: string, target: Target<Api>, history: readonly Op[]): Promise<void> {
  let text: string;
  try {
    text = await readFile(join(dir, 'state.json'), 'utf8');
  } catch {
    return; // nothing recorded yet
  }
  const t = (JSON.parse(text) as { targets: Record<string, { active: { id: string | null; version: string } | null; failed: string[] }> }).targets[T];
  if (t === undefined || t.active === null) return;
  const where = JSON.stringify(history);
  if (t.active.id !== null) assert.ok(!t.failed.includes(t.active.id), `active ${t.active.id} is also failed after ${where}`);
  assert.equal(target.active.version, t.active.version, `runtime serves ${target.active.version}, state.json says ${t.active.version} after ${where}`);
}

const seen = { promoted: 0, refused: 0, rollbacks: 0, restarts: 0, confirms: 0, graceful: 0 };

test('state.json never lists the active patch as failed and matches what runs, over random apply/rollback/abort/confirm/restart sequences; a graceful restart or a confirmed version never reverts', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 8 }), async (ops) => {
      const w = await world();
      let runtime = w.runtime;
      let target = declare(runtime);
      try {
        const done: Op[] = [];
        for (const o of ops) {
          done.push(o);
          if (o.kind === 'apply') {
            const { verified, payload } = PATCHES[o.patch];
            const apply = twoPhaseApply(w.installer, verified, payload, { ...OPTIONS, runtime, probationMs: o.probation ? 600_000 : 0 });
            await drive((i) => {
              try {
                return target.api.f(i);
              } catch {
                return 0;
              }
            }, apply);
            await apply.then(
              (r) => {
                if (r.outcome === 'promoted') seen.promoted += 1;
              },
              (e: unknown) => {
                if (!(e instanceof HotPatchError)) throw e;
                seen.refused += 1;
              },
            );
          } else if (o.kind === 'rollback') {
            seen.rollbacks += 1;
            await runtime.rollback(T, 'property test', o.to === undefined ? {} : { to: o.to }).catch((e: unknown) => {
              // No previous / not retained (NOT_FOUND), or already serving that version (INVALID).
              if (!(e instanceof HotPatchError) || (e.code !== 'NOT_FOUND' && e.code !== 'INVALID')) throw e;
            });
          } else if (o.kind === 'confirm') {
            await runtime.confirm(T).then(
              () => void (seen.confirms += 1),
              (e: unknown) => {
                if (!(e instanceof HotPatchError) || e.code !== 'INVALID') throw e; // nothing in probation
              },
            );
          } else if (o.kind === 'abort') {
            // Abort an apply that has just started its canary.
            const { verified, payload } = PATCHES.a;
            const started = new Promise<void>((resolve) => runtime.bus.subscribe((e) => e.type === 'CanaryStarted' && resolve()));
            const apply = twoPhaseApply(w.installer, verified, payload, { ...OPTIONS, canaryInterval: 60_000, runtime, probationMs: 0 });
            const outcome = apply.catch((e: unknown) => e);
            const first = await Promise.race([started.then(() => 'started' as const), outcome.then(() => 'ended' as const)]);
            if (first === 'started') target.abort('property test abort');
            const e = await outcome;
            if (e instanceof Error && !(e instanceof HotPatchError)) throw e;
          } else {
            seen.restarts += 1;
            const before = target.active.version;
            const good = runtime.isGood(target.active);
            if (o.graceful) {
              seen.graceful += 1;
              await runtime.shutdown();
            } else {
              runtime.close();
            }
            runtime = new HotPatchRuntime({ stateDir: w.dir, bus: new EventBus(), installer: new DynamicInstaller(w.dir), verifier, durationProbeMs: 0 });
            target = declare(runtime);
            await runtime.restore();
            if (o.graceful || good)
              assert.equal(
                target.active.version,
                before,
                `a ${o.graceful ? 'graceful restart' : 'restart of a good version'} reverted ${before} after ${JSON.stringify(done)}`,
              );
          }
          await checkInvariants(w.dir, target, done);
        }
      } finally {
        runtime.close();
        await w.close();
      }
    }),
    { numRuns: 150, seed: 4242 },
  );
  // The sequences did exercise every path (a property over nothing proves nothing).
  assert.ok(seen.promoted > 5 && seen.refused > 2 && seen.rollbacks > 2 && seen.restarts > 2 && seen.confirms > 2 && seen.graceful > 2, JSON.stringify(seen));
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  Registries,
  registerInstaller,
  type LoadOptions,
  type LoadedModule,
  type Manifest,
  type ManifestFacts,
  type PatchInstaller,
  type PayloadType,
  type StagedPayload,
} from '../../src/core/index.js';
import { DynamicInstaller } from '../../src/installer/index.js';
import { type PatchPlan } from '../../src/orchestration/index.js';
import { HotPatchRuntime } from '../../src/zero-downtime/index.js';
import { isCode } from '../support/assertions.js';
import { T, builtin, makeEnv, planOf, withTraffic } from './helpers.js';

/**
 * An installer that is not a DynamicInstaller: it keeps its own ledger of what it staged and
 * loaded and hands the work to a dynamic installer it holds (composition, not a subclass), as
 * a service adding its own accounting or storage would.
 */
class LedgerInstaller implements PatchInstaller {
  readonly kind = 'ledger';
  readonly calls: string[] = [];
  readonly #inner: DynamicInstaller;

  constructor(stateDir: string) {
    this.#inner = new DynamicInstaller(stateDir);
  }

  async stage(manifest: Manifest, facts: ManifestFacts, payload: Uint8Array | AsyncIterable<Uint8Array>, signal?: AbortSignal): Promise<StagedPayload> {
    this.calls.push(`stage ${manifest.id}`);
    return this.#inner.stage(manifest, facts, payload, signal);
  }

  async verifyStaged(sha256: string, type: PayloadType): Promise<StagedPayload> {
    this.calls.push(`verifyStaged ${type}`);
    return this.#inner.verifyStaged(sha256, type);
  }

  async load(staged: StagedPayload, options: LoadOptions): Promise<LoadedModule> {
    this.calls.push(`load ${options.patchId}`);
    return this.#inner.load(staged, options);
  }

  release(target: string, sha256: string): void {
    this.calls.push(`release ${target}`);
    this.#inner.release(target, sha256);
  }
}

test("an installer of the service's own that implements PatchInstaller runs a plan end to end and restores it after a restart", async () => {
  const env = await makeEnv();
  try {
    const proc = env.process();
    const ledger = new LedgerInstaller(env.stateDir);
    proc.registries.installers.register('ledger', ledger);
    const planner = await proc.open();
    await env.publish('fix-101', '1.0.1');
    planner.addPlan(planOf('p1', { patch: 'fix-101', installer: 'ledger' }) as PatchPlan);
    const { result, errors } = await withTraffic(proc, planner.runOnce('p1'));
    assert.equal(result.status, 'activated', result.reason);
    assert.equal(errors, 0);
    assert.equal(proc.target.active.version, '1.0.1');
    assert.deepEqual(ledger.calls, ['stage fix-101', 'load fix-101']);
    await proc.runtime.shutdown(); // graceful: the probation resumes after the restart instead of reverting
    proc.runtime.close();

    // A restart: a new runtime over the same state directory restores through the same kind of installer.
    const restarted = new LedgerInstaller(env.stateDir);
    const runtime = new HotPatchRuntime({ stateDir: env.stateDir, installer: restarted });
    try {
      const target = runtime.target(T, { version: '1.0.0', impl: builtin, deterministic: true });
      await runtime.restore();
      assert.equal(target.active.version, '1.0.1');
      assert.ok(restarted.calls.includes('verifyStaged esm') && restarted.calls.includes('load fix-101'), restarted.calls.join(', '));
    } finally {
      runtime.close();
    }
  } finally {
    await env.close();
  }
});

test('an installer missing part of the contract is refused where it is handed over, naming what it lacks', () => {
  const partial = { kind: 'fake', stage: async () => undefined };
  const names = (e: unknown): boolean => isCode('INVALID')(e) && /missing verifyStaged, load, release/.test((e as Error).message);
  assert.throws(() => new Registries().installers.register('fake', partial as unknown as PatchInstaller), names);
  assert.throws(() => registerInstaller('fake', partial as unknown as PatchInstaller), names);
  assert.throws(() => new HotPatchRuntime({ installer: partial as unknown as PatchInstaller }), names);
  assert.throws(
    () => new Registries().installers.register('none', { stage() {}, verifyStaged() {}, load() {}, release() {} } as unknown as PatchInstaller),
    (e) => isCode('INVALID')(e) && /missing kind/.test((e as Error).message),
  );
  assert.throws(() => new Registries().installers.register('str', 'dynamic' as unknown as PatchInstaller), isCode('INVALID'));
});

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { EventBus } from '../../src/core/index.js';
import { DynamicInstaller } from '../../src/installer/index.js';
import { HotPatchRuntime, twoPhaseApply, type Target } from '../../src/zero-downtime/index.js';
import { FAST, drive, signedPatch, verifier, world } from './fixtures.js';

const T = 'xps.crypto.hash.sha256';
const digest = (s: string): string => createHash('sha256').update(s).digest('hex');

function restarted(dir: string): { runtime: HotPatchRuntime; target: Target<{ digest(s: string): string }> } {
  const runtime = new HotPatchRuntime({ stateDir: dir, bus: new EventBus(), installer: new DynamicInstaller(dir), verifier, durationProbeMs: 0 });
  const target = runtime.target(T, { version: '1.0.0', impl: { digest } });
  return { runtime, target };
}

test('with a verifier, restore re-verifies the kept signed manifest and reloads a good patch', async () => {
  const w = await world();
  try {
    const t = w.runtime.target(T, { version: '1.0.0', impl: { digest } });
    const { verified, payload } = signedPatch('kept-1', T, '1.0.1', `export const api = { digest: (s) => 'v101:' + s };`);
    const apply = twoPhaseApply(w.installer, verified, payload, { ...FAST, steps: [1], probationMs: 0, runtime: w.runtime });
    await drive((i) => t.api.digest(`m${i}`), apply);
    await apply;
    const { runtime, target } = restarted(w.dir);
    const reports = await runtime.restore();
    assert.equal(reports[0]?.dropped, undefined);
    assert.equal(target.api.digest('a'), 'v101:a');
    runtime.close();
  } finally {
    await w.close();
  }
});

test('a module planted in staging/ with a forged state.json record is not run when restore re-verifies', async () => {
  const w = await world();
  try {
    const source = `export const api = { digest: (s) => 'EVIL:' + s };`;
    const sha = createHash('sha256').update(source).digest('hex');
    await mkdir(join(w.dir, 'staging'), { recursive: true });
    const staged = join(w.dir, 'staging', `${sha}.mjs`);
    await writeFile(staged, source);
    await chmod(staged, 0o444);
    const record = { id: 'never-signed', version: '9.9.9', sha256: sha, type: 'esm', promoted_at: new Date().toISOString(), probation_ms: 0, good: true };
    await writeFile(
      join(w.dir, 'state.json'),
      JSON.stringify({ format: 1, targets: { [T]: { active: record, previous: null, last_good: record, failed: [] } } }),
    );
    const { runtime, target } = restarted(w.dir);
    const reports = await runtime.restore();
    assert.equal(reports[0]?.patchId, null);
    assert.match(reports[0]?.dropped?.reason ?? '', /never-signed/);
    assert.equal(target.api.digest('abc'), digest('abc'));
    runtime.close();
  } finally {
    await w.close();
  }
});

test('a corrupted active payload falls back to the newest intact good version, not to the built-in', async () => {
  const w = await world();
  try {
    const t = w.runtime.target(T, { version: '1.0.0', impl: { digest } });
    const applyGood = async (id: string, version: string, tag: string): Promise<string> => {
      const source = `export const api = { digest: (s) => '${tag}:' + s };`;
      const { verified, payload } = signedPatch(id, T, version, source);
      const apply = twoPhaseApply(w.installer, verified, payload, { ...FAST, steps: [1], minCalls: 0, probationMs: 0, runtime: w.runtime });
      await drive((i) => t.api.digest(`m${i}`), apply);
      assert.equal((await apply).outcome, 'promoted');
      return createHash('sha256').update(source).digest('hex');
    };
    await applyGood('intact-110', '1.1.0', 'v110');
    const sha120 = await applyGood('broken-120', '1.2.0', 'v120');
    // One flipped byte in the active version's staged file.
    const staged = join(w.dir, 'staging', `${sha120}.mjs`);
    await chmod(staged, 0o644);
    const { readFile } = await import('node:fs/promises');
    const bytes = await readFile(staged);
    bytes[bytes.length - 3] = bytes[bytes.length - 3]! ^ 0x01;
    await writeFile(staged, bytes);
    const { runtime, target } = restarted(w.dir);
    const reports = await runtime.restore();
    assert.equal(reports[0]?.version, '1.1.0', JSON.stringify(reports));
    assert.equal(reports[0]?.dropped?.patchId, 'broken-120');
    assert.equal(target.api.digest('a'), 'v110:a');
    runtime.close();
  } finally {
    await w.close();
  }
});

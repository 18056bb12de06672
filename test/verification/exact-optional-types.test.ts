/*
 * The README's calls type-check in a consumer's project compiled with the strictest options
 * (exactOptionalPropertyTypes included): e.g. passing `await runtime.highestVersion(t)`,
 * which may be undefined, as `highestVersion`. The snippet is compiled by the real `tsc`
 * against the built declaration files.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { runNode } from '../support/run-node.js';

test('verifyPatch(…, { highestVersion: await runtime.highestVersion(t) }) type-checks under exactOptionalPropertyTypes', { timeout: 120_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'hotpatch-types-'));
  try {
    const index = resolve('dist/src/index.js');
    const runtimeIndex = resolve('dist/src/index-runtime.js');
    await writeFile(
      join(dir, 'consumer.ts'),
      `import { verifyPatch, type PatchRepository, type PatchVerifier } from ${JSON.stringify(index)};
import type { HotPatchRuntime } from ${JSON.stringify(runtimeIndex)};
declare const runtime: HotPatchRuntime;
declare const repo: PatchRepository;
declare const verifier: PatchVerifier;
export async function check(target: string): Promise<string> {
  const verified = await verifyPatch(repo, verifier, 'hotfix-1', { highestVersion: await runtime.highestVersion(target) });
  return verified.manifest.version;
}
`,
    );
    const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
    const r = await runNode([
      tsc,
      '--noEmit',
      '--strict',
      '--exactOptionalPropertyTypes',
      '--skipLibCheck',
      '--module',
      'nodenext',
      '--moduleResolution',
      'nodenext',
      '--target',
      'es2022',
      '--types',
      'node',
      '--typeRoots',
      resolve('node_modules/@types'),
      join(dir, 'consumer.ts'),
    ]);
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

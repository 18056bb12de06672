/*
 * Mirrors with priorities and failover: a mirror that is down, or serves a tampered payload or
 * a forged manifest, is passed over (each failure recorded with its reason); the first mirror
 * whose files verify is the answer, and a mirror that served a bad file is not trusted for that
 * patch again.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parsePatchId } from '../../src/core/index.js';
import { FileSystemRepository, HttpRepository, RepositoryMirrors } from '../../src/repo/index.js';
import { verifyPatch } from '../../src/verification/index.js';
import { isCode } from '../support/assertions.js';
import { ciVerifier, forgedCiSigner, publishPatch } from '../support/patches.js';
import type { PatchPlan } from '../../src/orchestration/index.js';
import { FAST_ZDT, makeEnv, planOf, publish, withTraffic } from '../orchestration/helpers.js';

const ID = 'mirrored-1';
const SOURCE = 'export const api = { f: () => 1 };';

async function mirrorDir(root: string, name: string, damage?: 'payload' | 'forged'): Promise<FileSystemRepository> {
  const dir = join(root, name);
  const { mkdir } = await import('node:fs/promises');
  await mkdir(dir);
  await publishPatch(dir, ID, 'xps.demo.f', '1.0.1', SOURCE, damage === 'forged' ? { signers: [forgedCiSigner] } : {});
  if (damage === 'payload') await writeFile(join(dir, `${ID}.bin`), SOURCE.replace('1', '2'));
  return new FileSystemRepository(dir);
}

test('verifyPatch fails over past a down mirror, a tampered payload and a forged manifest to the first mirror that verifies', async () => {
  const root = await mkdtemp(join(tmpdir(), 'hotpatch-mirrors-'));
  try {
    const mirrors = new RepositoryMirrors([
      { name: 'down', repository: new HttpRepository('http://127.0.0.1:1/repo/'), priority: 0 },
      { name: 'tampered', repository: await mirrorDir(root, 'tampered', 'payload'), priority: 1 },
      { name: 'forged', repository: await mirrorDir(root, 'forged', 'forged'), priority: 2 },
      { name: 'good', repository: await mirrorDir(root, 'good'), priority: 3 },
    ]);
    const verified = await verifyPatch(mirrors, ciVerifier, ID);
    assert.equal(verified.manifest.id, ID);
    assert.deepEqual(
      mirrors.failures.map((f) => [f.mirror, f.code]),
      [
        ['down', 'IO'],
        ['tampered', 'HASH_MISMATCH'],
        ['forged', 'BAD_SIGNATURE'],
      ],
    );
    // The payload (for staging) is read from the mirror that verified, and the ones that served
    // bad files are never tried again for this patch; the down one may have come back.
    assert.deepEqual(
      mirrors.order(ID).map((m) => m.name),
      ['good', 'down'],
    );
    const chunks: Uint8Array[] = [];
    for await (const c of mirrors.openPayload(parsePatchId(ID), 1000)) chunks.push(c);
    assert.equal(Buffer.concat(chunks).toString(), SOURCE);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test('when no mirror serves a patch that verifies, the error says what each did (detail.failures); none has it: NOT_FOUND', async () => {
  const root = await mkdtemp(join(tmpdir(), 'hotpatch-mirrors-'));
  try {
    const bad = new RepositoryMirrors([
      { name: 'tampered', repository: await mirrorDir(root, 'tampered', 'payload') },
      { name: 'forged', repository: await mirrorDir(root, 'forged', 'forged') },
    ]);
    await assert.rejects(verifyPatch(bad, ciVerifier, ID), (error: unknown) => {
      assert.ok(isCode('HASH_MISMATCH', /no mirror served a patch that verifies \(2 tried\): tampered: HASH_MISMATCH .*; forged: BAD_SIGNATURE/)(error));
      assert.equal((error as { detail: { failures: unknown[] } }).detail.failures.length, 2);
      return true;
    });
    const empty = new RepositoryMirrors([
      { name: 'a', repository: await mirrorDir(root, 'a') },
      { name: 'b', repository: await mirrorDir(root, 'b') },
    ]);
    await assert.rejects(verifyPatch(empty, ciVerifier, 'absent-1'), isCode('NOT_FOUND', /a: NOT_FOUND .*; b: NOT_FOUND/));
    assert.deepEqual(await empty.list(), [ID]);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test('a Planner whose repository is a mirror list applies the patch from the mirror that verifies, past a tampered one', async () => {
  const env = await makeEnv();
  try {
    const { mkdir } = await import('node:fs/promises');
    const tamperedDir = join(env.dir, 'tampered');
    await mkdir(tamperedDir);
    await env.publish('fix-mirror-1', '1.0.1');
    await publish(tamperedDir, 'fix-mirror-1', '1.0.1');
    await writeFile(join(tamperedDir, 'fix-mirror-1.bin'), 'export const api = { digest: () => "wrong" };');
    const proc = env.process();
    const mirrors = new RepositoryMirrors([
      { name: 'tampered', repository: new FileSystemRepository(tamperedDir) },
      { name: 'good', repository: new FileSystemRepository(env.repoDir) },
    ]);
    proc.registries.repositories.register('mirrors', mirrors);
    const planner = await proc.open();
    planner.addPlan(planOf('via-mirrors', { patch: 'fix-mirror-1', repo: 'mirrors', zdt: { ...FAST_ZDT, probationMs: 0 } }) as PatchPlan);
    const { result, errors } = await withTraffic(proc, planner.runOnce('via-mirrors'));
    assert.equal(result.status, 'activated', result.reason);
    assert.equal(errors, 0);
    assert.equal(proc.target.active.patchId, 'fix-mirror-1');
    // The tampered payload is a different length: SIZE_MISMATCH, before any hash.
    assert.deepEqual(
      mirrors.failures.map((f) => [f.mirror, f.code]),
      [['tampered', 'SIZE_MISMATCH']],
    );
    // Recorded where operators look: the Verified event (and so the audit log) names the mirror passed over.
    const verifiedEvent = proc.events.find((e) => e.type === 'Verified' && e.id === 'fix-mirror-1');
    assert.match(verifiedEvent?.reason ?? '', /mirrors passed over: tampered \(SIZE_MISMATCH: /);
    assert.deepEqual(
      (verifiedEvent?.detail?.mirror_failures as { mirror: string; code: string }[]).map((f) => [f.mirror, f.code]),
      [['tampered', 'SIZE_MISMATCH']],
    );
    planner.close();
  } finally {
    await env.close();
  }
});

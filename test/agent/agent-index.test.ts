/*
 * An agent whose trust store has an index role reads its default repository — here a list of
 * two mirrors — through the signed index: the mirror serving a frozen index is passed over, the
 * patch the index lists is applied, and the index version it accepted is kept in its state
 * directory (the floor a replay is held to after a restart).
 */
import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { startAgent } from '../../src/agent/index.js';
import type { PatchPlan } from '../../src/orchestration/index.js';
import { INDEX_PAYLOAD_TYPE, signRepositoryIndex } from '../../src/verification/index.js';
import { signEnvelope, signerOf, testKey } from '../support/patches.js';
import { TRUST, hostRuntime, makeFixture, planOf, sha } from './helpers.js';

test('an agent with an index role applies what the signed index lists, from the mirror whose index is fresh, and keeps the index floor', async () => {
  const fx = await makeFixture('hotpatch-agent-index-');
  const idx = testKey('idx');
  try {
    await writeFile(
      fx.trustFile,
      JSON.stringify({ ...TRUST, keys: { ...TRUST.keys, idx: { alg: idx.alg, public_key: idx.publicPem } }, index: { keys: ['idx'], threshold: 1 } }),
    );
    await fx.publish('fix-1', '1.0.1');
    await signRepositoryIndex(fx.repoDir, idx.privateKey, { keyid: 'idx' });
    // The first mirror has the same patch but an index that expired yesterday (a frozen mirror).
    const frozen = join(fx.dir, 'frozen');
    await mkdir(frozen);
    for (const f of ['fix-1.json', 'fix-1.bin']) await writeFile(join(frozen, f), await readFile(join(fx.repoDir, f)));
    const body = { version: 1, expires: new Date(Date.now() - 86_400_000).toISOString(), patches: {} };
    await writeFile(join(frozen, 'index.json'), signEnvelope(INDEX_PAYLOAD_TYPE, Buffer.from(JSON.stringify(body)), [signerOf('idx', idx.privateKey)]));

    const host = hostRuntime(fx.stateDir);
    const agent = await startAgent({
      stateDir: fx.stateDir,
      runtime: host.runtime,
      defaults: { repository: [frozen, fx.repoDir], trustStore: fx.trustFile },
      log: false,
    });
    const traffic = setInterval(() => {
      for (let i = 0; i < 20; i++) assert.equal(host.target.api.digest(`x${i}`), sha(`x${i}`));
    }, 1);
    try {
      agent.planner.addPlan(planOf('indexed-apply', 'fix-1') as unknown as PatchPlan);
      const result = await agent.planner.runOnce('indexed-apply');
      assert.equal(result.status, 'activated', result.reason);
      assert.equal(host.target.active.patchId, 'fix-1');
      const floor = JSON.parse(await readFile(join(fx.stateDir, 'repository-index.json'), 'utf8')) as { version: number };
      assert.equal(floor.version, 1);
    } finally {
      clearInterval(traffic);
      await agent.close();
      host.runtime.close();
    }
  } finally {
    await fx.close();
  }
});

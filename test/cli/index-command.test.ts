/*
 * `hotpatch index` writes and signs a repository directory's index; `hotpatch verify` with a
 * trust store that has an index role accepts only what the index lists, and (with --state)
 * never an index older than the one the agent accepted.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { CI_TRUST, publishPatch } from '../support/patches.js';
import { hotpatch } from './run-cli.js';

test('hotpatch index signs the index; verify then accepts what it lists, refuses what it does not, and holds to the agent floor with --state', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'hotpatch-index-cli-'));
  try {
    const repo = join(dir, 'repo');
    const state = join(dir, 'state');
    await mkdir(repo);
    await mkdir(state);
    assert.equal(hotpatch(['keygen', '--alg', 'ed25519', '--out', join(dir, 'keys'), '--name', 'idx']).status, 0);
    const trust = join(dir, 'trust.json');
    const idxPem = await readFile(join(dir, 'keys', 'idx.pub'), 'utf8');
    await writeFile(
      trust,
      JSON.stringify({ ...CI_TRUST, keys: { ...CI_TRUST.keys, idx: { alg: 'ed25519', public_key: idxPem } }, index: { keys: ['idx'], threshold: 1 } }),
    );
    await publishPatch(repo, 'p-1', 'xps.demo.f', '1.0.1', 'export const api = { f: () => 1 };');

    const unindexed = hotpatch(['verify', '--repo', repo, '--id', 'p-1', '--trust', trust, '--json']);
    assert.equal(unindexed.status, 3, unindexed.stdout);
    assert.equal(unindexed.json?.code, 'NOT_FOUND');

    const first = hotpatch(['index', '--repo', repo, '--key', join(dir, 'keys', 'idx.key'), '--json']);
    assert.equal(first.status, 0, first.stderr);
    assert.match(String(first.json?.message), /^wrote index version 1 of .* \(1 patch, expires .*\); signatures: idx$/);
    const ok = hotpatch(['verify', '--repo', repo, '--id', 'p-1', '--trust', trust]);
    assert.equal(ok.status, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout, /^index: +version 1, signed by idx, expires .*; the manifest matches its entry$/m);

    await publishPatch(repo, 'p-2', 'xps.demo.f', '1.0.2', 'export const api = { f: () => 2 };');
    const notListed = hotpatch(['verify', '--repo', repo, '--id', 'p-2', '--trust', trust, '--json']);
    assert.equal(notListed.json?.code, 'NOT_FOUND');
    assert.match(String(notListed.json?.message), /not listed in the signed repository index \(version 1\)/);
    assert.equal(hotpatch(['index', '--repo', repo, '--key', join(dir, 'keys', 'idx.key')]).status, 0);
    const second = hotpatch(['verify', '--repo', repo, '--id', 'p-2', '--trust', trust, '--json']);
    assert.equal(second.status, 0, second.stdout);
    assert.deepEqual((second.json?.index as { version: number }).version, 2);

    // The agent accepted version 5 once (its floor file): an index of version 2 is a replay.
    await writeFile(join(state, 'repository-index.json'), JSON.stringify({ version: 5, hash: `sha256:${'0'.repeat(64)}` }));
    const replay = hotpatch(['verify', '--repo', repo, '--id', 'p-2', '--trust', trust, '--state', state, '--json']);
    assert.equal(replay.status, 1, replay.stdout);
    assert.equal(replay.json?.code, 'DOWNGRADE');
    assert.equal(JSON.parse(await readFile(join(state, 'repository-index.json'), 'utf8')).version, 5, 'verify never writes the agent floor');

    const usage = hotpatch(['index', '--repo', repo, '--key', join(dir, 'keys', 'idx.key'), '--add-signature', '--version', '9', '--json']);
    assert.equal(usage.status, 2);
    assert.match(String(usage.json?.message), /--add-signature signs the index as it is/);
    // A --version or --expires the index refuses is a bad flag too (exit 2), naming the flag.
    for (const [flags, message] of [
      [['--version', '2'], /^--version: index version 2 is not above the current version 2/],
      [['--expires', '2020-01-01T00:00:00Z'], /^--expires: index expires 2020-01-01T00:00:00Z is in the past/],
      [['--expires', 'tomorrow'], /^--expires: /],
    ] as const) {
      const bad = hotpatch(['index', '--repo', repo, '--key', join(dir, 'keys', 'idx.key'), ...flags, '--json']);
      assert.equal(bad.status, 2, bad.stdout);
      assert.match(String(bad.json?.message), message);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

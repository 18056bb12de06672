/*
 * The README's "Quick start on the command line", run as written (`npx hotpatch` being this
 * build's binary) in an empty directory: every command succeeds and the patch verifies under
 * the policy. A quick start that drifts from the CLI fails here first.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { withTempDir } from '../support/temp-dir.js';
import { CLI } from './run-cli.js';

test("the README's command-line quick start runs as written and ends with the patch verified", async () => {
  const readme = await readFile('README.md', 'utf8');
  const section = /^## Quick start on the command line\n([\s\S]*?)^## /m.exec(readme)?.[1];
  const script = section === undefined ? undefined : /^```sh\n([\s\S]*?)^```$/m.exec(section)?.[1];
  assert.ok(script !== undefined, 'the quick start has one sh block');
  assert.match(script, /npx hotpatch verify /);
  await withTempDir('hotpatch-quick-start-', async (dir) => {
    const run = spawnSync('bash', ['-e', '-c', script.replaceAll('npx hotpatch ', `${JSON.stringify(process.execPath)} ${JSON.stringify(CLI)} `)], {
      cwd: dir,
      encoding: 'utf8',
    });
    assert.equal(run.status, 0, `${run.stdout}\n${run.stderr}`);
    assert.match(run.stdout, /^policy: +allowed$/m);
    assert.match(run.stdout, /^OK: hotfix-sha256 verified$/m);
  });
});

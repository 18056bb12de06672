/*
 * `hotpatch demo` must succeed on a busy machine too: two CPU-burning neighbours run beside
 * it (on a 2-core CI runner, every core is contended), and the demo must still promote the
 * good patch, roll back the faulty one and serve every request. No sleeps and no timing
 * assertions: only the outcome is checked. The burners are always killed.
 */
import assert from 'node:assert/strict';
import { dirname, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { startCpuBurners } from '../support/cpu-burners.js';
import { runNode } from '../support/run-node.js';

/** This file runs from dist/test/cli/. */
const CLI = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'cli', 'main.js');
const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const SUCCESS = /^demo finished: \d+ requests served, 0 failed; 1\.0\.1 promoted, 1\.0\.2 rolled back; audit OK$/m;

test('the demo succeeds beside two CPU-burning neighbours', async () => {
  const burners = await startCpuBurners(2);
  try {
    // The guard only ends a demo that hangs for good; it is not a time the demo is held to.
    const r = await runNode([CLI, 'demo'], { cwd: PACKAGE_ROOT, hangGuardMs: 10 * 60_000 });
    const tail = `\n--- stdout (last 40 lines) ---\n${r.stdout.trimEnd().split('\n').slice(-40).join('\n')}\n--- stderr ---\n${r.stderr}`;
    assert.equal(r.hung, false, `the demo hung and was killed${tail}`);
    assert.equal(r.status, 0, `the demo exited with ${r.status ?? r.signal}${tail}`);
    assert.match(r.stdout, SUCCESS, `no success line${tail}`);
  } finally {
    await burners.stop();
  }
});

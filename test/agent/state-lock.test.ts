import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { startAgent } from '../../src/agent/index.js';
import { HotPatchError } from '../../src/core/index.js';
import { hostRuntime, makeFixture } from './helpers.js';

test("a lock naming this very pid (a container's PID 1 killed and started again) is stale: the agent starts", async () => {
  const fx = await makeFixture('hotpatch-lock-');
  try {
    await writeFile(join(fx.stateDir, 'agent.lock'), `${JSON.stringify({ pid: process.pid, startedAt: '2026-01-01T00:00:00.000Z' })}\n`, { mode: 0o600 });
    const agent = await startAgent({ stateDir: fx.stateDir, runtime: hostRuntime(fx.stateDir).runtime, log: false });
    await agent.close();
  } finally {
    await fx.close();
  }
});

test('a lock held by a live process of another pid still refuses a second agent', async () => {
  const fx = await makeFixture('hotpatch-lock-');
  try {
    // pid 1 (init, or the container's entry point) is alive and is not this process.
    await writeFile(join(fx.stateDir, 'agent.lock'), `${JSON.stringify({ pid: 1 })}\n`, { mode: 0o600 });
    await assert.rejects(
      startAgent({ stateDir: fx.stateDir, runtime: hostRuntime(fx.stateDir).runtime, log: false }),
      (e: unknown) => e instanceof HotPatchError && e.code === 'INVALID' && /another agent \(pid 1\)/.test(e.message),
    );
  } finally {
    await fx.close();
  }
});

/*
 * A host process for isolation-hostile.test.ts: a target isolated in child processes, a patch
 * promoted on it, then one call that sends the child's main thread into an endless loop. It
 * prints `{"pid": <the child's pid>}`; once the parent has seen the child loop, it writes a line
 * on stdin and the host either exits (argv[2] "exit") or goes on waiting to be SIGKILLed
 * (argv[2] "wait"). Either way the looping child must not outlive it.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EventBus } from '../../src/core/index.js';
import { DynamicInstaller } from '../../src/installer/index.js';
import { HotPatchRuntime, twoPhaseApply } from '../../src/zero-downtime/index.js';
import { signedPatch } from '../support/patches.js';

const how = process.argv[2] ?? 'wait';
const dir = await mkdtemp(join(tmpdir(), 'hotpatch-orphan-'));
const installer = new DynamicInstaller(dir);
const runtime = new HotPatchRuntime({ stateDir: dir, bus: new EventBus(), installer });
const target = runtime.target('xps.orphan.loop', { version: '1.0.0', impl: { add: (a: number) => a + 1 }, isolation: 'process' });
const { verified, payload } = signedPatch('orphan-1', 'xps.orphan.loop', '1.0.1', 'export const api = { add(a) { if (a === 13) for (;;) {} return a + 1; } };');
const apply = twoPhaseApply(installer, verified, payload, { runtime, steps: [1], canaryInterval: 5, minCallsPerStep: 5, warmupCalls: 0, probationMs: 0 });
let done = false;
void apply.finally(() => (done = true));
for (let i = 0; !done; i++) {
  await target.api.add(i % 10);
  // The built-in answers with promises already resolved: let the apply's I/O have its turn.
  if (i % 20 === 0) await new Promise((r) => setImmediate(r));
}
if ((await apply).outcome !== 'promoted') throw new Error('the patch was not promoted');
void target.api.add(13).catch(() => undefined);
process.stdout.write(`${JSON.stringify({ pid: target.active.isolate!.id })}\n`);
// The parent says when the child is seen looping: "exit" then exits, "wait" waits for its SIGKILL.
process.stdin.once('data', () => {
  if (how === 'exit') process.exit(0);
});
setInterval(() => undefined, 1000);

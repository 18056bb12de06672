/*
 * True unload: 50 successive versions of a patch that leaks (it pins 8 MB and starts a timer it
 * never stops), each promoted then retired. Inline, every one of them would stay in the
 * process for good; isolated, each retired version's worker or child is ended once drained, so
 * only the active and the warm previous version hold memory, and the host's RSS comes back.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { twoPhaseApply, type RuntimeVersion } from '../../src/zero-downtime/index.js';
import { running } from '../support/isolates.js';
import { until } from '../support/wait.js';
import { FAST, drive, signedPatch, world } from './fixtures.js';

const T = 'xps.cache.lookup';
const VERSIONS = 50;

const leakySource = (n: number): string => `
globalThis.pinned = Buffer.alloc(8 * 1024 * 1024, ${n % 251});
globalThis.junk = Array.from({ length: 100000 }, (_, i) => ({ i, s: 'v${n}-' + i }));
setInterval(() => { globalThis.ticks = (globalThis.ticks ?? 0) + 1; }, 1000);
export const api = { get(key) { return key + ':${n}'; } };
`;

/** Resident memory of a process in bytes (VmRSS), 0 once it is gone. */
function rssOf(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m === null ? 0 : Number(m[1]) * 1024;
  } catch {
    return 0;
  }
}

for (const mode of ['worker', 'process'] as const) {
  test(`${mode}: 50 leaking versions applied and retired one after another leave two live isolates and the host's memory where it was`, async () => {
    const w = await world();
    try {
      const target = w.runtime.target(T, { version: '1.0.0', impl: { get: (key: string) => `${key}:0` }, isolation: mode });
      const retired: RuntimeVersion[] = [];
      let startRss = 0;
      for (let n = 1; n <= VERSIONS; n++) {
        const { verified, payload } = signedPatch(`leaky-${n}`, T, `1.0.${n}`, leakySource(n));
        const apply = twoPhaseApply(w.installer, verified, payload, {
          ...FAST,
          steps: [0.5],
          probationMs: 0,
          runtime: w.runtime,
          // Memory is what this test judges: neither latency nor a call deadline, on a busy machine.
          maxLatencyShift: 10,
          canaryCallTimeoutMs: 20_000,
        });
        const load = await drive((i) => target.api.get(`k${i}`), apply);
        const result = await apply;
        assert.equal(result.outcome, 'promoted', result.reason);
        assert.deepEqual(
          load.errors.map((e) => String(e)),
          [],
        );
        await result.drain;
        if (n >= 3) retired.push(target.previous === undefined ? target.active : (retired.at(-1) ?? target.active));
        // The steady state (an active and a warm previous isolate) is the baseline memory.
        if (n === 2) startRss = process.memoryUsage().rss;
      }
      const live = [target.active, target.previous!];
      assert.ok(live.every((v) => v.isolate?.state === 'ready'));
      assert.equal(await target.api.get('k'), `k:${VERSIONS}`);
      const endRss = process.memoryUsage().rss;
      const childRss = mode === 'process' ? live.reduce((sum, v) => sum + rssOf(v.isolate!.id), 0) : 0;
      if (mode === 'process') {
        // Every child but the two live ones has exited.
        await until(() => retired.every((v) => v.isolate === undefined || v.isolate.state === 'terminated'), 15_000, 'every retired isolate ended');
      }
      console.log(
        `${mode}: host RSS after 2 versions ${(startRss / 2 ** 20).toFixed(0)} MiB, after ${VERSIONS} ${(endRss / 2 ** 20).toFixed(0)} MiB` +
          (mode === 'process' ? `; the two live children ${(childRss / 2 ** 20).toFixed(0)} MiB` : ''),
      );
      // Inline, the 48 retired versions would pin 48 × (8 MB + 100,000 objects) ≈ 800 MB for good.
      // Isolated, what stays is allocator slack: glibc keeps each ended worker thread's malloc
      // arena for the next thread (a plateau of at most 8 per core, not a growth per version).
      // The bench (isolation-calls) reports the ratio against the 10 % goal.
      assert.ok(endRss - startRss < 200 * 2 ** 20, `host RSS grew by ${endRss - startRss} bytes over ${VERSIONS - 2} versions`);
      if (mode === 'process') assert.ok(live.every((v) => running(v.isolate!.id)));
    } finally {
      await w.close();
    }
  });
}

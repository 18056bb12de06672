import assert from 'node:assert/strict';
import { test } from 'node:test';
import { latencyShare, twoPhaseApply } from '../../src/zero-downtime/index.js';
import { startCpuBurners } from '../support/cpu-burners.js';
import { signedPatch, world } from './fixtures.js';

// A candidate that serves one call in twenty, or one in four, runs colder than a baseline that
// serves the rest: between two of its calls the service's other work evicts its code and data
// from the CPU caches. Timed at those shares it reads ×2.3 and ×1.4–1.7 slower although its
// code is the baseline's, and the judge, right about the timings, would roll back a good patch
// (this test did, at 25 %, in 2 of 4 runs beside a CPU burner). Latency is therefore timed
// only from an even split, where both sides run equally often.

/** The same code for both versions: a checksum of the input through the module's own 128 KiB table. */
const SOURCE = `const table = new Int32Array(32768);
let x = 0x2545f491;
for (let i = 0; i < table.length; i++) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; table[i] = x; }
export const api = {
  score(s) {
    let h = s.charCodeAt(0);
    for (let i = 0; i < 256; i++) h = table[(h ^ i) & 32767];
    return h;
  },
};
`;

test(
  'an identical, freshly imported candidate whose data the service evicts between its calls is promoted with the default steps',
  { timeout: 120_000 },
  async () => {
    const builtin = (await import(`data:text/javascript,${encodeURIComponent(SOURCE)}`)) as { api: { score(s: string): number } };
    const burners = await startCpuBurners(1);
    const w = await world();
    try {
      const target = w.runtime.target('xps.test.rarity.score', { version: '1.0.0', impl: builtin.api });
      // The service's other work: 1 MiB of memory traffic between two calls of the target.
      const traffic = new Int32Array(256 * 1024);
      let running = true;
      let sink = 0;
      const load = (async () => {
        while (running) {
          for (let j = 0; j < 64; j++) {
            for (let i = 0; i < traffic.length; i += 16) sink += traffic[i]!++;
            sink += target.api.score('/session/peer-bench');
          }
          await new Promise((resolve) => setImmediate(resolve));
        }
      })();
      const { verified, payload } = signedPatch('rarity-1', 'xps.test.rarity.score', '1.0.1', `${SOURCE}// the same code, a new version\n`);
      const result = await twoPhaseApply(w.installer, verified, payload, { runtime: w.runtime, probationMs: 0 }).finally(() => {
        running = false;
      });
      await load;
      assert.equal(result.outcome, 'promoted', result.reason);
      // Latency was judged, from the 50 % step on, and only there.
      const steps = w.events.filter((e) => e.type === 'CanaryStep').map((e) => e.detail as { ratio: number; latencySamples: number });
      assert.ok(
        steps.some((s) => s.latencySamples > 0),
        'latency was judged before promotion',
      );
      for (const s of steps) if (s.ratio < 0.5) assert.equal(s.latencySamples, 0, `no latency sample at the ${s.ratio} step`);
      assert.ok(sink !== 0.5);
    } finally {
      await w.close();
      await burners.stop();
    }
  },
);

test('latency is timed from the 50 % step, or from the last step below 1 when every step is smaller', () => {
  assert.equal(latencyShare([0.004, 0.05, 0.25, 0.5]), 0.5);
  assert.equal(latencyShare([0.01, 0.1]), 0.1);
  assert.equal(latencyShare([0.5]), 0.5);
  assert.equal(latencyShare([0.1, 0.3, 0.6]), 0.5);
  assert.equal(latencyShare([0.1, 0.3]), 0.3);
  assert.equal(latencyShare([1]), 1);
});

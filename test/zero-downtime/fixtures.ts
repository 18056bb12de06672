import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { HotPatchEvent } from '../../src/core/index.js';
import { EventBus } from '../../src/core/index.js';
import { DynamicInstaller } from '../../src/installer/index.js';
import { HotPatchRuntime } from '../../src/zero-downtime/index.js';
import { xorshift32 } from '../support/random.js';

// Signed patches and the seeded generator live in test/support; re-exported for the tests here.
export { ciVerifier as verifier, signedPatch } from '../support/patches.js';
export { xorshift32 as seeded } from '../support/random.js';

export interface World {
  dir: string;
  runtime: HotPatchRuntime;
  installer: DynamicInstaller;
  events: HotPatchEvent[];
  bus: EventBus;
  close(): Promise<void>;
}

/** A runtime with its own state directory, installer and event log. */
export async function world(): Promise<World> {
  const dir = await mkdtemp(join(tmpdir(), 'hotpatch-zdt-'));
  const bus = new EventBus();
  const events: HotPatchEvent[] = [];
  bus.subscribe((e) => events.push(e));
  const installer = new DynamicInstaller(dir);
  const runtime = new HotPatchRuntime({ stateDir: dir, bus, installer });
  return {
    dir,
    runtime,
    installer,
    events,
    bus,
    close: async () => {
      runtime.close();
      await runtime.endIsolates();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Fast canary settings for tests: short intervals, deterministic jitter. */
export const FAST = { canaryInterval: 30, backoffFactor: 1.2, jitterRatio: 0.1, minCallsPerStep: 20, random: xorshift32(7) } as const;

/** Calls `fn` in a tight async loop until `until` settles; returns the outcomes. */
export async function drive<T>(fn: (i: number) => T | Promise<T>, until: Promise<unknown>): Promise<{ ok: number; errors: unknown[]; values: T[] }> {
  let done = false;
  void until.then(
    () => (done = true),
    () => (done = true),
  );
  const out = { ok: 0, errors: [] as unknown[], values: [] as T[] };
  for (let i = 0; !done; i++) {
    try {
      out.values.push(await fn(i));
      out.ok += 1;
    } catch (error) {
      out.errors.push(error);
    }
    if (i % 50 === 0) await new Promise((r) => setImmediate(r));
  }
  return out;
}

export function types(events: readonly HotPatchEvent[]): string[] {
  return events.map((e) => e.type);
}

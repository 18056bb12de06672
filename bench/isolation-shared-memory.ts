/*
 * The shared-memory fast path the isolation issue asked to try ("a SharedArrayBuffer ring with
 * Atomics, if it measurably pays"): the same echo as the bare postMessage anchor, but the
 * request and the answer cross a SharedArrayBuffer, the worker blocking in Atomics.wait and
 * the host awaiting Atomics.waitAsync. It is measured beside the anchor so the decision rests
 * on a figure: it is faster per round trip, but the isolate's thread then sits in
 * Atomics.wait between calls, so its event loop never turns — no async patch function, timer,
 * or I/O could complete there — and one slot serves one call at a time. The isolation layer
 * therefore keeps postMessage (README: "Isolation"); this row says what that costs.
 */
import { Worker } from 'node:worker_threads';

/** Slot layout (Int32): [0] request flag, [1] answer flag, [2] value. */
const WORKER_SOURCE = `
const { workerData } = require('node:worker_threads');
const slot = new Int32Array(workerData);
for (;;) {
  Atomics.wait(slot, 0, 0);
  Atomics.store(slot, 0, 0);
  Atomics.store(slot, 1, 1);
  Atomics.notify(slot, 1);
}
`;

/** Atomics.waitAsync (ES2024, in Node 20's V8), which the project's lib (ES2023) does not declare. */
const waitAsync = (Atomics as unknown as { waitAsync(a: Int32Array, i: number, v: number): { async: boolean; value: Promise<string> | string } }).waitAsync;

export interface SharedEcho {
  call(x: number): Promise<unknown>;
  close(): Promise<void>;
}

/** An echo across one shared slot: one call at a time (a second concurrent call would share the slot). */
export async function sharedMemoryEcho(): Promise<SharedEcho> {
  const slot = new Int32Array(new SharedArrayBuffer(12));
  const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: slot.buffer });
  await new Promise((resolve) => worker.once('online', resolve));
  let busy = false;
  return {
    async call(x) {
      if (busy) throw new Error('the shared-memory echo serves one call at a time');
      busy = true;
      try {
        Atomics.store(slot, 2, x);
        Atomics.store(slot, 1, 0);
        Atomics.store(slot, 0, 1);
        Atomics.notify(slot, 0);
        const waited = waitAsync(slot, 1, 0);
        if (waited.async) await waited.value;
        return Atomics.load(slot, 2);
      } finally {
        busy = false;
      }
    },
    close: async () => void (await worker.terminate()),
  };
}

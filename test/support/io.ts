/*
 * How many bytes this process read while something ran: Linux's /proc/self/io `rchar`
 * (bytes returned by read(2) and friends, in every thread of the process, the libuv pool
 * included). For "refused without reading it" checks that a timing bound could only guess at.
 */
import { readFile } from 'node:fs/promises';

async function rchar(): Promise<number> {
  const text = await readFile('/proc/self/io', 'utf8');
  const m = /^rchar: (\d+)$/m.exec(text);
  if (m === null) throw new Error(`no rchar line in /proc/self/io:\n${text}`);
  return Number(m[1]);
}

/** Runs `fn` and returns its result with the bytes the process read meanwhile (reading /proc/self/io itself adds a few hundred). */
export async function bytesReadDuring<T>(fn: () => Promise<T>): Promise<{ result: T; bytesRead: number }> {
  const before = await rchar();
  const result = await fn();
  const after = await rchar();
  return { result, bytesRead: after - before };
}

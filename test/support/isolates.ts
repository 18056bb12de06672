/*
 * The isolates of this test process as the operating system sees them: the child processes
 * running the isolate entry (process mode), found through /proc, so a test can prove that
 * none is left behind — neither by a retirement nor by a host that died.
 */
import { readFileSync, readdirSync } from 'node:fs';

const ENTRY = 'installer/isolate/entry.js';

/** Pids of live processes running the isolate entry whose parent is `parent` (default: this process; 1 …: re-parented orphans too). */
export function isolateProcesses(parent: number | 'any' = process.pid): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const cmdline = readFileSync(`/proc/${name}/cmdline`, 'utf8');
      if (!cmdline.includes(ENTRY)) continue;
      const status = readFileSync(`/proc/${name}/status`, 'utf8');
      const ppid = Number(/PPid:\s+(\d+)/.exec(status)?.[1]);
      const zombie = /State:\s+Z/.test(status);
      if (!zombie && (parent === 'any' || ppid === parent)) out.push(Number(name));
    } catch {
      // gone while we looked
    }
  }
  return out;
}

/** Whether process `pid` still runs (a zombie counts as gone). */
export function running(pid: number): boolean {
  try {
    return !/State:\s+Z/.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

/** CPU time process `pid` has used (user + system, clock ticks), 0 once it is gone. */
export function cpuTicks(pid: number): number {
  try {
    // Fields after the command (which may hold spaces) start after its closing parenthesis.
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return 0;
  }
}

/*
 * Shared by crash-recovery.test.ts (the parent) and crash-child.ts (the process that is
 * killed): the target, the patches (their ES module sources are fixed, so their content
 * addresses are the same in every process) and the child's configuration.
 */
import { createHash } from 'node:crypto';

export const TARGET = 'xps.crypto.hash.sha256';
export const BUILTIN_VERSION = '1.0.0';

export interface PatchSpec {
  id: string;
  version: string;
  /** Bytes of padding (a comment) so staging takes several chunks. */
  pad?: number;
}

export const PATCHES = {
  A: { id: 'crash-a', version: '1.0.1' },
  B: { id: 'crash-b', version: '1.0.2' },
  C: { id: 'crash-c', version: '1.0.3' },
  /** Large, staged slowly chunk by chunk (kill during staging). */
  S: { id: 'crash-slow', version: '1.0.9', pad: 256 * 1024 },
} as const satisfies Record<string, PatchSpec>;

export type PatchName = keyof typeof PATCHES;

function sha256Hex(s: string | Uint8Array): string {
  return createHash('sha256').update(s).digest('hex');
}

/** What version `version` of the target answers for `input`: the version, a colon, the SHA-256. */
export function expectedDigest(version: string, input: string): string {
  return `${version}:${sha256Hex(input)}`;
}

/** The ES module payload of a patch (deterministic, so every process stages the same file). */
export function patchSource(p: PatchSpec): string {
  const lines = [
    `import { createHash } from 'node:crypto';`,
    `const V = ${JSON.stringify(p.version)};`,
    `export const api = { digest: (s) => V + ':' + createHash('sha256').update(String(s)).digest('hex') };`,
    `export function selfTest() { if (api.digest('abc') !== V + ':ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad') throw new Error('KAT of ' + V); }`,
  ];
  if (p.pad !== undefined) lines.push(`/* ${'x'.repeat(p.pad)} */`);
  return `${lines.join('\n')}\n`;
}

/** Content address of a patch's payload (its name under staging/). */
export function patchSha256(p: PatchSpec): string {
  return sha256Hex(patchSource(p));
}

export interface CanaryConfig {
  steps?: number[];
  canaryInterval?: number;
  backoffFactor?: number;
  minCallsPerStep?: number;
}

export type ChildAction =
  | { op: 'apply'; patch: PatchName; probationMs: number; canary?: CanaryConfig; slowStaging?: { chunks: number; delayMs: number } }
  | { op: 'rollback' }
  /** Waits until state.json (as the runtime last wrote it) marks the active version good. */
  | { op: 'waitGood' }
  | { op: 'sleep'; ms: number }
  /** Promote / roll back forever, writing state.json all the time (seeded choices). */
  | { op: 'cycle'; seed: number };

export interface ChildConfig {
  stateDir: string;
  actions: ChildAction[];
  /** Input of the probe call printed after restore (default "probe"). */
  probe?: string;
  /** Call target.api in a loop while the actions run (default: true when there are actions). */
  load?: boolean;
  /**
   * Fault injection: SIGKILL this process at its n-th write of state.json (1-based), either
   * "mid" (the temp file is cut to half its length, then the kill, before the rename) or
   * "after" (right after the rename, before the directory fsync).
   */
  killAtStateWrite?: { n: number; how: 'mid' | 'after' };
  /** The target's isolation (default inline). */
  isolation?: 'worker' | 'process';
}

/** Set by the wrapper files that run a suite again with isolated versions (HOTPATCH_TEST_ISOLATION). */
export function isolationUnderTest(): 'worker' | 'process' | undefined {
  const mode = process.env.HOTPATCH_TEST_ISOLATION;
  if (mode === undefined || mode === '' || mode === 'inline') return undefined;
  if (mode !== 'worker' && mode !== 'process') throw new Error(`HOTPATCH_TEST_ISOLATION must be inline, worker or process, got ${mode}`);
  return mode;
}

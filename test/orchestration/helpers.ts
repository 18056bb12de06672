import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EventBus, Registries, type HotPatchEvent } from '../../src/core/index.js';
import { DynamicInstaller } from '../../src/installer/index.js';
import { Planner, type PlannerOptions, type PlanZdtOptions } from '../../src/orchestration/index.js';
import { FileSystemRepository } from '../../src/repo/index.js';
import { SecurityGate } from '../../src/security/index.js';
import { DefaultVerifier, parseTrustStore } from '../../src/verification/index.js';
import { HotPatchRuntime, type Target } from '../../src/zero-downtime/index.js';
import { CI_TRUST, forgedCiSigner, publishPatch } from '../support/patches.js';
export { until } from '../support/wait.js';

export const T = 'xps.crypto.hash.sha256';
export const OTHER = 'xps.crypto.hash.other';
export const sha = (s: string): string => createHash('sha256').update(s).digest('hex');
export const builtin = { digest: (s: string) => sha(s) };

/** An ES module computing the same digests as the built-in (so the canary passes), tagged to make each payload distinct. */
export function goodSource(tag: string): string {
  return `import { createHash } from 'node:crypto';
// ${tag}
export const api = { digest: (s) => createHash('sha256').update(s).digest('hex') };
export function selfTest() { if (api.digest('abc') !== 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad') throw new Error('KAT'); }
`;
}

/** A module that throws on every 5th call: its canary fails on the error rate. */
export const FLAKY = `let n = 0; export const api = { digest: (s) => { if (++n % 5 === 0) throw new Error('flaky'); return s; } };`;

/** Fast canary: two short steps, few calls needed, latency not judged on a busy CI box. */
export const FAST_ZDT: PlanZdtOptions = {
  steps: [0.5, 1],
  canaryInterval: 10,
  backoffFactor: 1,
  jitterRatio: 0,
  minCallsPerStep: 5,
  minCalls: 0,
  minLatencySamples: 5,
  maxLatencyRatio: 1000,
};

/** The trust store of every process: the ci key of test/support/patches.ts. */
export const TRUST = CI_TRUST;

export interface PublishOptions {
  target?: string;
  source?: string;
  /** Sign with a key the trust store does not hold, under the trusted key id. */
  forged?: boolean;
  expires?: string;
}

/** Writes `<id>.json` (a really signed DSSE envelope) and `<id>.bin` into a repository directory. */
export async function publish(repoDir: string, id: string, version: string, options: PublishOptions = {}): Promise<void> {
  await publishPatch(repoDir, id, options.target ?? T, version, options.source ?? goodSource(`${id} ${version}`), {
    ...(options.expires === undefined ? {} : { manifest: { expires: options.expires } }),
    ...(options.forged === true ? { signers: [forgedCiSigner] } : {}),
  });
}

/** One process: a runtime with the target declared, its installer and the registered components. */
export interface Proc {
  runtime: HotPatchRuntime;
  installer: DynamicInstaller;
  registries: Registries;
  target: Target<typeof builtin>;
  other: Target<typeof builtin>;
  events: HotPatchEvent[];
  open(options?: Partial<PlannerOptions>): Promise<Planner>;
}

export interface Env {
  dir: string;
  stateDir: string;
  repoDir: string;
  publish(id: string, version: string, options?: PublishOptions): Promise<void>;
  /** A fresh process over the same state directory (as after a restart); `restore()` not yet called. */
  process(): Proc;
  journal(): Promise<Record<string, unknown> & { plans: Record<string, unknown>[] }>;
  close(): Promise<void>;
}

/** `stateDir`: an existing directory to keep the state in (e.g. on a small disk); default: a new one. */
export async function makeEnv(options: { stateDir?: string } = {}): Promise<Env> {
  const dir = await mkdtemp(join(tmpdir(), 'hotpatch-orch-'));
  const stateDir = options.stateDir ?? join(dir, 'state');
  const repoDir = join(dir, 'repo');
  if (options.stateDir === undefined) await mkdir(stateDir, { mode: 0o700 });
  await mkdir(repoDir);
  const runtimes: HotPatchRuntime[] = [];
  return {
    dir,
    stateDir,
    repoDir,
    publish: (id, version, options) => publish(repoDir, id, version, options),
    process(): Proc {
      const bus = new EventBus();
      const events: HotPatchEvent[] = [];
      bus.subscribe((e) => events.push(e));
      const installer = new DynamicInstaller(stateDir);
      const runtime = new HotPatchRuntime({ stateDir, bus, installer });
      runtimes.push(runtime);
      const target = runtime.target(T, { version: '1.0.0', impl: builtin, deterministic: true });
      const other = runtime.target(OTHER, { version: '1.0.0', impl: builtin, deterministic: true });
      const registries = new Registries();
      registries.repositories.register('fs', new FileSystemRepository(repoDir));
      registries.verifiers.register('default', new DefaultVerifier(parseTrustStore(TRUST)));
      registries.security.register('gate', new SecurityGate());
      registries.installers.register('dynamic', installer);
      return {
        runtime,
        installer,
        registries,
        target,
        other,
        events,
        open: (options = {}) => Planner.open({ runtime, registries, ...options }),
      };
    },
    journal: async () => JSON.parse(await readFile(join(stateDir, 'journal.json'), 'utf8')),
    close: async () => {
      for (const r of runtimes) r.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** The fields every test plan shares. */
export function planOf(
  id: string,
  extra: Record<string, unknown> = {},
): { id: string; target: string; repo: string; verifier: string; security: string; installer: string; zdt: PlanZdtOptions } & Record<string, unknown> {
  return { id, target: T, repo: 'fs', verifier: 'default', security: 'gate', installer: 'dynamic', zdt: FAST_ZDT, ...extra };
}

/**
 * Calls the targets through their api (as live traffic would) until `until` settles, so the
 * canary has calls to judge. Also returns how many calls failed or answered wrongly.
 */
export async function withTraffic<R>(proc: Proc, until: Promise<R>): Promise<{ result: R; errors: number }> {
  let done = false;
  void until.then(
    () => (done = true),
    () => (done = true),
  );
  let errors = 0;
  for (let i = 0; !done; i++) {
    for (const t of [proc.target, proc.other]) {
      try {
        const out = t.api.digest(`m${i}`);
        if (out !== sha(`m${i}`)) errors += 1;
      } catch {
        errors += 1; // counted, and reported to the caller
      }
    }
    if (i % 20 === 0) await new Promise((r) => setImmediate(r));
  }
  return { result: await until, errors };
}

export function types(events: readonly HotPatchEvent[], plan?: string): string[] {
  return events.filter((e) => plan === undefined || e.detail?.plan === undefined || e.detail.plan === plan).map((e) => e.type);
}

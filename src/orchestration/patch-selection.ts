import semver from 'semver';
import { decodeEnvelope, parseManifest, type VerifiedManifest } from '../core/index.js';
import type { HotPatchRuntime } from '../zero-downtime/index.js';
import type { PlanComponents } from './dry-run.js';
import type { PatchPlan } from './plan.js';
import { codeOf, type Outcome } from './run-outcome.js';

/**
 * Polling: the highest version for the plan's target among the repository's patches (from its
 * signed index when it has one) whose envelope verifies now (a forged or downgraded "newest" patch cannot block real ones), not
 * counting patches the runtime recorded as failed. Returns the id, or a waiting outcome.
 */
export async function selectPatch(
  runtime: HotPatchRuntime,
  plan: PatchPlan,
  c: PlanComponents,
  highestVersion: string | undefined,
  resumePatch: string | undefined,
  signal: AbortSignal | undefined,
): Promise<string | Outcome> {
  const failed = new Set(runtime.store === undefined ? [] : ((await runtime.store.read()).targets[plan.target]?.failed ?? []));
  // A signed index says which version each patch is: read manifests highest version first
  // and stop below the first one that verifies, instead of reading every manifest.
  const listed = c.repo.listEntries === undefined ? undefined : (await c.repo.listEntries(signal)).filter((e) => e.target === plan.target);
  listed?.sort((a, b) => semver.rcompare(a.version, b.version));
  const ids = listed === undefined ? await c.repo.list(signal) : listed.map((e) => e.id);
  const candidates: { id: string; version: string }[] = [];
  const rejected: string[] = [];
  let skippedFailed = 0;
  for (const [i, id] of ids.entries()) {
    if (listed !== undefined && candidates.length > 0 && semver.lt(listed[i]!.version, candidates[0]!.version)) break;
    let bytes: Uint8Array;
    try {
      bytes = await c.repo.fetchEnvelope(id, signal);
    } catch (error) {
      const code = codeOf(error);
      if (code === 'ABORTED') throw error;
      if (code !== 'NOT_FOUND') rejected.push(`${id} (${code ?? (error as Error).message})`);
      continue;
    }
    if (claimedTarget(bytes) !== plan.target) continue;
    if (failed.has(id) && id !== resumePatch) {
      skippedFailed += 1;
      continue;
    }
    let verified: VerifiedManifest;
    try {
      verified = c.verifier.verifyEnvelope(bytes, highestVersion === undefined ? {} : { highestVersion });
    } catch (error) {
      const code = codeOf(error);
      if (code !== 'DOWNGRADE') rejected.push(`${id} (${code ?? (error as Error).message})`);
      continue;
    }
    if (verified.manifest.id !== id) {
      rejected.push(`${id} (INVALID: its manifest names ${verified.manifest.id})`);
      continue;
    }
    if (verified.manifest.target === plan.target) candidates.push({ id, version: verified.manifest.version });
  }
  if (candidates.length === 0) {
    const notes = [
      rejected.length > 0 ? `rejected: ${rejected.slice(0, 5).join(', ')}${rejected.length > 5 ? ` and ${rejected.length - 5} more` : ''}` : undefined,
      skippedFailed > 0 ? `${skippedFailed} failed before, not retried` : undefined,
    ].filter((n) => n !== undefined);
    return {
      status: 'waiting',
      reason: `no acceptable patch for ${plan.target} in repository ${plan.repo} yet${notes.length > 0 ? ` (${notes.join('; ')})` : ''}`,
      code: 'NOT_FOUND',
    };
  }
  const active = runtime.list().find((t) => t.name === plan.target)?.active.patchId;
  candidates.sort((a, b) => semver.rcompare(a.version, b.version) || (a.id === active ? -1 : b.id === active ? 1 : 0));
  return candidates[0]!.id;
}

/** The target an envelope claims (unverified; only to pick which envelopes to verify). */
function claimedTarget(bytes: Uint8Array): string | undefined {
  try {
    return parseManifest(decodeEnvelope(bytes).payload).manifest.target;
  } catch {
    return undefined; // not a manifest at all: it cannot be a candidate for any target
  }
}

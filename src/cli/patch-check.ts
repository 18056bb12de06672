import type { VerifiedManifest } from '../core/index.js';
import { openRepository } from '../repo/index.js';
import { join } from 'node:path';
import { DefaultVerifier, INDEX_FLOOR_FILE, IndexedRepository, verifyPatch, type TrustStore, type VerifiedIndex } from '../verification/index.js';

/**
 * A patch of a repository (a directory `DIR/ID.json` + `DIR/ID.bin`, or the same over http(s)), checked the way an agent
 * checks what it is about to apply: the library's `verifyPatch` with the `DefaultVerifier` of
 * the trust store (envelope, manifest, signatures and threshold for the target, expiry,
 * anti-downgrade against `highest`, payload size and hash). When the trust store has an index
 * role, through the repository's signed index (held to the agent's index floor in `stateDir`,
 * never writing it). One path for `hotpatch verify` and `hotpatch fleet rollout --repo`, so
 * the two can never disagree about a patch.
 */
export async function verifyRepoPatch(
  repoDir: string,
  id: string,
  trust: TrustStore,
  highest?: ReadonlyMap<string, string>,
  stateDir?: string,
): Promise<{ verified: VerifiedManifest; index: VerifiedIndex | undefined }> {
  const repository = openRepository(repoDir);
  const indexed =
    trust.index === undefined
      ? undefined
      : new IndexedRepository(repository, {
          trustStore: trust,
          ...(stateDir === undefined ? {} : { floorFile: join(stateDir, INDEX_FLOOR_FILE), readOnlyFloor: true }),
        });
  const verified = await verifyPatch(indexed ?? repository, new DefaultVerifier(trust), id, {
    now: Date.now(),
    ...(highest === undefined ? {} : { highestVersion: (target: string) => highest.get(target) }),
  });
  return { verified, index: indexed?.current };
}

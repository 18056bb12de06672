import type { VerifiedManifest } from '../core/index.js';
import { openRepository } from '../repo/index.js';
import { DefaultVerifier, verifyPatch, type TrustStore } from '../verification/index.js';

/**
 * A patch of a repository (a directory `DIR/ID.json` + `DIR/ID.bin`, or the same over http(s)), checked the way an agent
 * checks what it is about to apply: the library's `verifyPatch` with the `DefaultVerifier` of
 * the trust store (envelope, manifest, signatures and threshold for the target, expiry,
 * anti-downgrade against `highest`, payload size and hash). One path for `hotpatch verify`
 * and `hotpatch fleet rollout --repo`, so the two can never disagree about a patch.
 */
export function verifyRepoPatch(repoDir: string, id: string, trust: TrustStore, highest?: ReadonlyMap<string, string>): Promise<VerifiedManifest> {
  return verifyPatch(openRepository(repoDir), new DefaultVerifier(trust), id, {
    now: Date.now(),
    ...(highest === undefined ? {} : { highestVersion: (target: string) => highest.get(target) }),
  });
}

import {
  HotPatchError,
  isHotPatchError,
  parsePatchId,
  type ErrorCode,
  type MirrorFailure,
  type PatchRepository,
  type PatchVerifier,
  type VerificationContext,
  type VerifiedManifest,
} from '../core/index.js';
import { allFailed } from '../repo/index.js';

/** Failures that are the file a mirror served (not the mirror being down): it is not trusted for that patch again. */
const BAD_FILE: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'HASH_MISMATCH',
  'SIZE_MISMATCH',
  'BAD_SIGNATURE',
  'UNTRUSTED_KEY',
  'THRESHOLD_NOT_MET',
  'PARSE',
  'INVALID',
  'TOO_LARGE',
  'DOWNGRADE',
  'KEY_REVOKED',
  'DECRYPT_FAILED',
  'EXPIRED',
  'NOT_YET_VALID',
  'ALGORITHM_DISALLOWED',
]);

/**
 * The whole trust pipeline for one patch id: fetch the envelope, verify it, then stream the
 * payload through size and hash checks. Asks the repository for payload_size + 1 bytes so an
 * oversize payload is caught after one extra byte.
 */
export async function verifyPatch(
  repository: PatchRepository,
  verifier: PatchVerifier,
  id: string,
  context: VerificationContext = {},
  signal?: AbortSignal,
): Promise<VerifiedManifest> {
  const patchId = parsePatchId(id);
  const mirrors = repository.mirrored;
  if (mirrors === undefined) return verifyFrom(repository, verifier, patchId, context, signal);
  // Mirrors: the whole verification from each in turn, reads pinned to it, until one passes.
  // Every mirror is untrusted storage; the first whose files verify is the answer.
  const failures: MirrorFailure[] = [];
  for (const mirror of mirrors.candidates(patchId)) {
    mirrors.pin(patchId, mirror);
    try {
      const verified = await verifyFrom(repository, verifier, patchId, context, signal);
      mirrors.markGood(patchId, mirror);
      return verified;
    } catch (error) {
      if (isHotPatchError(error, 'ABORTED') || signal?.aborted === true) throw error;
      failures.push(mirrors.record(mirror, error));
      if (isHotPatchError(error) && BAD_FILE.has(error.code)) mirrors.markBad(patchId, mirror);
    } finally {
      mirrors.pin(patchId, undefined);
    }
  }
  throw allFailed(patchId, failures, (n) => `no mirror served a patch that verifies (${n} tried)`);
}

async function verifyFrom(
  repository: PatchRepository,
  verifier: PatchVerifier,
  patchId: ReturnType<typeof parsePatchId>,
  context: VerificationContext,
  signal: AbortSignal | undefined,
): Promise<VerifiedManifest> {
  const envelopeBytes = await repository.fetchEnvelope(patchId, signal);
  const verified = verifier.verifyEnvelope(envelopeBytes, context);
  if (verified.manifest.id !== patchId) {
    throw new HotPatchError('INVALID', `manifest id ${verified.manifest.id} does not match the requested patch id ${patchId}`);
  }
  await verifier.verifyPayload(verified, repository.openPayload(patchId, verified.manifest.payload_size + 1, signal));
  return verified;
}

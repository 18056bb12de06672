import { HotPatchError, parsePatchId, type PatchRepository, type PatchVerifier, type VerificationContext, type VerifiedManifest } from '../core/index.js';

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
  const envelopeBytes = await repository.fetchEnvelope(patchId, signal);
  const verified = verifier.verifyEnvelope(envelopeBytes, context);
  if (verified.manifest.id !== patchId) {
    throw new HotPatchError('INVALID', `manifest id ${verified.manifest.id} does not match the requested patch id ${patchId}`);
  }
  await verifier.verifyPayload(verified, repository.openPayload(patchId, verified.manifest.payload_size + 1, signal));
  return verified;
}

export {
  keyAllowsTarget,
  parseTrustStore,
  trustForTarget,
  type FleetRole,
  type TargetTrust,
  type TrustRule,
  type TrustStore,
  type TrustStoreDocument,
  type KeyCutoff,
  type TrustedKey,
} from './trust-store.js';
export {
  checkSignatures,
  distinctValidKeys,
  shortfallCode,
  signatureNotes,
  summarize,
  type CheckedSignature,
  type SignatureStatus,
} from './signature-check.js';
export { checkPayloadStream } from './payload-check.js';
export { DefaultVerifier, type VerifierOptions } from './verifier.js';
export { TRUST_STORE_COMPONENT, TRUST_STORE_PAYLOAD_TYPE, rotateTrustStore } from './trust-rotation.js';
export { verifyPatch } from './verify-patch.js';
export { signPatch, type SignPatchOptions, type SignedPatch } from './sign-patch.js';
export {
  INDEX_PAYLOAD_TYPE,
  checkManifestAgainstIndex,
  parseRepositoryIndex,
  verifyRepositoryIndex,
  type IndexEntry,
  type IndexFloor,
  type RepositoryIndex,
  type VerifiedIndex,
  type VerifyIndexOptions,
} from './repository-index.js';
export { INDEX_FLOOR_FILE, IndexedRepository, type IndexedRepositoryOptions } from './indexed-repository.js';
export { DEFAULT_INDEX_LIFETIME_MS, signRepositoryIndex, type SignIndexOptions, type SignedIndex } from './sign-index.js';
export { parseTimestampToken, verifyTimestampToken, type TimestampInfo } from './timestamp-token.js';
export {
  readTimestampReply,
  requestTimestamp,
  timestampPatch,
  timestampQuery,
  type RequestTimestampOptions,
  type TimestampPatchOptions,
} from './timestamp-request.js';

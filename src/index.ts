/**
 * `xps-hotpatch`: the trust pipeline — patch formats (manifest, DSSE envelope, patch ids),
 * errors and events, registries and the contracts components implement, signatures and
 * hashes (crypto-agile), trust stores and verification, the security gate, the filesystem
 * repository, and packing and signing patches. The type a patch's payload module is written
 * against (`PatchModule`) is here too: it is part of the format.
 *
 * The live side has its own entry points, so a verifier never loads a runtime, an HTTP server
 * or an etcd client:
 *   xps-hotpatch/runtime        targets, canary, twoPhaseApply, DynamicInstaller, state and rollback
 *   xps-hotpatch/orchestration  Planner, plans, time windows
 *   xps-hotpatch/agent          startAgent (the admin endpoint)
 *   xps-hotpatch/observability  audit log, metrics, logs, report, history
 *   xps-hotpatch/fleet          consensus stores, signed approvals, rollout by rings
 *
 * Every name exported by an entry point is public API: test/api/exports.test.ts holds the
 * lists, so adding or removing one is a visible decision. Module folders are internal.
 */
export { ERROR_CODES, HotPatchError, errorCategory, isHotPatchError, type ErrorCategory, type ErrorCode, type HotPatchErrorOptions } from './core/index.js';
export { registerSecret } from './core/index.js';
export { isPatchId, parsePatchId, parseRfc3339, type PatchId } from './core/index.js';
export {
  PAYLOAD_TYPES,
  parseManifest,
  type Manifest,
  type ManifestConstraints,
  type ManifestEncryption,
  type ManifestFacts,
  type ManifestRecipient,
  type ParsedManifest,
  type PayloadType,
} from './core/index.js';
export { MANIFEST_PAYLOAD_TYPE, decodeEnvelope, encodeEnvelope, pae, type Envelope, type EnvelopeSignature } from './core/index.js';
export {
  EVENT_CHANNEL,
  EVENT_TYPES,
  EventBus,
  defaultEventBus,
  type EventInit,
  type EventListener,
  type EventType,
  type HotPatchEvent,
  type SubscribeOptions,
} from './core/index.js';
export type {
  ApprovalRequest,
  Approver,
  ListedPatch,
  PatchInstaller,
  PatchRepository,
  PatchVerifier,
  SecurityContext,
  SecurityPolicy,
  VerificationContext,
  VerifiedManifest,
} from './core/index.js';
export {
  Registries,
  defaultRegistries,
  registerApprover,
  registerInstaller,
  registerRepository,
  registerSecurity,
  registerVerifier,
  type Registry,
} from './core/index.js';
export { matchesTargetPattern } from './core/index.js';

export {
  CryptoPolicy,
  HASH_ALGORITHMS,
  PrivateKey,
  PublicKey,
  SIGNATURE_ALGORITHMS,
  defaultCryptoPolicy,
  RECIPIENT_ALGORITHMS,
  RecipientPrivateKey,
  RecipientPublicKey,
  decryptPayload,
  encryptPayload,
  generateKeyPair,
  generateRecipientKey,
  hashBytes,
  hashProvider,
  importPrivateKey,
  importPublicKey,
  importRecipientPrivateKey,
  importRecipientPublicKey,
  isHashAlgorithm,
  isSignatureAlgorithm,
  sign,
  signatureProvider,
  timingSafeEqualBytes,
  verifySignature,
  type AlgorithmRule,
  type EffectiveRule,
  type GenerateKeyPairOptions,
  type HashAlgorithm,
  type DecryptionKey,
  type EncryptingPayload,
  type HashProvider,
  type Hasher,
  type PayloadRecipient,
  type RecipientAlgorithm,
  type SignatureAlgorithm,
  type SignatureProvider,
} from './crypto-agile/index.js';

export {
  DefaultVerifier,
  INDEX_PAYLOAD_TYPE,
  IndexedRepository,
  TRUST_STORE_PAYLOAD_TYPE,
  checkPayloadStream,
  parseTrustStore,
  rotateTrustStore,
  parseRepositoryIndex,
  readTimestampReply,
  requestTimestamp,
  signPatch,
  signRepositoryIndex,
  timestampPatch,
  timestampQuery,
  trustForTarget,
  verifyPatch,
  verifyRepositoryIndex,
  verifyTimestampToken,
  type KeyCutoff,
  type RequestTimestampOptions,
  type TimestampInfo,
  type TimestampPatchOptions,
  type IndexEntry,
  type IndexedRepositoryOptions,
  type RepositoryIndex,
  type SignIndexOptions,
  type SignedIndex,
  type VerifiedIndex,
  type SignPatchOptions,
  type SignedPatch,
  type TargetTrust,
  type TrustRule,
  type TrustStore,
  type TrustStoreDocument,
  type TrustedKey,
  type VerifierOptions,
} from './verification/index.js';

export { SecurityGate, type SecurityPolicyConfig } from './security/index.js';

export {
  FileKeyProvider,
  Pkcs11KeyProvider,
  Pkcs11RecipientKey,
  RemoteKeyProvider,
  RemoteUnwrapProvider,
  readPinFile,
  unwrapProviderOf,
  type KeyProvider,
  type Pkcs11KeyOptions,
  type RemoteKeyOptions,
  type RemoteUnwrapOptions,
  type UnwrapKeyProvider,
} from './keys/index.js';

export {
  FileSystemRepository,
  HttpRepository,
  RepositoryMirrors,
  TufRepository,
  copyFileAtomic,
  openRepository,
  packPatch,
  readFileBounded,
  writeFileAtomic,
  writeFileExclusive,
  type AtomicWriteData,
  type CopyFileAtomicOptions,
  type FileDigest,
  type FileSystemRepositoryOptions,
  type HttpRepositoryOptions,
  type Mirror,
  type MirrorFailure,
  type RepositoryLocation,
  type TufLocation,
  type TufRepositoryOptions,
  type PackPatchOptions,
  type PackedPatch,
  type PayloadSource,
  type ReadFileOptions,
  type WriteFileAtomicOptions,
  type WritePayloadOptions,
} from './repo/index.js';

// The payload module's contract (types only: nothing of the runtime is loaded).
export type { ConfigValue, DeepReadonly, PatchInitContext, PatchModule, TargetConfig } from './installer/index.js';

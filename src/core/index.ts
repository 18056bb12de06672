export {
  ERROR_CODES,
  HotPatchError,
  MAX_ERROR_MESSAGE,
  POLICY_ERROR_CODES,
  REPOSITORY_ERROR_CODES,
  ROLLOUT_ERROR_CODES,
  VERIFICATION_ERROR_CODES,
  boundMessage,
  errorCategory,
  isErrorCode,
  isHotPatchError,
  type ErrorCategory,
  type ErrorCode,
  type HotPatchErrorOptions,
  errnoOf,
  messageOf,
} from './errors.js';
export { emitRedactedWarning, registerSecret, redactSecrets } from './secrets.js';
export { isPatchId, parsePatchId, type PatchId } from './patch-id.js';
export { parseRfc3339 } from './rfc3339.js';
export {
  PAYLOAD_TYPES,
  isTargetName,
  parseManifest,
  parseTargetName,
  type Manifest,
  type ManifestConstraints,
  type ManifestFacts,
  type ParsedManifest,
  type PayloadType,
} from './manifest.js';
export { encryptedPayloadSize, parseManifestEncryption, type ManifestEncryption, type ManifestRecipient } from './manifest-encryption.js';
export { MANIFEST_PAYLOAD_TYPE, decodeEnvelope, encodeEnvelope, pae, paeFor, type Envelope, type EnvelopeSignature } from './dsse.js';
export { EVENT_TYPES, createEvent, type EventInit, type EventType, type HotPatchEvent } from './events.js';
export { EVENT_CHANNEL, EventBus, defaultEventBus, type EventListener, type SubscribeOptions } from './event-bus.js';
export type {
  ApprovalRequest,
  Approver,
  ListedPatch,
  MirrorFailure,
  MirroredSource,
  PatchRepository,
  PatchVerifier,
  SecurityContext,
  SecurityPolicy,
  VerificationContext,
  VerifiedManifest,
} from './contracts.js';
export {
  checkPatchInstaller,
  type IsolateHandle,
  type IsolationLimits,
  type IsolationMode,
  type IsolationSettings,
  type LoadOptions,
  type LoadedModule,
  type PatchInstaller,
  type StagedPayload,
  type WasmAdapter,
  type WasmExports,
  type WasmImports,
  type WasmInstance,
  type WasmModule,
} from './installer-contract.js';
export {
  Registries,
  Registry,
  defaultRegistries,
  registerApprover,
  registerInstaller,
  registerRepository,
  registerSecurity,
  registerVerifier,
} from './registry.js';
export { matchesAnyTargetPattern, matchesTargetPattern, parseTargetPattern } from './target-pattern.js';
export { decodeBase64, encodeBase64, type Base64Options } from './base64.js';
export { recordCallMs, recordedCallMs } from './call-durations.js';
// The strict-JSON kit: for the modules' parsers, not re-exported by the public entry points.
export {
  MAX_JSON_STRING,
  asObject,
  boundedString,
  canonicalVersion,
  payloadHashText,
  decodeJson,
  decodeJsonObject,
  describe,
  integerInRange,
  isPlainObject,
  oneOf,
  optional,
  positiveInteger,
  rejectUnknownFields,
  stringField,
  utcTimestamp,
  type StringFieldOptions,
} from './json-shape.js';

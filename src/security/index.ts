export { SecurityGate } from './gate.js';
export {
  DEFAULT_MAX_PAYLOAD_BYTES,
  MAX_KEY_ID_LENGTH,
  MAX_POLICY_LIST_ENTRIES,
  parsePolicyConfig,
  type NormalizedPolicyConfig,
  type SecurityPolicyConfig,
} from './policy-config.js';
export { MAX_POLICY_FILE_BYTES, readPolicyFile } from './policy-file.js';
export { hostPlatform, normalizePlatform, type PlatformParts } from './platform.js';

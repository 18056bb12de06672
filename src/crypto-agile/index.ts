/*
 * Public surface of crypto-agile. Key internals (publicMaterial, the DER and PEM codecs) stay
 * unexported so the only way to hold a key is through the importers, which check it.
 */
export { HASH_ALGORITHMS, SIGNATURE_ALGORITHMS, isHashAlgorithm, isSignatureAlgorithm, type HashAlgorithm, type SignatureAlgorithm } from './algorithms.js';
export { PrivateKey, PublicKey, generateKeyPair, importPrivateKey, importPublicKey, type GenerateKeyPairOptions } from './keys.js';
export { sign, signatureProvider, verifySignature, type SignatureProvider } from './signatures.js';
export { hashBytes, hashProvider, type HashProvider, type Hasher } from './hashes.js';
export { timingSafeEqualBytes } from './compare.js';
export { CryptoPolicy, defaultCryptoPolicy, type AlgorithmRule, type EffectiveRule } from './policy.js';
export {
  RECIPIENT_ALGORITHMS,
  RecipientPrivateKey,
  RecipientPublicKey,
  generateRecipientKey,
  importRecipientPrivateKey,
  importRecipientPublicKey,
  type RecipientAlgorithm,
} from './recipient-keys.js';
export {
  DEFAULT_CHUNK_SIZE as DEFAULT_ENCRYPTION_CHUNK_SIZE,
  checkDecryptedPayload,
  checkUnwraps,
  decryptPayload,
  encryptPayload,
  type DecryptionKey,
  type EncryptingPayload,
  type PayloadRecipient,
} from './payload-encryption.js';
export { unwrapProviderOf, type UnwrapKeyProvider } from './key-wrap.js';

/** Signature algorithms by their trust-store names (the `alg` of docs/ARCHITECTURE.md "Trust store"). */
export const SIGNATURE_ALGORITHMS = ['ed25519', 'ecdsa-p256-sha256', 'rsa-pss-sha256', 'ml-dsa-65'] as const;
export type SignatureAlgorithm = (typeof SIGNATURE_ALGORITHMS)[number];

/** Hash algorithms by their `payload_hash` prefix names. */
export const HASH_ALGORITHMS = ['sha256', 'sha384', 'sha512', 'sha3-256'] as const;
export type HashAlgorithm = (typeof HASH_ALGORITHMS)[number];

export function isSignatureAlgorithm(value: unknown): value is SignatureAlgorithm {
  return typeof value === 'string' && (SIGNATURE_ALGORITHMS as readonly string[]).includes(value);
}

export function isHashAlgorithm(value: unknown): value is HashAlgorithm {
  return typeof value === 'string' && (HASH_ALGORITHMS as readonly string[]).includes(value);
}

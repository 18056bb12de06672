import { HotPatchError, describe } from '../core/index.js';
import { HASH_ALGORITHMS, SIGNATURE_ALGORITHMS, isHashAlgorithm, isSignatureAlgorithm, type HashAlgorithm, type SignatureAlgorithm } from './algorithms.js';

/*
 * Argument checks for every public entry point of this module (the noble `abytes` habit):
 * a wrong type is a caller bug, so it fails loudly with the argument's name instead of
 * being coerced (a string "message" silently hashed as UTF-8 would sign something else).
 */

export function assertBytes(value: unknown, name: string): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array)) {
    throw new HotPatchError('INVALID', `${name} must be a Uint8Array, got ${describe(value)}`);
  }
}

export function assertString(value: unknown, name: string): asserts value is string {
  if (typeof value !== 'string') {
    throw new HotPatchError('INVALID', `${name} must be a string, got ${describe(value)}`);
  }
}

/**
 * An algorithm name that is not ours is a policy question, not a syntax one: a trust store or
 * envelope naming `rsa-pkcs1-sha1` must be refused as ALGORITHM_DISALLOWED so callers can
 * report it as such.
 */
export function signatureAlgorithmOf(value: unknown, name: string): SignatureAlgorithm {
  if (!isSignatureAlgorithm(value)) {
    throw new HotPatchError('ALGORITHM_DISALLOWED', `${name} must be one of ${SIGNATURE_ALGORITHMS.join(', ')}, got ${describe(value)}`, {
      detail: { alg: typeof value === 'string' ? value : null },
    });
  }
  return value;
}

export function hashAlgorithmOf(value: unknown, name: string): HashAlgorithm {
  if (!isHashAlgorithm(value)) {
    throw new HotPatchError('ALGORITHM_DISALLOWED', `${name} must be one of ${HASH_ALGORITHMS.join(', ')}, got ${describe(value)}`, {
      detail: { alg: typeof value === 'string' ? value : null },
    });
  }
  return value;
}

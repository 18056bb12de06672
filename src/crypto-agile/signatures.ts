import { constants, sign as nodeSign, verify as nodeVerify, type KeyObject } from 'node:crypto';
import { ml_dsa65 } from '@noble/post-quantum/ml-dsa.js';
import { HotPatchError, describe } from '../core/index.js';
import type { SignatureAlgorithm } from './algorithms.js';
import { assertBytes, signatureAlgorithmOf } from './assert.js';
import { PrivateKey, PublicKey, RSA_PSS_SALT_LENGTH, privateMaterial, publicMaterial, type PrivateMaterial, type PublicMaterial } from './keys.js';

/*
 * One provider per algorithm, each fixing every parameter (digest, padding, salt, encoding)
 * so nothing about *how* to verify can come from the envelope: the verifier takes the
 * algorithm from the trusted key (docs/ARCHITECTURE.md "Security model"). The parameters are
 * those of the standard tools, so
 * patches signed outside this code verify here:
 *   ed25519            openssl pkeyutl -sign -rawin -inkey k.key            (PureEdDSA over the message)
 *   ecdsa-p256-sha256  openssl dgst -sha256 -sign k.key                      (DER signature)
 *   rsa-pss-sha256     openssl dgst -sha256 -sign k.key -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32
 *   ml-dsa-65          FIPS 204 ML-DSA (pure, empty context), hedged signing
 */

export interface SignatureProvider {
  readonly alg: SignatureAlgorithm;
  sign(key: PrivateKey, message: Uint8Array): Uint8Array;
  /** False for any signature that does not verify, including malformed ones; throws only on bad arguments. */
  verify(key: PublicKey, message: Uint8Array, signature: Uint8Array): boolean;
}

const ED25519_SIGNATURE_LENGTH = 64;
// DER SEQUENCE { INTEGER r, INTEGER s } with r, s < n (32 bytes, plus a sign byte at most).
const ECDSA_P256_MIN_DER_LENGTH = 8;
const ECDSA_P256_MAX_DER_LENGTH = 72;
const ML_DSA_65_SIGNATURE_LENGTH = ml_dsa65.lengths.signature ?? 3309;

interface NodeScheme {
  digest: string | null;
  options: { dsaEncoding?: 'der'; padding?: number; saltLength?: number };
  /** Whether `length` can possibly be a signature of this scheme under `key`. */
  plausibleLength(length: number, key: PublicKey): boolean;
}

const NODE_SCHEMES: Record<Exclude<SignatureAlgorithm, 'ml-dsa-65'>, NodeScheme> = {
  ed25519: {
    digest: null,
    options: {},
    plausibleLength: (length) => length === ED25519_SIGNATURE_LENGTH,
  },
  'ecdsa-p256-sha256': {
    digest: 'sha256',
    options: { dsaEncoding: 'der' },
    plausibleLength: (length) => length >= ECDSA_P256_MIN_DER_LENGTH && length <= ECDSA_P256_MAX_DER_LENGTH,
  },
  'rsa-pss-sha256': {
    digest: 'sha256',
    // A fixed salt length on verify too: "auto" would accept signatures made with any salt.
    options: { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: RSA_PSS_SALT_LENGTH },
    plausibleLength: (length, key) => key.bits !== undefined && length === Math.ceil(key.bits / 8),
  },
};

function checkKey<K extends PublicKey | PrivateKey>(key: unknown, type: abstract new (...args: never[]) => K, alg: SignatureAlgorithm): asserts key is K {
  if (!(key instanceof type)) {
    throw new HotPatchError('INVALID', `key must be a ${type.name}, got ${describe(key)}`);
  }
  if (key.alg !== alg) {
    throw new HotPatchError('INVALID', `key is an ${key.alg} key, not usable with the ${alg} provider`, {
      detail: { keyAlg: key.alg, providerAlg: alg },
    });
  }
}

function nodeProvider(alg: Exclude<SignatureAlgorithm, 'ml-dsa-65'>): SignatureProvider {
  const scheme = NODE_SCHEMES[alg];
  const nodeKey = (m: PublicMaterial | PrivateMaterial): KeyObject => {
    // Unreachable while keys are only built by keys.ts; guards against a material/alg mix-up.
    if (m.kind !== 'node') throw new HotPatchError('INVALID', `key material is not ${alg}`);
    return m.key;
  };
  // Without options, the KeyObject itself is what node verifies with: no per-call object.
  const hasOptions = Object.keys(scheme.options).length > 0;
  return Object.freeze({
    alg,
    sign(key: PrivateKey, message: Uint8Array): Uint8Array {
      checkKey(key, PrivateKey, alg);
      assertBytes(message, 'message');
      return new Uint8Array(nodeSign(scheme.digest, message, { key: nodeKey(privateMaterial(key)), ...scheme.options }));
    },
    verify(key: PublicKey, message: Uint8Array, signature: Uint8Array): boolean {
      checkKey(key, PublicKey, alg);
      assertBytes(message, 'message');
      assertBytes(signature, 'signature');
      if (!scheme.plausibleLength(signature.length, key)) return false;
      const verifyKey = nodeKey(publicMaterial(key));
      try {
        return nodeVerify(scheme.digest, message, hasOptions ? { key: verifyKey, ...scheme.options } : verifyKey, signature);
      } catch {
        // OpenSSL reports some malformed signatures (bad DER, out-of-range values) as errors
        // rather than mismatches; either way the signature does not verify: fail closed.
        return false;
      }
    },
  });
}

const mlDsa65Provider: SignatureProvider = Object.freeze({
  alg: 'ml-dsa-65' as const,
  sign(key: PrivateKey, message: Uint8Array): Uint8Array {
    checkKey(key, PrivateKey, 'ml-dsa-65');
    assertBytes(message, 'message');
    const m = privateMaterial(key);
    if (m.kind !== 'ml-dsa-65') throw new HotPatchError('INVALID', 'key material is not ml-dsa-65');
    return ml_dsa65.sign(message, m.secretKey);
  },
  verify(key: PublicKey, message: Uint8Array, signature: Uint8Array): boolean {
    checkKey(key, PublicKey, 'ml-dsa-65');
    assertBytes(message, 'message');
    assertBytes(signature, 'signature');
    if (signature.length !== ML_DSA_65_SIGNATURE_LENGTH) return false;
    const m = publicMaterial(key);
    if (m.kind !== 'ml-dsa-65') throw new HotPatchError('INVALID', 'key material is not ml-dsa-65');
    try {
      return ml_dsa65.verify(signature, message, m.publicKey);
    } catch {
      // noble throws on encodings it cannot decode (e.g. a malformed hint vector); that is a
      // signature that does not verify, not a caller error: fail closed.
      return false;
    }
  },
});

const PROVIDERS: Readonly<Record<SignatureAlgorithm, SignatureProvider>> = Object.freeze({
  ed25519: nodeProvider('ed25519'),
  'ecdsa-p256-sha256': nodeProvider('ecdsa-p256-sha256'),
  'rsa-pss-sha256': nodeProvider('rsa-pss-sha256'),
  'ml-dsa-65': mlDsa65Provider,
});

export function signatureProvider(alg: string): SignatureProvider {
  return PROVIDERS[signatureAlgorithmOf(alg, 'alg')];
}

/** Signs with the key's own algorithm. */
export function sign(key: PrivateKey, message: Uint8Array): Uint8Array {
  if (!(key instanceof PrivateKey)) throw new HotPatchError('INVALID', `key must be a PrivateKey, got ${describe(key)}`);
  return PROVIDERS[key.alg].sign(key, message);
}

/** Verifies with the key's own algorithm; false (never an exception) for any bad signature bytes. */
export function verifySignature(key: PublicKey, message: Uint8Array, signature: Uint8Array): boolean {
  if (!(key instanceof PublicKey)) throw new HotPatchError('INVALID', `key must be a PublicKey, got ${describe(key)}`);
  return PROVIDERS[key.alg].verify(key, message, signature);
}

import { createHash, createPublicKey } from 'node:crypto';
import { HotPatchError, messageOf } from '../core/index.js';
import { importPublicKey, type PublicKey, type SignatureAlgorithm } from '../crypto-agile/index.js';
import type * as Pkcs11js from 'pkcs11js';
import type { KeyProvider } from './key-provider.js';
import type { Pkcs11 } from './pkcs11-module.js';
import {
  checkKeyUse,
  closeSession,
  findKeyPair,
  generateKeyPairOnToken,
  keyTypeOf,
  rsaJwk,
  RSA_3072,
  withSession,
  type Pkcs11KeyOptions,
  type Pkcs11Session,
} from './pkcs11-session.js';

export type { Pkcs11KeyOptions } from './pkcs11-session.js';

// PKCS#11 v3.0 values pkcs11js does not name.
const CKK_EC_EDWARDS = 0x40;
const CKM_EC_EDWARDS_KEY_PAIR_GEN = 0x1055;
const CKM_EDDSA = 0x1057;
const P256_PARAMS = Buffer.from('06082a8648ce3d030107', 'hex'); // OID prime256v1
const ED25519_PARAMS = Buffer.from('06032b6570', 'hex'); // OID id-Ed25519

/**
 * A signing key on a PKCS#11 token (README "Keys in hardware and KMS"): the private key never
 * leaves it (it is created sensitive and not extractable); `sign` asks the token. ECDSA P-256
 * (the token signs the SHA-256 digest; the raw r‖s is re-encoded as DER, the verifier's format),
 * RSA-PSS (SHA-256, MGF1-SHA-256, salt 32) and Ed25519 (CKM_EDDSA, where the token has it).
 * One session per provider, logged in as the user; `close()` logs out and releases the library.
 */
export class Pkcs11KeyProvider implements KeyProvider {
  readonly name: string;
  readonly publicKey: PublicKey;
  readonly #s: Pkcs11Session;
  readonly #key: Buffer;
  readonly #library: string;
  #closed = false;

  private constructor(options: Pkcs11KeyOptions, s: Pkcs11Session, key: Buffer, publicKey: PublicKey) {
    this.name = `pkcs11:${options.token}/${options.keyLabel}`;
    this.#library = options.module;
    this.#s = s;
    this.#key = key;
    this.publicKey = publicKey;
  }

  /**
   * Opens a session on the token and finds the key pair labelled `keyLabel`. NOT_FOUND: no such
   * token or key; UNAUTHENTICATED: a wrong PIN; INVALID: a key that can leave the token, or one
   * not made for signing.
   */
  static open(options: Pkcs11KeyOptions): Pkcs11KeyProvider {
    return withSession(
      options,
      (s) => {
        const { key, pub } = findKeyPair(s, options);
        checkKeyUse(s, key, options, 'sign');
        return new Pkcs11KeyProvider(options, s, key, publicKeyOf(s, pub));
      },
      true,
    );
  }

  /**
   * Creates a key pair on the token (`hotpatch keygen --pkcs11-…`): the private key sensitive,
   * not extractable, only for signing; returns the provider of the new key. A key pair of that
   * label already there is INVALID (a token may hold two objects of one label; we never make one).
   */
  static generate(options: Pkcs11KeyOptions, alg: SignatureAlgorithm): Pkcs11KeyProvider {
    if (alg === 'ecdsa-p256-sha256') {
      generateKeyPairOnToken(
        options,
        alg,
        (api) => ({ mechanism: api.CKM_EC_KEY_PAIR_GEN, publicTemplate: [{ type: api.CKA_EC_PARAMS, value: P256_PARAMS }] }),
        'sign',
      );
    } else if (alg === 'ed25519') {
      generateKeyPairOnToken(
        options,
        alg,
        (api) => ({ mechanism: CKM_EC_EDWARDS_KEY_PAIR_GEN, publicTemplate: [{ type: api.CKA_EC_PARAMS, value: ED25519_PARAMS }] }),
        'sign',
      );
    } else if (alg === 'rsa-pss-sha256') {
      generateKeyPairOnToken(options, alg, RSA_3072, 'sign');
    } else {
      throw new HotPatchError('ALGORITHM_DISALLOWED', `${alg} keys cannot be made on a PKCS#11 token (ecdsa-p256-sha256, rsa-pss-sha256, ed25519)`);
    }
    return Pkcs11KeyProvider.open(options);
  }

  get alg(): SignatureAlgorithm {
    return this.publicKey.alg;
  }

  async sign(message: Uint8Array): Promise<Uint8Array> {
    if (this.#closed) throw new HotPatchError('INVALID', `${this.name} is closed`);
    const api = this.#s.api;
    const alg = this.publicKey.alg;
    try {
      if (alg === 'ecdsa-p256-sha256') {
        const raw = this.#signWith({ mechanism: api.CKM_ECDSA }, createHash('sha256').update(message).digest(), 64);
        return ecdsaDer(raw);
      }
      if (alg === 'rsa-pss-sha256') {
        const parameter: Pkcs11js.RsaPSS = { type: api.CK_PARAMS_RSA_PSS, hashAlg: api.CKM_SHA256, mgf: api.CKG_MGF1_SHA256, saltLen: 32 };
        // The signature is the modulus's length: 1 KiB holds any key up to 8192 bits.
        return this.#signWith({ mechanism: api.CKM_SHA256_RSA_PKCS_PSS, parameter }, Buffer.from(message), 1024);
      }
      return this.#signWith({ mechanism: CKM_EDDSA }, Buffer.from(message), 64);
    } catch (cause) {
      if (cause instanceof HotPatchError) throw cause;
      throw new HotPatchError('IO', `${this.name}: the token refused to sign: ${messageOf(cause)}`, { cause });
    }
  }

  /** Closes the session; the library is finalised when its last user closes. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    closeSession(this.#s, this.#library);
  }

  #signWith(mechanism: Parameters<Pkcs11['C_SignInit']>[1], data: Buffer, maxLength: number): Uint8Array {
    const { module, session } = this.#s;
    module.C_SignInit(session, mechanism, this.#key);
    return new Uint8Array(module.C_Sign(session, data, Buffer.alloc(Math.max(maxLength, 512))));
  }
}

/** The public key object as this project's PublicKey (its SPKI built through a JWK). */
function publicKeyOf(s: Pkcs11Session, handle: Buffer): PublicKey {
  const { module, api, session } = s;
  const keyType = keyTypeOf(s, handle);
  let jwk: Record<string, string>;
  let alg: SignatureAlgorithm;
  if (keyType === api.CKK_RSA) {
    jwk = rsaJwk(s, handle);
    alg = 'rsa-pss-sha256';
  } else if (keyType === api.CKK_EC || keyType === CKK_EC_EDWARDS) {
    const [params, pointAttr] = module.C_GetAttributeValue(session, handle, [{ type: api.CKA_EC_PARAMS }, { type: api.CKA_EC_POINT }]);
    const point = unwrapOctetString(pointAttr!.value as Buffer);
    if (keyType === api.CKK_EC) {
      if (!(params!.value as Buffer).equals(P256_PARAMS) || point.length !== 65 || point[0] !== 4)
        throw new HotPatchError('ALGORITHM_DISALLOWED', 'the token key is an EC key on a curve other than P-256');
      jwk = { kty: 'EC', crv: 'P-256', x: point.subarray(1, 33).toString('base64url'), y: point.subarray(33).toString('base64url') };
      alg = 'ecdsa-p256-sha256';
    } else {
      if (point.length !== 32) throw new HotPatchError('ALGORITHM_DISALLOWED', 'the token key is an Edwards key other than Ed25519');
      jwk = { kty: 'OKP', crv: 'Ed25519', x: point.toString('base64url') };
      alg = 'ed25519';
    }
  } else {
    throw new HotPatchError('ALGORITHM_DISALLOWED', `the token key's type ${keyType} cannot sign patches`);
  }
  const spki = createPublicKey({ key: jwk, format: 'jwk' }).export({ type: 'spki', format: 'der' });
  return importPublicKey(alg, spki.toString('base64'));
}

/** CKA_EC_POINT is a DER OCTET STRING around the point (some tokens give the point bare). */
function unwrapOctetString(value: Buffer): Buffer {
  if (value[0] === 0x04 && value.length >= 2) {
    if (value[1]! < 0x80 && value[1] === value.length - 2) return value.subarray(2);
    if (value[1] === 0x81 && value[2] === value.length - 3) return value.subarray(3);
  }
  return value;
}

/** ECDSA r‖s (P1363) → the DER SEQUENCE of two INTEGERs the verifier takes. */
function ecdsaDer(raw: Uint8Array): Uint8Array {
  if (raw.length !== 64) throw new HotPatchError('IO', `the token returned a ${raw.length}-byte ECDSA signature, expected 64`);
  const int = (bytes: Uint8Array): Buffer => {
    let i = 0;
    while (i < bytes.length - 1 && bytes[i] === 0) i++;
    const body = Buffer.from(bytes.subarray(i));
    const padded = body[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), body]) : body;
    return Buffer.concat([Buffer.from([0x02, padded.length]), padded]);
  };
  const seq = Buffer.concat([int(raw.subarray(0, 32)), int(raw.subarray(32))]);
  return new Uint8Array(Buffer.concat([Buffer.from([0x30, seq.length]), seq]));
}

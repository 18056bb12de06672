import { createPublicKey } from 'node:crypto';
import { HotPatchError, messageOf } from '../core/index.js';
import { importRecipientPublicKey, type RecipientAlgorithm, type RecipientPublicKey, type UnwrapKeyProvider } from '../crypto-agile/index.js';
import type * as Pkcs11js from 'pkcs11js';
import { oaepDecodeSha256 } from './oaep-decode.js';
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

const CKM_RSA_X_509 = 0x3;
const CKZ_DATA_SPECIFIED = 0x1;
/** C_DecryptInit's answer when the token has no such mechanism, or not with these parameters. */
const MECHANISM_REFUSED = /CKR_MECHANISM_INVALID|CKR_MECHANISM_PARAM_INVALID|CKR_ARGUMENTS_BAD/;

function oaepSha256(s: Pkcs11Session): Pkcs11js.Mechanism {
  const api = s.api;
  const parameter: Pkcs11js.RsaOAEP = { type: api.CK_PARAMS_RSA_OAEP, hashAlg: api.CKM_SHA256, mgf: api.CKG_MGF1_SHA256, source: CKZ_DATA_SPECIFIED };
  return { mechanism: api.CKM_RSA_PKCS_OAEP, parameter };
}

/**
 * Whether the token decrypts RSA-OAEP with SHA-256, decided once when the key is opened: only
 * a refusal of the mechanism at C_DecryptInit means no (the operation it starts is ended with a
 * zero block, which no key decrypts); an answer about data is never a reason to go raw.
 */
function tokenHasOaepSha256(s: Pkcs11Session, key: Buffer, modulusBytes: number): boolean {
  try {
    s.module.C_DecryptInit(s.session, oaepSha256(s), key);
  } catch (cause) {
    if (MECHANISM_REFUSED.test(messageOf(cause))) return false;
    throw new HotPatchError('IO', `the token cannot start a decryption: ${messageOf(cause)}`, { cause });
  }
  try {
    s.module.C_Decrypt(s.session, Buffer.alloc(modulusBytes), Buffer.alloc(modulusBytes));
  } catch {
    // Expected: a zero block is no OAEP block; the failure ends the operation.
  }
  return true;
}

/**
 * A payload recipient key on a PKCS#11 token (README "Keys in hardware and KMS"): RSA-OAEP-SHA256,
 * made on the token sensitive, not extractable and only for decryption; `unwrap` decrypts a
 * wrapped key's 32-byte secret on the token. CKM_RSA_PKCS_OAEP with SHA-256 where the token has
 * it; a token whose OAEP is SHA-1 only (SoftHSM2 2.6) decrypts raw (CKM_RSA_X_509) and the OAEP
 * padding is removed here — the private key never leaves the token either way.
 */
export class Pkcs11RecipientKey implements UnwrapKeyProvider {
  readonly name: string;
  readonly recipientKey: RecipientPublicKey;
  readonly #s: Pkcs11Session;
  readonly #key: Buffer;
  readonly #library: string;
  /** The public modulus, big-endian: a block not below it is no RSA ciphertext for this key. */
  readonly #modulus: Buffer;
  /** The token's OAEP refused SHA-256 when the key was opened: raw RSA and OAEP decoding here. */
  readonly #raw: boolean;
  #closed = false;

  private constructor(options: Pkcs11KeyOptions, s: Pkcs11Session, key: Buffer, recipientKey: RecipientPublicKey, modulus: Buffer, raw: boolean) {
    this.name = `pkcs11:${options.token}/${options.keyLabel}`;
    this.#library = options.module;
    this.#s = s;
    this.#key = key;
    this.recipientKey = recipientKey;
    this.#modulus = modulus;
    this.#raw = raw;
  }

  /**
   * Opens a session on the token and finds the key pair labelled `keyLabel`. NOT_FOUND: no such
   * token or key; UNAUTHENTICATED: a wrong PIN; INVALID: a key that can leave the token, or one
   * not made for decryption; ALGORITHM_DISALLOWED: not an RSA key of at least 2048 bits.
   */
  static open(options: Pkcs11KeyOptions): Pkcs11RecipientKey {
    return withSession(
      options,
      (s) => {
        const { key, pub } = findKeyPair(s, options);
        checkKeyUse(s, key, options, 'decrypt');
        if (keyTypeOf(s, pub) !== s.api.CKK_RSA) {
          throw new HotPatchError(
            'ALGORITHM_DISALLOWED',
            `the key ${options.keyLabel} on token ${options.token} is not an RSA key (recipient keys on a token: rsa-oaep-sha256)`,
          );
        }
        const jwk = rsaJwk(s, pub);
        const recipientKey = importRecipientPublicKey(createPublicKey({ key: jwk, format: 'jwk' }).export({ type: 'spki', format: 'pem' }) as string);
        const modulus = Buffer.from(jwk.n, 'base64url');
        return new Pkcs11RecipientKey(options, s, key, recipientKey, modulus, !tokenHasOaepSha256(s, key, modulus.length));
      },
      true,
    );
  }

  /** Creates an RSA-3072 decryption key pair on the token (`hotpatch keygen --alg rsa-oaep-sha256 --pkcs11-…`). */
  static generate(options: Pkcs11KeyOptions, alg: RecipientAlgorithm = 'rsa-oaep-sha256'): Pkcs11RecipientKey {
    if (alg !== 'rsa-oaep-sha256') {
      throw new HotPatchError(
        'ALGORITHM_DISALLOWED',
        `${alg} recipient keys cannot be made on a PKCS#11 token (rsa-oaep-sha256; X25519 and ML-KEM-768 keys are files)`,
      );
    }
    generateKeyPairOnToken(options, alg, RSA_3072, 'decrypt');
    return Pkcs11RecipientKey.open(options);
  }

  get alg(): RecipientAlgorithm {
    return this.recipientKey.alg;
  }

  /** RSA-OAEP-SHA256 decryption of `encapsulation` on the token. DECRYPT_FAILED: not a block for this key. */
  async unwrap(encapsulation: Uint8Array): Promise<Uint8Array> {
    if (this.#closed) throw new HotPatchError('INVALID', `${this.name} is closed`);
    const refused = (cause?: unknown): HotPatchError =>
      new HotPatchError('DECRYPT_FAILED', `${this.name}: the wrapped secret does not decrypt with this key`, cause === undefined ? {} : { cause });
    // A block of another length, or one not below the modulus (one encrypted to another key
    // often is), is refused here: SoftHSM answers the latter with CKR_GENERAL_ERROR, which
    // would otherwise read as a failing token rather than a block that is not ours.
    if (encapsulation.length !== this.#modulus.length || Buffer.compare(Buffer.from(encapsulation), this.#modulus) >= 0) throw refused();
    if (!this.#raw) {
      try {
        return this.#decrypt(oaepSha256(this.#s), encapsulation);
      } catch (cause) {
        throw this.#tokenError(cause, refused);
      }
    }
    let em: Uint8Array;
    try {
      em = this.#decrypt({ mechanism: CKM_RSA_X_509 }, encapsulation);
    } catch (cause) {
      throw this.#tokenError(cause, refused);
    }
    const secret = oaepDecodeSha256(em, this.#modulus.length);
    em.fill(0);
    if (secret === undefined) throw refused();
    return secret;
  }

  /** Closes the session; the library is finalised when its last user closes. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    closeSession(this.#s, this.#library);
  }

  #decrypt(mechanism: Pkcs11js.Mechanism, data: Uint8Array): Uint8Array {
    const { module, session } = this.#s;
    module.C_DecryptInit(session, mechanism, this.#key);
    const out = Buffer.alloc(this.#modulus.length);
    const result = module.C_Decrypt(session, Buffer.from(data), out);
    const copy = new Uint8Array(result);
    out.fill(0);
    return copy;
  }

  /** A block the key refuses is DECRYPT_FAILED; anything else (the token gone, logged out) is IO. */
  #tokenError(cause: unknown, refused: (cause?: unknown) => HotPatchError): HotPatchError {
    if (/CKR_ENCRYPTED_DATA_INVALID|CKR_ENCRYPTED_DATA_LEN_RANGE|CKR_DATA_INVALID/.test(messageOf(cause))) return refused(cause);
    return new HotPatchError('IO', `${this.name}: the token refused to decrypt: ${messageOf(cause)}`, { cause });
  }
}

import { createHash, createPublicKey } from 'node:crypto';
import { HotPatchError, messageOf } from '../core/index.js';
import { importPublicKey, type PublicKey, type SignatureAlgorithm } from '../crypto-agile/index.js';
import type * as Pkcs11js from 'pkcs11js';
import type { KeyProvider } from './key-provider.js';
import { openModule, pkcs11Api, releaseModule, type Pkcs11, type Pkcs11Api } from './pkcs11-module.js';

/** Where a key sits on a token: the library, the token's label, the key pair's label, the user PIN. */
export interface Pkcs11KeyOptions {
  /** The PKCS#11 library (Debian's SoftHSM2: /usr/lib/softhsm/libsofthsm2.so). */
  module: string;
  /** The token's label. */
  token: string;
  /** The key pair's CKA_LABEL. */
  keyLabel: string;
  /** The user PIN (read from a file by the CLI; never logged). */
  pin: string;
}

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
  readonly #module: Pkcs11;
  readonly #api: Pkcs11Api;
  readonly #session: Buffer;
  readonly #key: Buffer;
  readonly #library: string;
  #closed = false;

  private constructor(options: Pkcs11KeyOptions, module: Pkcs11, api: Pkcs11Api, session: Buffer, key: Buffer, publicKey: PublicKey) {
    this.name = `pkcs11:${options.token}/${options.keyLabel}`;
    this.#library = options.module;
    this.#module = module;
    this.#api = api;
    this.#session = session;
    this.#key = key;
    this.publicKey = publicKey;
  }

  /** Opens a session on the token and finds the key pair labelled `keyLabel`. NOT_FOUND: no such token or key; UNAUTHENTICATED: a wrong PIN. */
  static open(options: Pkcs11KeyOptions): Pkcs11KeyProvider {
    return withSession(options, (module, api, session) => {
      const key = findObject(module, api, session, api.CKO_PRIVATE_KEY, options.keyLabel);
      const pub = findObject(module, api, session, api.CKO_PUBLIC_KEY, options.keyLabel);
      if (key === undefined || pub === undefined) throw new HotPatchError('NOT_FOUND', `token ${options.token} has no key pair labelled ${options.keyLabel}`);
      refuseExportable(module, api, session, key, options);
      return new Pkcs11KeyProvider(options, module, api, session, key, publicKeyOf(module, api, session, pub));
    });
  }

  /**
   * Creates a key pair on the token (`hotpatch keygen --pkcs11-…`): the private key sensitive,
   * not extractable, only for signing; returns the provider of the new key. A key pair of that
   * label already there is INVALID (a token may hold two objects of one label; we never make one).
   */
  static generate(options: Pkcs11KeyOptions, alg: SignatureAlgorithm): Pkcs11KeyProvider {
    withSession(
      options,
      (module, api, session) => {
        if (findObject(module, api, session, api.CKO_PRIVATE_KEY, options.keyLabel) !== undefined) {
          throw new HotPatchError('INVALID', `token ${options.token} already has a key labelled ${options.keyLabel}`);
        }
        const label = Buffer.from(options.keyLabel, 'utf8');
        const pub: Pkcs11js.Attribute[] = [
          { type: api.CKA_TOKEN, value: true },
          { type: api.CKA_LABEL, value: label },
          { type: api.CKA_VERIFY, value: true },
        ];
        const priv: Pkcs11js.Attribute[] = [
          { type: api.CKA_TOKEN, value: true },
          { type: api.CKA_LABEL, value: label },
          { type: api.CKA_PRIVATE, value: true },
          { type: api.CKA_SENSITIVE, value: true },
          { type: api.CKA_EXTRACTABLE, value: false },
          { type: api.CKA_SIGN, value: true },
          { type: api.CKA_DECRYPT, value: false },
          { type: api.CKA_UNWRAP, value: false },
          { type: api.CKA_DERIVE, value: false },
        ];
        let mechanism: number;
        if (alg === 'ecdsa-p256-sha256') {
          mechanism = api.CKM_EC_KEY_PAIR_GEN;
          pub.push({ type: api.CKA_EC_PARAMS, value: P256_PARAMS });
        } else if (alg === 'ed25519') {
          mechanism = CKM_EC_EDWARDS_KEY_PAIR_GEN;
          pub.push({ type: api.CKA_EC_PARAMS, value: ED25519_PARAMS });
        } else if (alg === 'rsa-pss-sha256') {
          mechanism = api.CKM_RSA_PKCS_KEY_PAIR_GEN;
          pub.push({ type: api.CKA_MODULUS_BITS, value: 3072 }, { type: api.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) });
        } else {
          throw new HotPatchError('ALGORITHM_DISALLOWED', `${alg} keys cannot be made on a PKCS#11 token (ecdsa-p256-sha256, rsa-pss-sha256, ed25519)`);
        }
        try {
          module.C_GenerateKeyPair(session, { mechanism }, pub, priv);
        } catch (cause) {
          throw new HotPatchError('ALGORITHM_DISALLOWED', `token ${options.token} cannot make a ${alg} key: ${messageOf(cause)}`, { cause });
        }
        return undefined;
      },
      true,
    );
    return Pkcs11KeyProvider.open(options);
  }

  get alg(): SignatureAlgorithm {
    return this.publicKey.alg;
  }

  async sign(message: Uint8Array): Promise<Uint8Array> {
    if (this.#closed) throw new HotPatchError('INVALID', `${this.name} is closed`);
    const api = this.#api;
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

  /** Logs out and closes the session; the library is finalised when its last user closes. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    // No C_Logout: a token's login belongs to the process, not the session, and logging out
    // would break every other provider on the token. Closing the last session ends the login.
    try {
      this.#module.C_CloseSession(this.#session);
    } finally {
      releaseModule(this.#library);
    }
  }

  #signWith(mechanism: Parameters<Pkcs11['C_SignInit']>[1], data: Buffer, maxLength: number): Uint8Array {
    this.#module.C_SignInit(this.#session, mechanism, this.#key);
    return new Uint8Array(this.#module.C_Sign(this.#session, data, Buffer.alloc(Math.max(maxLength, 512))));
  }
}

/** A key that could leave the token (extractable, or not sensitive) is not one this provider signs with. */
function refuseExportable(module: Pkcs11, api: Pkcs11Api, session: Buffer, key: Buffer, options: Pkcs11KeyOptions): void {
  const [sensitive, extractable] = module.C_GetAttributeValue(session, key, [{ type: api.CKA_SENSITIVE }, { type: api.CKA_EXTRACTABLE }]);
  const yes = (a: { value?: unknown } | undefined): boolean => Buffer.isBuffer(a?.value) && a.value.some((b) => b !== 0);
  if (!yes(sensitive) || yes(extractable)) {
    throw new HotPatchError(
      'INVALID',
      `the key ${options.keyLabel} on token ${options.token} can leave the token (not sensitive, or extractable): make one with hotpatch keygen --pkcs11-…`,
    );
  }
}

/** library + token → SHA-256 of the PIN the process logged in with (see withSession). */
const loggedIn = new Map<string, string>();

/** Runs `body` in a logged-in session of the token; the session stays open when `body` returns a provider. */
function withSession<T>(options: Pkcs11KeyOptions, body: (module: Pkcs11, api: Pkcs11Api, session: Buffer) => T, closeAfter = false): T {
  for (const field of ['module', 'token', 'keyLabel', 'pin'] as const) {
    if (typeof options?.[field] !== 'string' || options[field].length === 0) throw new HotPatchError('INVALID', `PKCS#11 ${field} must be a non-empty string`);
  }
  const api = pkcs11Api();
  const module = openModule(options.module);
  let session: Buffer | undefined;
  let keep = false;
  try {
    const slot = module.C_GetSlotList(true).find((s) => module.C_GetTokenInfo(s).label.trim() === options.token);
    if (slot === undefined) throw new HotPatchError('NOT_FOUND', `no PKCS#11 token labelled ${options.token} in ${options.module}`);
    session = module.C_OpenSession(slot, api.CKF_SERIAL_SESSION | api.CKF_RW_SESSION);
    const login = `${options.module}\0${options.token}`;
    const pinHash = createHash('sha256').update(options.pin).digest('hex');
    try {
      module.C_Login(session, api.CKU_USER, options.pin);
      loggedIn.set(login, pinHash);
    } catch (cause) {
      // A token's login is shared by every session of a process: already logged in, the PIN
      // is held to the one that logged in (a second caller with a wrong PIN is still refused).
      const already = /CKR_USER_ALREADY_LOGGED_IN/.test(messageOf(cause)) && loggedIn.get(login) === pinHash;
      if (!already)
        throw new HotPatchError(
          'UNAUTHENTICATED',
          `token ${options.token} refused the PIN${/CKR_PIN_INCORRECT|ALREADY_LOGGED_IN/.test(messageOf(cause)) ? '' : `: ${messageOf(cause).replaceAll(options.pin, '***')}`}`,
          { cause },
        );
    }
    const result = body(module, api, session);
    keep = !closeAfter && result instanceof Pkcs11KeyProvider;
    return result;
  } finally {
    if (!keep) {
      if (session !== undefined) module.C_CloseSession(session);
      releaseModule(options.module);
    }
  }
}

function findObject(module: Pkcs11, api: Pkcs11Api, session: Buffer, objectClass: number, label: string): Buffer | undefined {
  module.C_FindObjectsInit(session, [
    { type: api.CKA_CLASS, value: objectClass },
    { type: api.CKA_LABEL, value: Buffer.from(label, 'utf8') },
  ]);
  try {
    const found = module.C_FindObjects(session, 2);
    if (found.length > 1) throw new HotPatchError('INVALID', `the token holds ${found.length} objects labelled ${label}: name one key pair`);
    return found[0];
  } finally {
    module.C_FindObjectsFinal(session);
  }
}

/** The public key object as this project's PublicKey (its SPKI built through a JWK). */
function publicKeyOf(module: Pkcs11, api: Pkcs11Api, session: Buffer, handle: Buffer): PublicKey {
  const [type] = module.C_GetAttributeValue(session, handle, [{ type: api.CKA_KEY_TYPE }]);
  const raw = type!.value as Buffer;
  // A CK_ULONG in the platform's byte order and size (8 bytes on 64-bit Linux).
  const keyType = raw.length === 8 ? Number(raw.readBigUInt64LE()) : raw.readUIntLE(0, raw.length);
  let jwk: Record<string, string>;
  let alg: SignatureAlgorithm;
  if (keyType === api.CKK_RSA) {
    const [n, e] = module.C_GetAttributeValue(session, handle, [{ type: api.CKA_MODULUS }, { type: api.CKA_PUBLIC_EXPONENT }]);
    jwk = { kty: 'RSA', n: (n!.value as Buffer).toString('base64url'), e: (e!.value as Buffer).toString('base64url') };
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

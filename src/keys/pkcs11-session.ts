import { createHmac, randomBytes } from 'node:crypto';
import { HotPatchError, messageOf } from '../core/index.js';
import type * as Pkcs11js from 'pkcs11js';
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

/** A logged-in session on a token, kept by a provider until it closes. */
export interface Pkcs11Session {
  module: Pkcs11;
  api: Pkcs11Api;
  session: Buffer;
}

/**
 * library + token → a MAC of the PIN the process logged in with (see withSession), under a key
 * made for this process: a plain hash of a short PIN, read from memory, would give the PIN away.
 */
const loggedIn = new Map<string, string>();
const PIN_MAC_KEY = randomBytes(32);

/**
 * Runs `body` in a logged-in session of the token. When `keep` is true the session (and the
 * library) stay open for the provider `body` made, which ends them with `closeSession`.
 */
export function withSession<T>(options: Pkcs11KeyOptions, body: (s: Pkcs11Session) => T, keep: boolean): T {
  for (const field of ['module', 'token', 'keyLabel', 'pin'] as const) {
    if (typeof options?.[field] !== 'string' || options[field].length === 0) throw new HotPatchError('INVALID', `PKCS#11 ${field} must be a non-empty string`);
  }
  const api = pkcs11Api();
  const module = openModule(options.module);
  let session: Buffer | undefined;
  let kept = false;
  try {
    const slot = module.C_GetSlotList(true).find((s) => module.C_GetTokenInfo(s).label.trim() === options.token);
    if (slot === undefined) throw new HotPatchError('NOT_FOUND', `no PKCS#11 token labelled ${options.token} in ${options.module}`);
    session = module.C_OpenSession(slot, api.CKF_SERIAL_SESSION | api.CKF_RW_SESSION);
    const login = `${options.module}\0${options.token}`;
    const pinHash = createHmac('sha256', PIN_MAC_KEY).update(options.pin).digest('hex');
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
    const result = body({ module, api, session });
    kept = keep;
    return result;
  } finally {
    if (!kept) {
      try {
        if (session !== undefined) module.C_CloseSession(session);
      } finally {
        releaseModule(options.module);
      }
    }
  }
}

/**
 * Ends a kept session. No C_Logout: a token's login belongs to the process, not the session,
 * and logging out would break every other provider on the token. Closing the last session ends
 * the login.
 */
export function closeSession(s: Pkcs11Session, library: string): void {
  try {
    s.module.C_CloseSession(s.session);
  } finally {
    releaseModule(library);
  }
}

export function findObject(s: Pkcs11Session, objectClass: number, label: string): Buffer | undefined {
  const { module, api, session } = s;
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

/** The private and public objects labelled `keyLabel`, or NOT_FOUND. */
export function findKeyPair(s: Pkcs11Session, options: Pkcs11KeyOptions): { key: Buffer; pub: Buffer } {
  const key = findObject(s, s.api.CKO_PRIVATE_KEY, options.keyLabel);
  const pub = findObject(s, s.api.CKO_PUBLIC_KEY, options.keyLabel);
  if (key === undefined || pub === undefined) throw new HotPatchError('NOT_FOUND', `token ${options.token} has no key pair labelled ${options.keyLabel}`);
  return { key, pub };
}

/** Refuses to make a second key pair of one label (a token may hold two; we never make one). */
export function refuseTakenLabel(s: Pkcs11Session, options: Pkcs11KeyOptions): void {
  if (findObject(s, s.api.CKO_PRIVATE_KEY, options.keyLabel) !== undefined) {
    throw new HotPatchError('INVALID', `token ${options.token} already has a key labelled ${options.keyLabel}`);
  }
}

function flag(a: { value?: unknown } | undefined): boolean {
  return Buffer.isBuffer(a?.value) && a.value.some((b) => b !== 0);
}

/**
 * A key this project uses stays on its token and does one thing: one that could leave it
 * (extractable, or not sensitive) is refused, and so is one not allowed the use asked of it
 * (a decryption key is not a signing key: `hotpatch keygen --pkcs11-…` makes each for one use).
 */
export function checkKeyUse(s: Pkcs11Session, key: Buffer, options: Pkcs11KeyOptions, use: 'sign' | 'decrypt'): void {
  const { module, api, session } = s;
  const [sensitive, extractable, allowed, other, otherToo] = module.C_GetAttributeValue(session, key, [
    { type: api.CKA_SENSITIVE },
    { type: api.CKA_EXTRACTABLE },
    { type: use === 'sign' ? api.CKA_SIGN : api.CKA_DECRYPT },
    // The other use must be off: a key made for both (by another tool) is refused for either.
    { type: use === 'sign' ? api.CKA_DECRYPT : api.CKA_SIGN },
    { type: use === 'sign' ? api.CKA_UNWRAP : api.CKA_SIGN_RECOVER },
  ]);
  if (!flag(sensitive) || flag(extractable)) {
    throw new HotPatchError(
      'INVALID',
      `the key ${options.keyLabel} on token ${options.token} can leave the token (not sensitive, or extractable): make one with hotpatch keygen --pkcs11-…`,
    );
  }
  if (!flag(allowed)) {
    throw new HotPatchError(
      'INVALID',
      use === 'sign'
        ? `the key ${options.keyLabel} on token ${options.token} is not a signing key (a decryption key signs nothing)`
        : `the key ${options.keyLabel} on token ${options.token} is not a decryption key (a signing key unwraps nothing)`,
    );
  }
  if (flag(other) || flag(otherToo)) {
    throw new HotPatchError(
      'INVALID',
      `the key ${options.keyLabel} on token ${options.token} is allowed to ${use === 'sign' ? 'decrypt or unwrap' : 'sign'} too: one key, one use (make one with hotpatch keygen --pkcs11-…)`,
    );
  }
}

/** CKA_KEY_TYPE: a CK_ULONG in the platform's byte order and size (8 bytes on 64-bit Linux). */
export function keyTypeOf(s: Pkcs11Session, handle: Buffer): number {
  const [type] = s.module.C_GetAttributeValue(s.session, handle, [{ type: s.api.CKA_KEY_TYPE }]);
  const raw = type!.value as Buffer;
  return raw.length === 8 ? Number(raw.readBigUInt64LE()) : raw.readUIntLE(0, raw.length);
}

/** An RSA public key object as a JWK. */
export function rsaJwk(s: Pkcs11Session, handle: Buffer): { kty: 'RSA'; n: string; e: string } {
  const [n, e] = s.module.C_GetAttributeValue(s.session, handle, [{ type: s.api.CKA_MODULUS }, { type: s.api.CKA_PUBLIC_EXPONENT }]);
  return { kty: 'RSA', n: (n!.value as Buffer).toString('base64url'), e: (e!.value as Buffer).toString('base64url') };
}

/** An algorithm's key-pair generation: its mechanism and the public template's parameters. */
export type KeyPairSpec = (api: Pkcs11Api) => { mechanism: number; publicTemplate: Pkcs11js.Attribute[] };

/**
 * Makes a key pair on the token for one use: the private key sensitive, never extractable,
 * allowed only `use` (sign, or decrypt); `spec` gives the mechanism and the algorithm's
 * parameters. A label already taken is INVALID; a mechanism the token lacks, ALGORITHM_DISALLOWED.
 */
export function generateKeyPairOnToken(options: Pkcs11KeyOptions, what: string, spec: KeyPairSpec, use: 'sign' | 'decrypt'): void {
  withSession(
    options,
    (s) => {
      const { module, api, session } = s;
      refuseTakenLabel(s, options);
      const { mechanism, publicTemplate } = spec(api);
      const label = Buffer.from(options.keyLabel, 'utf8');
      const pub: Pkcs11js.Attribute[] = [
        { type: api.CKA_TOKEN, value: true },
        { type: api.CKA_LABEL, value: label },
        { type: use === 'sign' ? api.CKA_VERIFY : api.CKA_ENCRYPT, value: true },
        ...publicTemplate,
      ];
      const priv: Pkcs11js.Attribute[] = [
        { type: api.CKA_TOKEN, value: true },
        { type: api.CKA_LABEL, value: label },
        { type: api.CKA_PRIVATE, value: true },
        { type: api.CKA_SENSITIVE, value: true },
        { type: api.CKA_EXTRACTABLE, value: false },
        { type: api.CKA_SIGN, value: use === 'sign' },
        { type: api.CKA_SIGN_RECOVER, value: false },
        { type: api.CKA_DECRYPT, value: use === 'decrypt' },
        { type: api.CKA_UNWRAP, value: false },
        { type: api.CKA_DERIVE, value: false },
      ];
      try {
        module.C_GenerateKeyPair(session, { mechanism }, pub, priv);
      } catch (cause) {
        throw new HotPatchError('ALGORITHM_DISALLOWED', `token ${options.token} cannot make a ${what} key: ${messageOf(cause)}`, { cause });
      }
    },
    false,
  );
}

/** An RSA key pair: 3072 bits, exponent 65537 (signing and recipient keys alike). */
export const RSA_3072: KeyPairSpec = (api) => ({
  mechanism: api.CKM_RSA_PKCS_KEY_PAIR_GEN,
  publicTemplate: [
    { type: api.CKA_MODULUS_BITS, value: 3072 },
    { type: api.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) },
  ],
});

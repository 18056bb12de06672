import { HotPatchError } from '../core/index.js';
import { PrivateKey, sign, type PublicKey, type SignatureAlgorithm } from '../crypto-agile/index.js';

/**
 * Where a signing key lives (README "Keys in hardware and KMS"): a file, a PKCS#11 token, a
 * remote KMS. Whoever signs — a patch, a repository index — asks the provider for a signature
 * over the exact bytes, in the format the verifier expects (ECDSA: DER; RSA-PSS: SHA-256, MGF1,
 * salt 32; Ed25519: raw), and never holds the private key. An adapter for another KMS (AWS,
 * GCP, Vault transit) is these three members.
 */
export interface KeyProvider {
  /** How it is named in messages (`file`, `pkcs11:<token>/<label>`, `remote:<url>`); never a secret. */
  readonly name: string;
  /** The public key: its algorithm is the key's own, its fingerprint what a trust store lists. */
  readonly publicKey: PublicKey;
  sign(message: Uint8Array): Promise<Uint8Array>;
}

/** A private key in this process (a PEM file read by the caller). */
export class FileKeyProvider implements KeyProvider {
  readonly name = 'file';
  readonly publicKey: PublicKey;
  readonly #key: PrivateKey;

  constructor(key: PrivateKey) {
    if (!(key instanceof PrivateKey)) throw new HotPatchError('INVALID', 'FileKeyProvider needs a PrivateKey (importPrivateKey)');
    this.#key = key;
    this.publicKey = key.publicKey();
  }

  get alg(): SignatureAlgorithm {
    return this.publicKey.alg;
  }

  sign(message: Uint8Array): Promise<Uint8Array> {
    return Promise.resolve(sign(this.#key, message));
  }
}

/** A provider, or a private key wrapped as one. */
export function keyProviderOf(key: PrivateKey | KeyProvider): KeyProvider {
  if (key instanceof PrivateKey) return new FileKeyProvider(key);
  if (typeof key?.sign !== 'function' || key.publicKey === undefined) throw new HotPatchError('INVALID', 'a signing key must be a PrivateKey or a KeyProvider');
  return key;
}

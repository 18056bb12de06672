import { HotPatchError, decodeBase64, encodeBase64, isPlainObject } from '../core/index.js';
import { PublicKey, verifySignature } from '../crypto-agile/index.js';
import type { KeyProvider } from './key-provider.js';
import { checkRemoteOptions, postJson, type RemoteCallOptions } from './remote-post.js';

export interface RemoteKeyOptions extends RemoteCallOptions {
  /** The signer's endpoint: POST `{"message": base64, "alg"}` → `{"signature": base64}`. */
  url: string;
  /** The key's public half, as the trust store lists it: every signature returned is checked against it. */
  publicKey: PublicKey;
}

/**
 * A key held by a remote signer or KMS (README "Keys in hardware and KMS"): the example
 * adapter — a JSON POST per signature — that an AWS KMS, GCP KMS or Vault transit adapter
 * replaces with its own call. Every signature that comes back is verified against the public
 * key before it is used, so a signer that returns garbage, or signs with another key, is
 * BAD_SIGNATURE here and never reaches a manifest.
 */
export class RemoteKeyProvider implements KeyProvider {
  readonly name: string;
  readonly publicKey: PublicKey;
  readonly #options: RemoteKeyOptions;
  readonly #url: URL;

  constructor(options: RemoteKeyOptions) {
    ({ url: this.#url, name: this.name } = checkRemoteOptions(options, 'signer'));
    if (!(options.publicKey instanceof PublicKey)) throw new HotPatchError('INVALID', 'a remote key needs its public key (importPublicKey)');
    this.#options = options;
    this.publicKey = options.publicKey;
  }

  async sign(message: Uint8Array): Promise<Uint8Array> {
    const body = Buffer.from(JSON.stringify({ message: encodeBase64(message), alg: this.publicKey.alg }));
    const reply = await postJson(this.#url, body, this.#options, this.name);
    let signature: Uint8Array;
    try {
      const parsed: unknown = JSON.parse(reply);
      if (!isPlainObject(parsed)) throw new Error('not an object');
      signature = decodeBase64(parsed.signature, 'signature');
    } catch (cause) {
      throw new HotPatchError('BAD_SIGNATURE', `${this.name} answered without a signature`, { cause });
    }
    if (!verifySignature(this.publicKey, message, signature)) {
      throw new HotPatchError(
        'BAD_SIGNATURE',
        `${this.name} returned a signature that does not verify with its public key (sha256:${this.publicKey.fingerprint})`,
      );
    }
    return signature;
  }
}

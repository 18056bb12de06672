import { HotPatchError, decodeBase64, encodeBase64, isPlainObject } from '../core/index.js';
import { RecipientPublicKey, type UnwrapKeyProvider } from '../crypto-agile/index.js';
import { checkRemoteOptions, postJson, type RemoteCallOptions } from './remote-post.js';

export interface RemoteUnwrapOptions extends RemoteCallOptions {
  /** The KMS's endpoint: POST `{"encapsulation": base64, "alg"}` → `{"secret": base64}`. */
  url: string;
  /** The recipient key's public half (what payloads are encrypted to). */
  recipientKey: RecipientPublicKey;
}

/**
 * A recipient key held by a remote KMS (README "Keys in hardware and KMS"): the example adapter
 * — a JSON POST per unwrap — that an AWS KMS (Decrypt, RSAES_OAEP_SHA_256), GCP KMS
 * (asymmetricDecrypt, RSA_DECRYPT_OAEP_*_SHA256) or Vault transit (decrypt) adapter replaces
 * with its own call. The KMS returns the 32-byte secret; a wrong one (a KMS answering with
 * another key, or garbage) does not open the sealed data key, which is DECRYPT_FAILED.
 */
export class RemoteUnwrapProvider implements UnwrapKeyProvider {
  readonly name: string;
  readonly recipientKey: RecipientPublicKey;
  readonly #options: RemoteUnwrapOptions;
  readonly #url: URL;

  constructor(options: RemoteUnwrapOptions) {
    ({ url: this.#url, name: this.name } = checkRemoteOptions(options, 'KMS', true));
    if (!(options.recipientKey instanceof RecipientPublicKey))
      throw new HotPatchError('INVALID', 'a remote recipient key needs its public key (importRecipientPublicKey)');
    this.#options = options;
    this.recipientKey = options.recipientKey;
  }

  async unwrap(encapsulation: Uint8Array): Promise<Uint8Array> {
    const body = Buffer.from(JSON.stringify({ encapsulation: encodeBase64(encapsulation), alg: this.recipientKey.alg }));
    const reply = await postJson(this.#url, body, this.#options, this.name);
    try {
      const parsed: unknown = JSON.parse(reply);
      if (!isPlainObject(parsed)) throw new Error('not an object');
      return decodeBase64(parsed.secret, 'secret');
    } catch (cause) {
      throw new HotPatchError('DECRYPT_FAILED', `${this.name} answered without a secret`, { cause });
    }
  }
}

import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { HotPatchError, decodeBase64, encodeBase64, isPlainObject } from '../core/index.js';
import { PublicKey, verifySignature } from '../crypto-agile/index.js';
import type { KeyProvider } from './key-provider.js';

export interface RemoteKeyOptions {
  /** The signer's endpoint: POST `{"message": base64}` → `{"signature": base64}`. */
  url: string;
  /** The key's public half, as the trust store lists it: every signature returned is checked against it. */
  publicKey: PublicKey;
  /** A bearer token for the signer (never logged). */
  token?: string;
  /** PEM CA certificates for an https signer. */
  ca?: string | Buffer;
  /** Whole request deadline (default 10 s). */
  timeoutMs?: number;
}

const MAX_RESPONSE_BYTES = 64 * 1024;

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
    let url: URL;
    try {
      url = new URL(options?.url);
    } catch {
      throw new HotPatchError('INVALID', 'the remote signer URL is not a URL');
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new HotPatchError('INVALID', `the remote signer URL must be http(s), got ${url.protocol}`);
    if (!(options.publicKey instanceof PublicKey)) throw new HotPatchError('INVALID', 'a remote key needs its public key (importPublicKey)');
    const loopback = ['127.0.0.1', '[::1]', 'localhost'].includes(url.hostname);
    if (options.token !== undefined && url.protocol === 'http:' && !loopback) {
      throw new HotPatchError('INVALID', 'a bearer token is sent to a remote signer over https only (plain http: loopback only)');
    }
    const timeout = options.timeoutMs ?? 10_000;
    if (!Number.isSafeInteger(timeout) || timeout < 1) throw new HotPatchError('INVALID', `timeoutMs must be a positive integer, got ${String(timeout)}`);
    this.#options = options;
    this.#url = url;
    this.publicKey = options.publicKey;
    this.name = `remote:${url.protocol}//${url.host}${url.pathname}`;
  }

  async sign(message: Uint8Array): Promise<Uint8Array> {
    const body = Buffer.from(JSON.stringify({ message: encodeBase64(message), alg: this.publicKey.alg }));
    const reply = await this.#post(body);
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

  #post(body: Buffer): Promise<string> {
    const { token, ca, timeoutMs = 10_000 } = this.#options;
    return new Promise<string>((resolve, reject) => {
      const fail = (code: 'IO' | 'UNAUTHENTICATED' | 'TOO_LARGE', message: string, cause?: unknown): void =>
        reject(new HotPatchError(code, `${this.name}: ${message}`, cause === undefined ? {} : { cause }));
      const send = this.#url.protocol === 'https:' ? httpsRequest : httpRequest;
      const req = send(
        this.#url,
        {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'content-length': body.length, ...(token === undefined ? {} : { authorization: `Bearer ${token}` }) },
          ...(ca === undefined ? {} : { ca }),
        },
        (res) => {
          const status = res.statusCode ?? 0;
          if (status === 401 || status === 403) {
            res.resume();
            return fail('UNAUTHENTICATED', `the signer refused this client (HTTP ${status})`);
          }
          if (status !== 200) {
            res.resume();
            return fail('IO', `the signer answered HTTP ${status}`);
          }
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (chunk: Buffer) => {
            size += chunk.length;
            if (size > MAX_RESPONSE_BYTES) {
              req.destroy();
              return fail('TOO_LARGE', `the signer's answer is over ${MAX_RESPONSE_BYTES} bytes`);
            }
            chunks.push(chunk);
          });
          res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
          res.on('error', (error) => fail('IO', error.message, error));
        },
      );
      const deadline = setTimeout(() => req.destroy(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      req.on('close', () => clearTimeout(deadline));
      req.on('error', (error) => fail('IO', error.message.replaceAll(token ?? '\0', '***'), error));
      req.end(body);
    });
  }
}

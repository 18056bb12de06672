import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { HotPatchError } from '../core/index.js';

/** How a remote key service is reached (the signer and the unwrapping KMS alike). */
export interface RemoteCallOptions {
  /** The service's endpoint (https, or http on loopback with a token). */
  url: string;
  /** A bearer token for the service (never logged). */
  token?: string;
  /** PEM CA certificates for an https service. */
  ca?: string | Buffer;
  /** Whole request deadline (default 10 s). */
  timeoutMs?: number;
}

const MAX_RESPONSE_BYTES = 64 * 1024;

/**
 * The endpoint, checked, and its name for messages: http(s), a positive deadline, and plain http only to loopback when a
 * bearer token goes out or a secret comes back (`secretInAnswer`: a KMS's unwrapped secret
 * opens the payload for whoever reads it on the wire).
 */
export function checkRemoteOptions(options: RemoteCallOptions, what: string, secretInAnswer = false): { url: URL; name: string } {
  let url: URL;
  try {
    url = new URL(options?.url);
  } catch {
    throw new HotPatchError('INVALID', `the remote ${what} URL is not a URL`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new HotPatchError('INVALID', `the remote ${what} URL must be http(s), got ${url.protocol}`);
  const loopback = ['127.0.0.1', '[::1]', 'localhost'].includes(url.hostname);
  if (secretInAnswer && url.protocol === 'http:' && !loopback) {
    throw new HotPatchError('INVALID', `a remote ${what} answers with a secret: https only (plain http: loopback only)`);
  }
  if (options.token !== undefined && url.protocol === 'http:' && !loopback) {
    throw new HotPatchError('INVALID', `a bearer token is sent to a remote ${what} over https only (plain http: loopback only)`);
  }
  const timeout = options.timeoutMs ?? 10_000;
  if (!Number.isSafeInteger(timeout) || timeout < 1) throw new HotPatchError('INVALID', `timeoutMs must be a positive integer, got ${String(timeout)}`);
  // How the service is named in messages: no credentials, no query.
  return { url, name: `remote:${url.protocol}//${url.host}${url.pathname}` };
}

/**
 * One JSON POST to a key service, its answer's text: 401/403 UNAUTHENTICATED, another status
 * or a network failure IO, an answer over 64 KiB TOO_LARGE; the token never in a message.
 */
export function postJson(url: URL, body: Buffer, options: RemoteCallOptions, name: string): Promise<string> {
  const { token, ca, timeoutMs = 10_000 } = options;
  return new Promise<string>((resolve, reject) => {
    const fail = (code: 'IO' | 'UNAUTHENTICATED' | 'TOO_LARGE', message: string, cause?: unknown): void =>
      reject(new HotPatchError(code, `${name}: ${message}`, cause === undefined ? {} : { cause }));
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const req = send(
      url,
      {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': body.length, ...(token === undefined ? {} : { authorization: `Bearer ${token}` }) },
        ...(ca === undefined ? {} : { ca }),
      },
      (res) => {
        const status = res.statusCode ?? 0;
        if (status === 401 || status === 403) {
          res.resume();
          return fail('UNAUTHENTICATED', `the service refused this client (HTTP ${status})`);
        }
        if (status !== 200) {
          res.resume();
          return fail('IO', `the service answered HTTP ${status}`);
        }
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_RESPONSE_BYTES) {
            req.destroy();
            return fail('TOO_LARGE', `the service's answer is over ${MAX_RESPONSE_BYTES} bytes`);
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

import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { HotPatchError, describe } from '../core/index.js';

/** How an HTTP(S) repository fetches: bounded in time and bytes, TLS verified. */
export interface HttpFetchOptions {
  /** CA certificates (PEM) to verify the server with, instead of Node's bundled ones. */
  ca?: string | Buffer | readonly (string | Buffer)[];
  /** The whole fetch of one file must finish within this (default 60,000 ms). */
  totalTimeoutMs?: number;
  /** No byte for this long (default 10,000 ms) and the mirror is abandoned (slow-retrieval attack). */
  stallTimeoutMs?: number;
  /** Redirects followed at most (default 3; never from https to http). */
  maxRedirects?: number;
}

export interface ResolvedHttpFetch {
  ca: string | Buffer | (string | Buffer)[] | undefined;
  totalTimeoutMs: number;
  stallTimeoutMs: number;
  maxRedirects: number;
}

export function resolveHttpFetch(options: HttpFetchOptions): ResolvedHttpFetch {
  const num = (value: unknown, fallback: number, field: string, min: number, max: number): number => {
    const v = value ?? fallback;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
      throw new HotPatchError('INVALID', `${field} must be an integer between ${min} and ${max}, got ${describe(v)}`);
    return v;
  };
  return {
    ca: options.ca === undefined ? undefined : Array.isArray(options.ca) ? [...(options.ca as (string | Buffer)[])] : (options.ca as string | Buffer),
    totalTimeoutMs: num(options.totalTimeoutMs, 60_000, 'totalTimeoutMs', 1, 2 ** 31 - 1),
    stallTimeoutMs: num(options.stallTimeoutMs, 10_000, 'stallTimeoutMs', 1, 2 ** 31 - 1),
    maxRedirects: num(options.maxRedirects, 3, 'maxRedirects', 0, 20),
  };
}

/** A URL as it may appear in a message: no user name, password, query or fragment. */
export function safeUrl(url: URL): string {
  return `${url.protocol}//${url.host}${url.pathname}`;
}

/**
 * The body of `url`, chunk by chunk, at most `maxBytes` in all (the request is ended there).
 * NOT_FOUND for 404/410; IO for anything else that is not 2xx, a refused or broken
 * connection, a TLS failure, a stall or the total deadline; TOO_LARGE when `tooLarge` is set
 * and the body is longer than `maxBytes`.
 */
export async function* httpGetChunks(
  start: URL,
  maxBytes: number,
  options: ResolvedHttpFetch,
  what: string,
  signal?: AbortSignal,
  tooLarge = false,
): AsyncGenerator<Uint8Array> {
  const deadline = Date.now() + options.totalTimeoutMs;
  let url = start;
  for (let redirects = 0; ; redirects++) {
    const res = await get(url, options, deadline, what, signal);
    const status = res.statusCode ?? 0;
    if (status >= 300 && status < 400 && res.headers.location !== undefined) {
      res.resume();
      if (redirects >= options.maxRedirects) throw new HotPatchError('IO', `${what}: more than ${options.maxRedirects} redirects from ${safeUrl(start)}`);
      const next = new URL(res.headers.location, url);
      if (url.protocol === 'https:' && next.protocol !== 'https:')
        throw new HotPatchError('IO', `${what}: ${safeUrl(url)} redirects to a non-https URL, refused`);
      if (next.protocol !== 'https:' && next.protocol !== 'http:') throw new HotPatchError('IO', `${what}: a redirect to ${next.protocol} is refused`);
      url = next;
      continue;
    }
    if (status === 404 || status === 410) {
      res.resume();
      throw new HotPatchError('NOT_FOUND', `${what}: ${safeUrl(url)} answered ${status}`);
    }
    if (status < 200 || status >= 300) {
      res.resume();
      throw new HotPatchError('IO', `${what}: ${safeUrl(url)} answered ${status}`, { detail: { status } });
    }
    const length = Number(res.headers['content-length']);
    if (tooLarge && Number.isFinite(length) && length > maxBytes) {
      res.destroy();
      throw new HotPatchError('TOO_LARGE', `${what}: ${safeUrl(url)} announces ${length} bytes, over the limit of ${maxBytes}`, {
        detail: { limit: maxBytes },
      });
    }
    yield* body(res, url, maxBytes, options, deadline, what, tooLarge);
    return;
  }
}

function get(url: URL, options: ResolvedHttpFetch, deadline: number, what: string, signal?: AbortSignal): Promise<IncomingMessage> {
  if (url.protocol !== 'https:' && url.protocol !== 'http:')
    return Promise.reject(new HotPatchError('INVALID', `${what}: ${url.protocol} URLs are not fetched`));
  return new Promise((resolve, reject) => {
    const request = (url.protocol === 'https:' ? httpsRequest : httpRequest)(
      url,
      { method: 'GET', ...(options.ca === undefined ? {} : { ca: options.ca }), ...(signal === undefined ? {} : { signal }), headers: { accept: '*/*' } },
      resolve,
    );
    const left = deadline - Date.now();
    const total = left <= options.stallTimeoutMs;
    const timer = setTimeout(
      () =>
        request.destroy(new Error(total ? `no answer within the ${options.totalTimeoutMs} ms total deadline` : `no answer for ${options.stallTimeoutMs} ms`)),
      Math.max(0, total ? left : options.stallTimeoutMs),
    );
    request.on('response', () => clearTimeout(timer));
    request.on('error', (error) => {
      clearTimeout(timer);
      reject(new HotPatchError(signal?.aborted === true ? 'ABORTED' : 'IO', `${what}: fetching ${safeUrl(url)} failed: ${error.message}`, { cause: error }));
    });
    request.end();
  });
}

async function* body(
  res: IncomingMessage,
  url: URL,
  maxBytes: number,
  options: ResolvedHttpFetch,
  deadline: number,
  what: string,
  tooLarge: boolean,
): AsyncGenerator<Uint8Array> {
  let total = 0;
  let stalled: NodeJS.Timeout | undefined;
  const arm = (): void => {
    clearTimeout(stalled);
    const left = deadline - Date.now();
    const stall = left < options.stallTimeoutMs;
    stalled = setTimeout(
      () =>
        res.destroy(
          new Error(
            stall ? `the ${options.totalTimeoutMs} ms total deadline passed` : `no byte for ${options.stallTimeoutMs} ms (a stalled or trickling mirror)`,
          ),
        ),
      Math.max(0, stall ? left : options.stallTimeoutMs),
    );
  };
  try {
    arm();
    for await (const chunk of res as AsyncIterable<Buffer>) {
      arm();
      const room = maxBytes - total;
      if (chunk.length > room && tooLarge) {
        throw new HotPatchError('TOO_LARGE', `${what}: ${safeUrl(url)} sent more than ${maxBytes} bytes`, { detail: { limit: maxBytes } });
      }
      if (chunk.length >= room) {
        if (room > 0) yield new Uint8Array(chunk.subarray(0, room));
        // At the limit. A payload's reader asked for one byte more than it accepts, so a longer
        // file is seen by it; the rest is never read.
        if (!tooLarge || chunk.length > room) return;
        total = maxBytes;
        continue;
      }
      total += chunk.length;
      yield new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length);
    }
  } catch (error) {
    if (error instanceof HotPatchError) throw error;
    throw new HotPatchError('IO', `${what}: reading ${safeUrl(url)} failed: ${(error as Error).message}`, { cause: error });
  } finally {
    clearTimeout(stalled);
    res.destroy();
  }
}

import { createHash, randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { asn1js, pkijs } from './pkix-modules.js';
import { HotPatchError, decodeEnvelope, encodeEnvelope, parsePatchId } from '../core/index.js';
import { FileSystemRepository, safeUrl } from '../repo/index.js';
import { parseTimestampToken, tokenOver, verifyTimestampToken, type TimestampInfo } from './timestamp-token.js';
import type { TrustStore } from './trust-store.js';

const SHA256 = '2.16.840.1.101.3.4.2.1';
/** Largest reply read from a TSA: a token with a few certificates is a few KiB. */
const MAX_REPLY_BYTES = 256 * 1024;

/** A DER TimeStampReq over SHA-256 of `signed`, asking for the TSA's certificate, with a fresh nonce. */
export function timestampQuery(signed: Uint8Array): { query: Uint8Array; nonce: string } {
  const nonce = randomBytes(8);
  nonce[0]! &= 0x7f; // a positive INTEGER
  const request = new pkijs.TimeStampReq({
    version: 1,
    messageImprint: new pkijs.MessageImprint({
      hashAlgorithm: new pkijs.AlgorithmIdentifier({ algorithmId: SHA256, algorithmParams: new asn1js.Null() }),
      hashedMessage: new asn1js.OctetString({ valueHex: createHash('sha256').update(signed).digest() }),
    }),
    nonce: new asn1js.Integer({ valueHex: nonce }),
    certReq: true,
  });
  return { query: new Uint8Array(request.toSchema().toBER()), nonce: nonce.toString('hex') };
}

/**
 * The token in a TSA's reply (a DER TimeStampResp whose status is granted), or a bare token as
 * `openssl ts -reply -token_out` writes it. With `nonce`, the token must carry it (a replayed
 * reply is refused). INVALID for anything else, with the TSA's status text.
 */
export function readTimestampReply(bytes: Uint8Array, nonce?: string): Uint8Array {
  let token: Uint8Array;
  try {
    const response = pkijs.TimeStampResp.fromBER(bytes);
    const status = response.status.status;
    if (status !== 0 && status !== 1) {
      const text = response.status.statusStrings?.map((s) => s.valueBlock.value).join('; ') ?? '';
      throw new HotPatchError('INVALID', `the time-stamping authority refused: status ${status}${text === '' ? '' : ` (${text.slice(0, 200)})`}`);
    }
    if (response.timeStampToken === undefined) throw new HotPatchError('INVALID', 'the time-stamping reply has no token');
    token = new Uint8Array(response.timeStampToken.toSchema().toBER());
  } catch (error) {
    if (error instanceof HotPatchError) throw error;
    token = bytes; // not a reply: perhaps a bare token (checked next)
  }
  const { tstInfo } = parseTimestampToken(token);
  if (nonce !== undefined) {
    const got = tstInfo.nonce === undefined ? undefined : Buffer.from(tstInfo.nonce.valueBlock.valueHexView).toString('hex').replace(/^0+/, '');
    if (got !== nonce.replace(/^0+/, ''))
      throw new HotPatchError('INVALID', 'the time-stamping reply does not carry the nonce of the request (a replayed reply?)');
  }
  return token;
}

export interface RequestTimestampOptions {
  /** PEM CA certificates for an https TSA (default: Node's). */
  ca?: string | Buffer;
  /** Whole exchange deadline (default 30 s). */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** Asks the TSA at `url` (RFC 3161 over HTTP: POST application/timestamp-query) to timestamp `signed`; → the token (DER). */
export async function requestTimestamp(url: string, signed: Uint8Array, options: RequestTimestampOptions = {}): Promise<Uint8Array> {
  let target: URL;
  try {
    target = new URL(url);
  } catch {
    throw new HotPatchError('INVALID', 'the time-stamping authority URL is not a URL');
  }
  if (target.protocol !== 'http:' && target.protocol !== 'https:')
    throw new HotPatchError('INVALID', `the time-stamping authority URL must be http(s), got ${target.protocol}`);
  const { query, nonce } = timestampQuery(signed);
  const reply = await post(target, query, options);
  return readTimestampReply(reply, nonce);
}

function post(url: URL, body: Uint8Array, options: RequestTimestampOptions): Promise<Uint8Array> {
  const where = safeUrl(url);
  return new Promise<Uint8Array>((resolve, reject) => {
    const fail = (message: string, cause?: unknown): void =>
      reject(new HotPatchError('IO', `time-stamping authority ${where}: ${message}`, cause === undefined ? {} : { cause }));
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const req = send(
      url,
      {
        method: 'POST',
        headers: { 'content-type': 'application/timestamp-query', 'content-length': body.length, accept: 'application/timestamp-reply' },
        ...(options.ca === undefined ? {} : { ca: options.ca }),
        ...(options.signal === undefined ? {} : { signal: options.signal }),
      },
      (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          return fail(`HTTP ${res.statusCode ?? '?'}`);
        }
        const chunks: Buffer[] = [];
        let total = 0;
        res.on('data', (chunk: Buffer) => {
          total += chunk.length;
          if (total > MAX_REPLY_BYTES) {
            req.destroy();
            reject(new HotPatchError('TOO_LARGE', `time-stamping authority ${where}: a reply over ${MAX_REPLY_BYTES} bytes`));
            return;
          }
          chunks.push(chunk);
        });
        res.on('end', () => resolve(new Uint8Array(Buffer.concat(chunks))));
        res.on('close', () => {
          if (!res.complete) fail('the reply was cut off');
        });
        res.on('error', (error) => fail(error.message, error));
      },
    );
    // One deadline for the whole exchange: a TSA trickling its reply a byte at a time is cut off.
    const limit = options.timeoutMs ?? 30_000;
    const deadline = setTimeout(() => req.destroy(new Error(`no complete reply within ${limit} ms`)), limit);
    req.on('close', () => clearTimeout(deadline));
    req.on('error', (error) => fail(error.message, error));
    req.end(body);
  });
}

export interface TimestampPatchOptions {
  /** A TSA to ask (RFC 3161 over HTTP). */
  tsaUrl?: string;
  /** A reply (or token) obtained already, for one signature: `keyid` names which. */
  reply?: Uint8Array;
  /** Only this signature (default: every signature without a timestamp). */
  keyid?: string;
  /** When given, each token must verify against its authorities before it is stored. */
  trust?: TrustStore;
  ca?: string | Buffer;
  signal?: AbortSignal;
}

/**
 * Adds RFC 3161 timestamps to the signatures of a packed patch (what `hotpatch timestamp`
 * does): each token is over one signature's bytes, stored beside it in the envelope, which is
 * replaced atomically. With `trust`, a token its authorities would not accept is refused and
 * nothing is written. Returns each timestamped key id with what its token says (info only when
 * checked against `trust`).
 */
export async function timestampPatch(directory: string, id: string, options: TimestampPatchOptions): Promise<{ keyid: string; info?: TimestampInfo }[]> {
  const patchId = parsePatchId(id);
  if ((options.tsaUrl === undefined) === (options.reply === undefined))
    throw new HotPatchError('INVALID', 'give a time-stamping authority URL or a reply, one of the two');
  if (options.reply !== undefined && options.keyid === undefined) throw new HotPatchError('INVALID', 'a reply timestamps one signature: name its key id');
  const repo = new FileSystemRepository(directory);
  const envelope = decodeEnvelope(await repo.fetchEnvelope(patchId, options.signal));
  const chosen = envelope.signatures.filter((s) => (options.keyid === undefined ? s.timestamp === undefined : s.keyid === options.keyid));
  if (chosen.length === 0) {
    throw new HotPatchError(
      'NOT_FOUND',
      options.keyid === undefined ? `every signature of ${patchId} is timestamped already` : `${patchId} has no signature by ${options.keyid}`,
    );
  }
  const done: { keyid: string; info?: TimestampInfo }[] = [];
  for (const s of chosen) {
    const token =
      options.reply !== undefined
        ? readTimestampReply(options.reply)
        : await requestTimestamp(options.tsaUrl!, s.sig, {
            ...(options.ca === undefined ? {} : { ca: options.ca }),
            ...(options.signal === undefined ? {} : { signal: options.signal }),
          });
    const info = options.trust === undefined ? undefined : verifyTimestampToken(token, s.sig, options.trust.timestampAuthorities);
    if (info === undefined) tokenOver(token, s.sig);
    s.timestamp = token;
    done.push(info === undefined ? { keyid: s.keyid } : { keyid: s.keyid, info });
  }
  await repo.writeEnvelope(patchId, encodeEnvelope(envelope), options.signal);
  return done;
}

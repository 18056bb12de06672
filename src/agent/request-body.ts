import type { IncomingMessage } from 'node:http';
import { HotPatchError, decodeJsonObject, stringField as jsonStringField } from '../core/index.js';

const MAX_BODY_BYTES = 1024 * 1024;
/** The longest string a request field may hold (a reason, a plan id), unless a route says otherwise. */
const MAX_FIELD_CHARS = 1024;

/** Reads a JSON object body, at most 1 MiB (TOO_LARGE past it, PARSE/INVALID when malformed). */
export async function readJsonBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  const declared = Number(req.headers['content-length'] ?? '0');
  if (declared > MAX_BODY_BYTES) throw new HotPatchError('TOO_LARGE', `request body of ${declared} bytes is over the ${MAX_BODY_BYTES}-byte limit`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new HotPatchError('TOO_LARGE', `request body is over the ${MAX_BODY_BYTES}-byte limit`);
    chunks.push(chunk as Buffer);
  }
  if (size === 0) return {};
  return decodeJsonObject(new Uint8Array(Buffer.concat(chunks)), 'request body');
}

/** A request's string field (the core kit's check), at most 1,024 characters unless `max` says otherwise. */
export function stringField(body: Record<string, unknown>, name: string, what: string, options: { optional?: boolean; max?: number } = {}): string | undefined {
  return jsonStringField(body, name, what, { max: MAX_FIELD_CHARS, ...options });
}

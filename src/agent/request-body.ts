import type { IncomingMessage } from 'node:http';
import { HotPatchError, decodeJson, describe } from '../core/index.js';

const MAX_BODY_BYTES = 1024 * 1024;

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
  const value = decodeJson(new Uint8Array(Buffer.concat(chunks)), 'request body');
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new HotPatchError('INVALID', `request body must be a JSON object, got ${describe(value)}`);
  }
  return value as Record<string, unknown>;
}

/** Refuses fields a request does not define, so a typo never silently does nothing. */
export function onlyFields(body: Record<string, unknown>, allowed: readonly string[], what: string): void {
  for (const key of Object.keys(body)) {
    if (!allowed.includes(key)) throw new HotPatchError('INVALID', `${what}: unknown field ${JSON.stringify(key)} (allowed: ${allowed.join(', ') || 'none'})`);
  }
}

export function stringField(body: Record<string, unknown>, name: string, what: string, options: { optional?: boolean; max?: number } = {}): string | undefined {
  const value = body[name];
  if (value === undefined && options.optional === true) return undefined;
  if (typeof value !== 'string' || value.length === 0 || value.length > (options.max ?? 1024)) {
    throw new HotPatchError('INVALID', `${what}: ${name} must be a non-empty string of at most ${options.max ?? 1024} characters, got ${describe(value)}`);
  }
  return value;
}

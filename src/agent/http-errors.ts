import { HotPatchError, boundMessage, errorCategory, type ErrorCode } from '../core/index.js';

/** HTTP status for an error code: the body always carries the code itself. */
export function httpStatusFor(code: ErrorCode): number {
  switch (code) {
    case 'INVALID':
    case 'PARSE':
      return 400;
    case 'NOT_FOUND':
      return 404;
    case 'TOO_LARGE':
      return 413;
    case 'ABORTED':
      return 409;
    case 'UNAUTHENTICATED':
      // Something the agent depends on refused it (a token's PIN, a KMS): 502. The agent's own
      // refusal of a request is the request handler's 401, sent before any route runs — a 401
      // here would send the client looking for a bearer token it already has.
      return 502;
    case 'IO':
      return 500;
    default:
      // verification, policy and rollout refusals: the request was understood and refused
      return errorCategory(code) === 'repository' ? 400 : 422;
  }
}

export interface ErrorBody {
  ok: false;
  code: ErrorCode | 'INTERNAL';
  message: string;
  detail?: Record<string, unknown>;
}

export function errorBody(error: unknown): { status: number; body: ErrorBody } {
  if (error instanceof HotPatchError) {
    const body: ErrorBody = { ok: false, code: error.code, message: error.message };
    if (error.detail !== undefined) body.detail = error.detail;
    return { status: httpStatusFor(error.code), body };
  }
  // Not one of ours (a payload's own error, a bug): bounded and redacted like every message.
  return { status: 500, body: { ok: false, code: 'INTERNAL', message: boundMessage(error instanceof Error ? error.message : String(error)) } };
}

import type { AsyncLocalStorage } from 'node:async_hooks';
import type { IOptions } from 'etcd3';
import { GRPCUnavailableError, isRecoverableError } from 'etcd3';
import { HotPatchError, describe } from '../core/index.js';

/*
 * How the etcd client behaves when members fail: a per-member circuit (skip a member that
 * refused a connection, for a while), one retry policy bounded by the operation's deadline
 * that never re-sends a non-idempotent write that may have been delivered, capped watch
 * backoff, and the endpoint check.
 */

export type FaultHandling = NonNullable<IOptions['faultHandling']>;
export type WatchBackoff = NonNullable<FaultHandling['watchBackoff']>;
export type GlobalPolicy = NonNullable<FaultHandling['global']>;
export type HostPolicy = ReturnType<NonNullable<FaultHandling['host']>>;
export type PolicyContext = Parameters<Parameters<GlobalPolicy['execute']>[0]>[0];

/** What an operation in flight tells the retry policy and the call-options factory. */
export interface OperationContext {
  /** Absolute deadline of the whole operation. */
  deadline: number;
  idempotent: boolean;
  /** Set when an attempt failed in a way that does not prove it never reached a member. */
  maybeDelivered: boolean;
}

/** Thrown by the member policy instead of calling a member that refused a connection just now. */
export class MemberSkippedError extends Error {
  constructor(host: string, untilMs: number) {
    super(`etcd member ${host} refused a connection; skipped for ${untilMs} ms more`);
    this.name = 'MemberSkippedError';
  }
}

/** The request surely never reached a member: safe to re-send even when not idempotent. */
export function neverSent(error: unknown): boolean {
  if (error instanceof MemberSkippedError) return true;
  if (!(error instanceof GRPCUnavailableError)) return false;
  return /No connection established|ECONNREFUSED|failed to connect|Name resolution failed/i.test(error.message);
}

export const noEvent = (() => ({ dispose: () => undefined })) as unknown;

/**
 * etcd3's per-member policy (only `execute` is called by etcd3): skips a member for
 * `backoffMs` after it refused a connection; every other outcome passes through.
 */
export function memberPolicy(host: string, backoffMs: number): HostPolicy {
  let skipUntil = 0;
  const policy = {
    onSuccess: noEvent,
    onFailure: noEvent,
    async execute<T>(fn: (context: PolicyContext) => PromiseLike<T> | T): Promise<T> {
      const now = Date.now();
      if (now < skipUntil) throw new MemberSkippedError(host, skipUntil - now);
      try {
        return await fn({ signal: new AbortController().signal });
      } catch (error) {
        if (error instanceof GRPCUnavailableError) skipUntil = Date.now() + backoffMs;
        throw error;
      }
    },
  };
  return policy as unknown as HostPolicy;
}

/**
 * etcd3's global policy (retries pick another member): see the module comment. Bounded by
 * the operation's deadline; without an operation context (etcd3's own calls), 3 attempts.
 */
export function retryPolicy(operations: AsyncLocalStorage<OperationContext>): GlobalPolicy {
  const policy = {
    onSuccess: noEvent,
    onFailure: noEvent,
    async execute<T>(fn: (context: PolicyContext) => PromiseLike<T> | T): Promise<T> {
      const op = operations.getStore();
      for (let attempt = 1; ; attempt += 1) {
        try {
          return await fn({ signal: new AbortController().signal });
        } catch (error) {
          if (op !== undefined && !neverSent(error)) op.maybeDelivered = true;
          const safe = neverSent(error) || ((op?.idempotent ?? true) && isRecoverableError(error as Error));
          const remaining = op === undefined ? (attempt < 3 ? Infinity : 0) : op.deadline - Date.now();
          if (!safe || remaining <= 0) throw error;
          await new Promise((resolve) => setTimeout(resolve, Math.min(25 * 2 ** Math.min(attempt, 4), remaining)));
        }
      }
    },
  };
  return policy as unknown as GlobalPolicy;
}

/** Watch reconnection backoff: doubling from `ms`, capped at `max` (etcd3's default caps at 30 s). */
export function cappedBackoff(ms: number, max: number): WatchBackoff {
  return { duration: ms, next: () => cappedBackoff(Math.min(ms * 2, max), max) };
}


export function checkEndpoint(value: unknown, index: number): string {
  if (typeof value !== 'string') throw new HotPatchError('INVALID', `endpoints[${index}] must be a string, got ${describe(value)}`);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new HotPatchError('INVALID', `endpoints[${index}] must be a URL like http://127.0.0.1:2379, got ${describe(value)}`);
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.hostname === '' || url.port === '' || (url.pathname !== '/' && url.pathname !== '')) {
    throw new HotPatchError('INVALID', `endpoints[${index}] must be http(s)://host:port, got ${describe(value)}`);
  }
  if (url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '') {
    throw new HotPatchError('INVALID', `endpoints[${index}] must be http(s)://host:port with nothing else, got ${describe(value)}`);
  }
  return `${url.protocol}//${url.host}`;
}

export { messageOf } from '../core/index.js';

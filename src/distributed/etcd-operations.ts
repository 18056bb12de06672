import { AsyncLocalStorage } from 'node:async_hooks';
import type { TimeoutPolicy } from 'cockatiel';
import { ClientClosedError, EtcdAuthenticationFailedError, EtcdLeaseInvalidError, EtcdPermissionDeniedError } from 'etcd3';
import { HotPatchError, messageOf } from '../core/index.js';
import { neverSent, operationTimeout, type OperationContext } from './etcd-policies.js';
import { signal } from './one-shot-signal.js';

/** The end of every message of a failure that may come from a cluster without quorum. */
export const QUORUM_HINT = '(etcd unreachable or without quorum)';

/** How an operation may be re-sent: reads and writes are idempotent, transactions (create, compare-and-swap) are not. */
export type OperationKind = 'read' | 'write' | 'transaction';

/**
 * One AsyncLocalStorage for every store of the process: on Node 20 each instance adds work
 * to every promise created anywhere, so one per store made 200 in-process agents cost
 * quadratically. Each operation runs in its own context, so sharing is safe.
 */
const OPERATIONS = new AsyncLocalStorage<OperationContext>();

/**
 * How an `EtcdStore` runs one operation (a get, a put, one step of a campaign, a lease
 * grant…), and what it counts.
 *
 * One deadline per operation (`callTimeoutMs`), retries included: the operation's context
 * (deadline, idempotence) is seen by the retry policy (`etcd-policies.ts`) and by the call
 * options of every etcd3 call it makes — an idempotent operation gives each attempt a shorter
 * gRPC deadline (`attemptTimeoutMs`) so that a request lost with a crashed Raft leader is
 * re-sent within the operation; a transaction gets the whole deadline for its one attempt. An
 * outer timeout policy ends whatever would hang past the deadline (a watch stream has no gRPC
 * deadline), so a cluster without quorum fails within about `callTimeoutMs`.
 *
 * Errors become HotPatchErrors: `NOT_FOUND` for a lease that no longer exists, `INVALID` for a
 * closed store, `IO` for the rest — ending "(etcd unreachable or without quorum)", except for
 * a denied permission. A write that may have reached a member says "the write may or may not
 * have been applied" (`detail.outcome: 'unknown'`): it may sit in a Raft log and commit when
 * quorum returns, so callers re-read before acting on it.
 *
 * `requestCount` counts every call etcd3 sends (each attempt; counted where etcd3 resolves
 * the call options, so an attempt a member's open circuit refused is not), every stream
 * opened, and what the store counts itself (keep-alive messages, watch creations).
 */
export class EtcdOperations {
  readonly #contexts = OPERATIONS;
  /** gRPC enforces the deadlines itself; this only ends what would hang past them. */
  readonly #timeout: TimeoutPolicy;
  readonly #closed = signal();
  #requests = 0;

  constructor(
    readonly endpoints: readonly string[],
    readonly callTimeoutMs: number,
    readonly attemptTimeoutMs: number,
  ) {
    this.#timeout = operationTimeout(callTimeoutMs + 250);
  }

  /** The store every operation's context lives in (the retry policy reads it). */
  get contexts(): AsyncLocalStorage<OperationContext> {
    return this.#contexts;
  }

  get requestCount(): number {
    return this.#requests;
  }

  countRequest(): void {
    this.#requests += 1;
  }

  /**
   * etcd3's `defaultCallOptions`, called for every call it sends (each attempt): counts it,
   * and gives it its deadline (streams have none).
   */
  readonly callOptions = (context: { isStream: boolean }): { deadline?: number } => {
    this.#requests += 1;
    if (context.isStream) return {};
    const op = this.#contexts.getStore();
    const now = Date.now();
    if (op === undefined) return { deadline: now + this.callTimeoutMs };
    return { deadline: op.idempotent ? Math.min(op.deadline, now + this.attemptTimeoutMs) : op.deadline };
  };

  get closed(): boolean {
    return this.#closed.done;
  }

  /** Resolves when the store is closed (what ends campaigns and leaderships). */
  get whenClosed(): Promise<void> {
    return this.#closed.promise;
  }

  close(): void {
    this.#closed.fire();
  }

  assertOpen(): void {
    if (this.closed) throw new HotPatchError('INVALID', `etcd store (${this.endpoints.join(',')}) is closed`);
  }

  /** Runs one operation (see the class comment); its failure is a HotPatchError. */
  async call<T>(what: string, run: () => Promise<T>, kind: OperationKind): Promise<T> {
    this.assertOpen();
    const op: OperationContext = { deadline: Date.now() + this.callTimeoutMs, idempotent: kind !== 'transaction', maybeDelivered: false };
    try {
      return await this.#timeout.execute(() => this.#contexts.run(op, run));
    } catch (error) {
      throw this.toError(error, what, kind === 'read' ? undefined : op);
    }
  }

  /** Any failure of an etcd call, as a HotPatchError; `write` is the context of a write (its outcome may be unknown). */
  toError(error: unknown, what: string, write?: OperationContext): HotPatchError {
    if (error instanceof HotPatchError) return error;
    if (error instanceof EtcdLeaseInvalidError) {
      return new HotPatchError('NOT_FOUND', `${what}: the lease is gone (expired or revoked)`, { cause: error });
    }
    if (error instanceof ClientClosedError) {
      return new HotPatchError('INVALID', `${what}: the etcd store is closed`, { cause: error });
    }
    const denied = error instanceof EtcdPermissionDeniedError || error instanceof EtcdAuthenticationFailedError;
    // A write that timed out may still be in a Raft log and commit when quorum returns.
    const unknownOutcome = write !== undefined && (write.maybeDelivered || !neverSent(error)) && !denied;
    const hint = denied ? '' : unknownOutcome ? ` ${QUORUM_HINT.slice(0, -1)}; the write may or may not have been applied)` : ` ${QUORUM_HINT}`;
    return new HotPatchError('IO', `${what} failed: ${messageOf(error)}${hint}`, {
      cause: error,
      detail: { endpoints: [...this.endpoints], ...(unknownOutcome ? { outcome: 'unknown' } : {}) },
    });
  }
}

import type { AsyncLocalStorage } from 'node:async_hooks';
import {
  ConsecutiveBreaker,
  ExponentialBackoff,
  TimeoutStrategy,
  circuitBreaker,
  handleType,
  handleWhen,
  isBrokenCircuitError,
  retry,
  timeout,
  wrap,
  type CircuitBreakerPolicy,
  type IBackoff,
  type IBackoffFactory,
  type IPolicy,
  type IRetryBackoffContext,
  type TimeoutPolicy,
} from 'cockatiel';
import { GRPCUnavailableError, isRecoverableError } from 'etcd3';

/*
 * How the etcd client behaves when members fail, built from cockatiel's policies (what
 * etcd3's `faultHandling` option takes; they replace etcd3's defaults, which retry any
 * request 3 times and open a member's circuit for 5 s after 3 failures):
 * - per member, a circuit breaker: a member that answered UNAVAILABLE (refused a connection,
 *   went away) is skipped for `memberBackoffMs`; then one call tries it again (half-open);
 * - for each call etcd3 sends, a retry policy bounded by the operation's deadline, which never
 *   re-sends a non-idempotent write that may have been delivered (each retry goes to a member
 *   etcd3 picks at random);
 * - per operation, a timeout policy: the outer bound of everything an operation does;
 * - a capped, jittered backoff for watch reconnections.
 */

/** What an operation in flight tells the retry policy and the call-options factory. */
export interface OperationContext {
  /** Absolute deadline of the whole operation. */
  deadline: number;
  idempotent: boolean;
  /** Set when an attempt failed in a way that does not prove it never reached a member. */
  maybeDelivered: boolean;
}

/** The request surely never reached a member: safe to re-send even when not idempotent. */
export function neverSent(error: unknown): boolean {
  // An open circuit refuses the call before anything is sent.
  if (isBrokenCircuitError(error)) return true;
  if (!(error instanceof GRPCUnavailableError)) return false;
  return /No connection established|ECONNREFUSED|failed to connect|Name resolution failed/i.test(error.message);
}

/** etcd3's per-member policy: a circuit that one UNAVAILABLE answer opens for `backoffMs`. */
export function memberCircuit(backoffMs: number): CircuitBreakerPolicy {
  return circuitBreaker(handleType(GRPCUnavailableError), { halfOpenAfter: backoffMs, breaker: new ConsecutiveBreaker(1) });
}

/** Attempts of a call made outside any operation (etcd3's own): the first and two retries. */
const RETRIES_WITHOUT_OPERATION = 2;

/**
 * etcd3's global policy, wrapped around each call it sends (retries go to another member).
 * Inside an operation (`operations` has its context): retried while the deadline allows, when
 * the attempt surely never left or the operation is idempotent and the error recoverable; a
 * failure that may have been delivered marks the operation so its error says the outcome is
 * unknown. Outside one: recoverable errors, twice more.
 */
export function callRetry(operations: AsyncLocalStorage<OperationContext>): IPolicy {
  const withinDeadline = retry(
    handleWhen((error) => {
      const op = operations.getStore();
      if (op === undefined) return false;
      if (!neverSent(error)) op.maybeDelivered = true;
      const safe = neverSent(error) || (op.idempotent && isRecoverableError(error));
      return safe && Date.now() < op.deadline;
    }),
    { maxAttempts: Infinity, backoff: new DeadlineBackoff(operations) },
  );
  const withoutOperation = retry(
    handleWhen((error) => operations.getStore() === undefined && (neverSent(error) || isRecoverableError(error))),
    { maxAttempts: RETRIES_WITHOUT_OPERATION, backoff: retryBackoff() },
  );
  return wrap(withoutOperation, withinDeadline);
}

/** Delays between retries: 50 ms doubling to 400 ms, jittered so that many clients do not retry in step. */
const retryBackoff = (): ExponentialBackoff<unknown> => new ExponentialBackoff({ initialDelay: 50, maxDelay: 400 });

/** `retryBackoff`, never waiting past the operation's deadline (the retry after it would fail anyway). */
class DeadlineBackoff implements IBackoffFactory<IRetryBackoffContext<unknown>> {
  constructor(
    private readonly operations: AsyncLocalStorage<OperationContext>,
    private readonly delays: IBackoffFactory<unknown> = retryBackoff(),
  ) {}

  next(context: IRetryBackoffContext<unknown>): IBackoff<IRetryBackoffContext<unknown>> {
    const step = this.delays.next(context);
    const op = this.operations.getStore();
    const remaining = op === undefined ? Infinity : op.deadline - Date.now();
    const rest = new DeadlineBackoff(this.operations, step);
    return { duration: Math.max(0, Math.min(step.duration, remaining)), next: (c) => rest.next(c) };
  }
}

/**
 * The outer bound of one operation: it rejects (TaskCancelledError) whatever its calls are
 * doing. Nothing listens to its abort signal (gRPC has its own deadlines), so it is not
 * aborted after every operation that ends in time: that costs a DOMException each.
 */
export function operationTimeout(ms: number): TimeoutPolicy {
  return timeout(ms, { strategy: TimeoutStrategy.Aggressive, abortOnReturn: false });
}

/**
 * Watch reconnection delays: from about 50 ms, doubling, capped at `maxMs` (etcd3's default
 * caps at 30 s), jittered so that a fleet's watches do not reconnect in step. etcd3 takes a
 * backoff already started and calls `next()` for each reconnection.
 */
export function watchBackoff(maxMs: number): IBackoff<unknown> {
  return new ExponentialBackoff({ initialDelay: 50, maxDelay: maxMs }).next();
}

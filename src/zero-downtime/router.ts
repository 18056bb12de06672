import type { CanaryRoute } from './canary-route.js';
import { elapsedMs, isThenable } from './thenable.js';
import type { RuntimeVersion } from './runtime-version.js';

type AnyFunction = (...args: unknown[]) => unknown;

/**
 * What a routed call consults when it is not a plain steady call: a running canary, or the
 * one-shot duration probe. Both live in the same field so the steady path stays one load
 * and one null check.
 */
export interface Detour {
  callSync(index: number, api: object, thisArg: unknown, args: unknown[]): unknown;
  callAsync(index: number, api: object, thisArg: unknown, args: unknown[]): unknown;
}

/** Steady route and optional detour: the two fields every routed call reads. */
export class Router {
  steady: RuntimeVersion;
  detour: Detour | null = null;
  /** The running canary, when the detour is one (the probe never hides it). */
  canary: CanaryRoute | null = null;
  readonly #probe: DurationProbe;

  constructor(steady: RuntimeVersion) {
    this.steady = steady;
    this.#probe = new DurationProbe(this);
  }

  setCanary(route: CanaryRoute | null): void {
    this.canary = route;
    this.detour = route;
  }

  /** Times the next steady call (if no canary runs): sampling by time, not by call count. */
  armProbe(): void {
    if (this.detour === null) this.detour = this.#probe;
  }

  /** @internal the probe disarms itself before the call it times. */
  disarm(probe: Detour): void {
    if (this.detour === probe) this.detour = null;
  }
}

/**
 * Durations for the metrics histogram at no cost per call: a timer arms the probe a few
 * times a second; the next call takes the detour, disarms it, and is timed. Steady calls
 * in between pay nothing but the null check they pay anyway.
 */
class DurationProbe implements Detour {
  readonly #router: Router;

  constructor(router: Router) {
    this.#router = router;
  }

  callSync(index: number, api: object, thisArg: unknown, args: unknown[]): unknown {
    this.#router.disarm(this);
    const v = this.#router.steady;
    v.calls += 1;
    const started = performance.now();
    try {
      return (v.functions[index] as AnyFunction).apply(thisArg === api ? v.impl : thisArg, args);
    } catch (error) {
      return failedCall(v, error, index, api, thisArg, args);
    } finally {
      v.addLatency((performance.now() - started) / 1000);
    }
  }

  callAsync(index: number, api: object, thisArg: unknown, args: unknown[]): unknown {
    this.#router.disarm(this);
    const v = this.#router.steady;
    v.calls += 1;
    v.inflight += 1;
    const started = performance.now();
    let result: unknown;
    try {
      result = (v.functions[index] as AnyFunction).apply(thisArg === api ? v.impl : thisArg, args);
    } catch (error) {
      v.leave();
      return failedCall(v, error, index, api, thisArg, args);
    }
    if (!isThenable(result)) {
      v.leave();
      v.addLatency((performance.now() - started) / 1000);
      return result;
    }
    return Promise.resolve(result).then(
      (value) => {
        v.leave();
        v.addLatency(elapsedMs(started, result) / 1000);
        return value;
      },
      (error: unknown) => {
        v.leave();
        return failedCall(v, error, index, api, thisArg, args);
      },
    );
  }
}

/** A routed synchronous method: steady calls cost one field read, a null check and a counter. */
export function syncMethod(router: Router, api: object, index: number): AnyFunction {
  return function routed(this: unknown, ...args: unknown[]): unknown {
    const detour = router.detour;
    if (detour !== null) return detour.callSync(index, api, this, args);
    const v = router.steady;
    v.calls += 1;
    try {
      return (v.functions[index] as AnyFunction).apply(this === api ? v.impl : this, args);
    } catch (error) {
      return failedCall(v, error, index, api, this, args);
    }
  };
}

/** A routed async method: also counts its calls in flight, so a version is disposed only once drained. */
export function asyncMethod(router: Router, api: object, index: number): AnyFunction {
  return function routed(this: unknown, ...args: unknown[]): unknown {
    const detour = router.detour;
    if (detour !== null) return detour.callAsync(index, api, this, args);
    const v = router.steady;
    const self = this;
    v.calls += 1;
    v.inflight += 1;
    let result: unknown;
    try {
      result = (v.functions[index] as AnyFunction).apply(this === api ? v.impl : this, args);
    } catch (error) {
      v.leave();
      return failedCall(v, error, index, api, self, args);
    }
    if (!isThenable(result)) {
      v.leave();
      return result;
    }
    return Promise.resolve(result).then(
      (value) => {
        v.leave();
        return value;
      },
      (error: unknown) => {
        v.leave();
        return failedCall(v, error, index, api, self, args);
      },
    );
  };
}

/**
 * The error path of every steady call: counted, told to a probation watch, then re-run on the
 * fallback (a watched probation with `retryOnBaseline`) or rethrown. Healthy calls never get here.
 */
function failedCall(v: RuntimeVersion, error: unknown, index: number, api: object, thisArg: unknown, args: unknown[]): unknown {
  v.errors += 1;
  if (v.onError !== null) v.onError();
  if (v.fallback !== null) return retryOn(v.fallback, index, api, thisArg, args);
  throw error;
}

/**
 * A failed call of a version in its watched probation, for an idempotent target with
 * `retryOnBaseline`: re-run on the warm previous version, so the caller gets its answer
 * while the failure still counts against the promoted version. Only the error path pays.
 */
function retryOn(v: RuntimeVersion, index: number, api: object, thisArg: unknown, args: unknown[]): unknown {
  v.calls += 1;
  v.inflight += 1;
  let result: unknown;
  try {
    result = (v.functions[index] as AnyFunction).apply(thisArg === api ? v.impl : thisArg, args);
  } catch (error) {
    v.leave();
    v.errors += 1;
    throw error;
  }
  if (!isThenable(result)) {
    v.leave();
    return result;
  }
  return Promise.resolve(result).then(
    (value) => {
      v.leave();
      return value;
    },
    (error: unknown) => {
      v.leave();
      v.errors += 1;
      throw error;
    },
  );
}

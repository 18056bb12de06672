import type { IsolateHandle, PayloadType } from '../core/index.js';
import type { VersionRecord } from '../rollback/index.js';

/** Lifecycle hooks a version may have (an esm payload's exports, or the host's declaration). */
export interface VersionHooks {
  selfTest?: () => unknown;
  dispose?: () => unknown;
  exportState?: () => unknown;
  importState?: (state: unknown) => unknown;
}

export interface RuntimeVersionInit {
  version: string;
  patchId: string | null;
  sha256?: string;
  type?: PayloadType;
  /** The object whose methods implement the interface (`this` for calls made through target.api). */
  impl: object;
  /** Functions in the target's interface order. */
  functions: readonly ((...args: unknown[]) => unknown)[];
  hooks: VersionHooks;
  /** The version's worker thread or child process, when its target is isolated. */
  isolate?: IsolateHandle;
}

const LATENCY_RING = 1024;
/** Sampled durations kept for the canary's deadline (the baseline's recent latency), apart from the metrics ring. */
const RECENT_RING = 256;

/**
 * One loaded implementation of a target. Counts its async calls in flight so it is disposed
 * only once drained; sync calls cannot be in flight while a swap runs on the same thread.
 */
export class RuntimeVersion {
  readonly version: string;
  readonly patchId: string | null;
  readonly sha256: string | undefined;
  readonly type: PayloadType | undefined;
  readonly impl: object;
  readonly functions: readonly ((...args: unknown[]) => unknown)[];
  readonly hooks: VersionHooks;
  readonly isolate: IsolateHandle | undefined;
  inflight = 0;
  disposed = false;
  /** Calls and thrown errors since load, for metrics (plain increments: the hot path stays cheap). */
  calls = 0;
  errors = 0;
  /** Told of every error of a steady call while a probation watch runs (only the error path pays). */
  onError: (() => void) | null = null;
  /** While a watched probation runs with `retryOnBaseline`: a failed call is re-run on this (warm previous) version. */
  fallback: RuntimeVersion | null = null;
  /** Durations (seconds) of sampled calls not yet collected by metrics; a bounded ring. */
  readonly #latency = new Float64Array(LATENCY_RING);
  #latencyCount = 0;
  readonly #recent = new Float64Array(RECENT_RING);
  #recentCount = 0;
  #drainWaiters: (() => void)[] = [];

  constructor(init: RuntimeVersionInit) {
    this.version = init.version;
    this.patchId = init.patchId;
    this.sha256 = init.sha256;
    this.type = init.type;
    this.impl = init.impl;
    this.functions = init.functions;
    this.hooks = init.hooks;
    this.isolate = init.isolate;
  }

  /** Records the duration of a sampled call (seconds). */
  addLatency(seconds: number): void {
    this.#recent[this.#recentCount % RECENT_RING] = seconds * 1000;
    this.#recentCount += 1;
    this.#latency[this.#latencyCount % LATENCY_RING] = seconds;
    this.#latencyCount += 1;
  }

  /** The last sampled durations (ms, at most 256), whatever metrics has collected. */
  recentLatencyMs(): Float64Array {
    return this.#recent.slice(0, Math.min(this.#recentCount, RECENT_RING));
  }

  /** Hands the sampled durations gathered since the last drain to `sink` (at most the ring's size). */
  drainLatency(sink: (seconds: number) => void): void {
    const n = Math.min(this.#latencyCount, LATENCY_RING);
    for (let i = 0; i < n; i++) sink(this.#latency[i]!);
    this.#latencyCount = 0;
  }

  get label(): string {
    return this.patchId === null ? `${this.version} (built-in)` : `${this.version} (${this.patchId})`;
  }

  leave(): void {
    this.inflight -= 1;
    if (this.inflight === 0 && this.#drainWaiters.length > 0) {
      const waiters = this.#drainWaiters;
      this.#drainWaiters = [];
      for (const w of waiters) w();
    }
  }

  /** Resolves true once no call is in flight, false if `timeoutMs` passes first. */
  waitDrained(timeoutMs: number): Promise<boolean> {
    if (this.inflight === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#drainWaiters = this.#drainWaiters.filter((w) => w !== done);
        resolve(false);
      }, timeoutMs);
      timer.unref?.();
      const done = (): void => {
        clearTimeout(timer);
        resolve(true);
      };
      this.#drainWaiters.push(done);
    });
  }

  /** What state.json records of this version. */
  record(extra: Partial<VersionRecord> = {}): VersionRecord {
    const r: VersionRecord = { id: this.patchId, version: this.version };
    if (this.sha256 !== undefined) r.sha256 = this.sha256;
    if (this.type !== undefined) r.type = this.type;
    return { ...r, ...extra };
  }
}

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { HotPatchError, describe, type EventBus, type HotPatchEvent } from '../core/index.js';
import type { HotPatchRuntime, RuntimeVersion } from '../zero-downtime/index.js';
import type { AuditLog } from './audit-log.js';

export interface HotPatchMetricsOptions {
  runtime: HotPatchRuntime;
  /** Where events come from (usually `runtime.bus`). */
  bus: EventBus;
  /** A registry to add the metrics to; by default a new one of their own (never the global one). */
  registry?: Registry;
  /** Start of every metric name (default `hotpatch_`): `${prefix}events_total` … */
  prefix?: string;
  /** Also register prom-client's process metrics (CPU, memory, event loop lag) on the registry. */
  defaultMetrics?: boolean;
  /** The audit log whose state `audit_chain_ok` and the audit counters report (the agent's). */
  audit?: AuditLog;
}

/**
 * Call durations are sampled (one steady call per target every `durationProbeMs`, default
 * 100 ms, by the runtime's duration probe; the canary's sampled calls), from about 1 µs to 1 s.
 */
export const CALL_DURATION_BUCKETS: readonly number[] = [
  1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
];

const PREFIX = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

interface CallTotals {
  target: string;
  version: string;
  ok: number;
  errors: number;
}

/**
 * Prometheus metrics of one runtime, on a registry of their own:
 * - `hotpatch_events_total{type,target}` and `hotpatch_rollbacks_total{target}`, counted from the bus;
 * - `hotpatch_active_version_info{target,version}` (1 for each target's active version);
 * - `hotpatch_canary_ratio{target}` (0 without a canary);
 * - `hotpatch_calls_total{target,version,outcome="ok"|"error"}`;
 * - `hotpatch_call_duration_seconds{target,version}`, a histogram of sampled calls;
 * - `hotpatch_isolate_info{target,version,mode,state}` and `hotpatch_isolate_restarts_total{target,version}`
 *   for versions of isolated targets (their worker thread or child process).
 * Nothing runs in the call path: the versions keep plain counters and a ring of sampled
 * durations, and everything is read when the registry is scraped. Call totals are kept per
 * label set by adding each live version's growth since it was last read, so a version that
 * goes away (or a version string that comes back as a new object) never makes a counter go
 * backwards; calls a version took after the last read and before it went away are lost
 * (the totals are also read on every event, when versions are swapped).
 */
export class HotPatchMetrics {
  readonly registry: Registry;
  readonly #runtime: HotPatchRuntime;
  readonly #unsubscribe: () => void;
  readonly #names: string[];
  readonly #totals = new Map<string, CallTotals>();
  /** What each version's counters were when last read. */
  readonly #read = new WeakMap<RuntimeVersion, { ok: number; errors: number }>();
  readonly #events: Counter<'type' | 'target'>;
  readonly #rollbacks: Counter<'target'>;
  readonly #canarySteps: Counter<'target' | 'verdict'>;
  #closed = false;

  constructor(options: HotPatchMetricsOptions) {
    if (typeof options !== 'object' || options === null) throw new HotPatchError('INVALID', `options must be an object, got ${describe(options)}`);
    const { runtime, bus } = options;
    if (typeof runtime !== 'object' || runtime === null || typeof runtime.list !== 'function') {
      throw new HotPatchError('INVALID', `options.runtime must be a HotPatchRuntime, got ${describe(runtime)}`);
    }
    if (typeof bus !== 'object' || bus === null || typeof bus.subscribe !== 'function') {
      throw new HotPatchError('INVALID', `options.bus must be an EventBus, got ${describe(bus)}`);
    }
    const prefix = options.prefix ?? 'hotpatch_';
    if (typeof prefix !== 'string' || !PREFIX.test(prefix)) {
      throw new HotPatchError('INVALID', `options.prefix must match ${PREFIX.source}, got ${describe(prefix)}`);
    }
    this.#runtime = runtime;
    this.registry = options.registry ?? new Registry();
    const registers = [this.registry];
    const self = this;

    this.#events = new Counter({
      name: `${prefix}events_total`,
      help: 'Hot patch events published, by event type and target.',
      labelNames: ['type', 'target'] as const,
      registers,
    });
    this.#rollbacks = new Counter({
      name: `${prefix}rollbacks_total`,
      help: 'RolledBack events, by target.',
      labelNames: ['target'] as const,
      registers,
      collect() {
        // Every declared target shows, at 0 until its first rollback, so rate() has a start.
        for (const t of self.#runtime.list()) this.inc(labels({ target: t.name }), 0);
      },
    });
    this.#canarySteps = new Counter({
      name: `${prefix}canary_steps_total`,
      help: 'Canary looks, by target and verdict (Successful, Failed, Inconclusive): Inconclusive piling up is a canary without enough calls.',
      labelNames: ['target', 'verdict'] as const,
      registers,
    });
    const audit = options.audit;
    if (audit !== undefined) {
      new Gauge({
        name: `${prefix}audit_chain_ok`,
        help: '1 while the audit log verifies as far as the agent knows: its end matched state.json at open, the lines before it chain (read after the start), every append is written; else 0.',
        registers,
        collect() {
          this.set(audit.intact ? 1 : 0);
        },
      });
      new Counter({
        name: `${prefix}audit_failed_appends_total`,
        help: 'Audit appends that failed (each kept and retried in order while the backlog has room).',
        registers,
        collect() {
          this.reset();
          this.inc(audit.failedAppends);
        },
      });
      new Counter({
        name: `${prefix}audit_lost_appends_total`,
        help: 'Audit events lost for good (the backlog was full, or the log closed first).',
        registers,
        collect() {
          this.reset();
          this.inc(audit.lostAppends);
        },
      });
    }
    new Gauge({
      name: `${prefix}active_version_info`,
      help: 'The version each target runs for all calls outside a canary (always 1).',
      labelNames: ['target', 'version'] as const,
      registers,
      collect() {
        this.reset(); // a target's old version must not stay listed
        for (const t of self.#runtime.list()) this.set(labels({ target: t.name, version: t.active.version }), 1);
      },
    });
    new Gauge({
      name: `${prefix}canary_ratio`,
      help: 'Share of calls routed to the canary candidate (0 when no canary runs).',
      labelNames: ['target'] as const,
      registers,
      collect() {
        this.reset();
        for (const t of self.#runtime.list()) this.set(labels({ target: t.name }), t.canary?.ratio ?? 0);
      },
    });
    new Counter({
      name: `${prefix}calls_total`,
      help: 'Calls through a target, by version and outcome (error = the call threw or rejected).',
      labelNames: ['target', 'version', 'outcome'] as const,
      registers,
      collect() {
        self.#readCounters();
        this.reset();
        for (const t of self.#totals.values()) {
          this.inc(labels({ target: t.target, version: t.version, outcome: 'ok' }), t.ok);
          this.inc(labels({ target: t.target, version: t.version, outcome: 'error' }), t.errors);
        }
      },
    });
    new Histogram({
      name: `${prefix}call_duration_seconds`,
      help: 'Duration of sampled calls through a target, by version (one steady call per target every durationProbeMs; canary calls as the canary samples them).',
      labelNames: ['target', 'version'] as const,
      buckets: [...CALL_DURATION_BUCKETS],
      registers,
      collect() {
        for (const t of self.#runtime.list()) {
          for (const v of liveVersions(t)) {
            const versionLabels = labels({ target: t.name, version: v.version });
            v.drainLatency((seconds) => this.observe(versionLabels, seconds));
          }
        }
      },
    });
    new Gauge({
      name: `${prefix}isolate_info`,
      help: "Each live isolated version's worker thread or child process, by mode and state (ready, loading, dead, terminated; always 1).",
      labelNames: ['target', 'version', 'mode', 'state'] as const,
      registers,
      collect() {
        this.reset();
        for (const t of self.#runtime.list()) {
          for (const v of liveVersions(t)) {
            if (v.isolate !== undefined) this.set(labels({ target: t.name, version: v.version, mode: v.isolate.mode, state: v.isolate.state }), 1);
          }
        }
      },
    });
    new Counter({
      name: `${prefix}isolate_restarts_total`,
      help: 'Times a live isolated version was started again after its worker or child died.',
      labelNames: ['target', 'version'] as const,
      registers,
      collect() {
        this.reset();
        for (const t of self.#runtime.list()) {
          for (const v of liveVersions(t)) if (v.isolate !== undefined) this.inc(labels({ target: t.name, version: v.version }), v.isolate.restarts);
        }
      },
    });
    this.#names = [
      'events_total',
      'rollbacks_total',
      'active_version_info',
      'canary_ratio',
      'calls_total',
      'call_duration_seconds',
      'isolate_info',
      'isolate_restarts_total',
      'canary_steps_total',
      ...(audit === undefined ? [] : ['audit_chain_ok', 'audit_failed_appends_total', 'audit_lost_appends_total']),
    ].map((n) => `${prefix}${n}`);
    if (options.defaultMetrics === true) collectDefaultMetrics({ register: this.registry });

    this.#unsubscribe = bus.subscribe((event: HotPatchEvent) => {
      this.#events.inc(labels({ type: event.type, target: event.target }));
      if (event.type === 'RolledBack') this.#rollbacks.inc(labels({ target: event.target }));
      const verdict = (event.detail as { verdict?: unknown } | undefined)?.verdict;
      if (event.type === 'CanaryStep' && typeof verdict === 'string') this.#canarySteps.inc(labels({ target: event.target, verdict }));
      // Versions are swapped around events: read their counters before one goes away.
      this.#readCounters();
    });
  }

  /** The text exposition of every metric of the registry. */
  metrics(): Promise<string> {
    return this.registry.metrics();
  }

  /** The Content-Type to serve `metrics()` with. */
  get contentType(): string {
    return this.registry.contentType;
  }

  /** Stops listening to the bus and removes these metrics from the registry. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#unsubscribe();
    for (const name of this.#names) this.registry.removeSingleMetric(name);
  }

  /** Adds each live version's growth since the last read to its label set's totals. */
  #readCounters(): void {
    for (const t of this.#runtime.list()) {
      for (const v of liveVersions(t)) {
        const last = this.#read.get(v) ?? { ok: 0, errors: 0 };
        // Finished calls only: a call is counted at entry, its error (if any) when it ends.
        const errors = v.errors;
        const ok = Math.max(0, v.calls - errors - Math.max(0, v.inflight));
        const key = `${t.name}\u0000${v.version}`;
        let totals = this.#totals.get(key);
        if (totals === undefined) {
          totals = { target: t.name, version: v.version, ok: 0, errors: 0 };
          this.#totals.set(key, totals);
        }
        // Only growth above the highest figure seen is added: a counter never goes back.
        totals.ok += Math.max(0, ok - last.ok);
        totals.errors += Math.max(0, errors - last.errors);
        this.#read.set(v, { ok: Math.max(ok, last.ok), errors: Math.max(errors, last.errors) });
      }
    }
  }
}

/** The versions a target can still route to: built-in, active, previous, canary sides. */
function liveVersions(t: ReturnType<HotPatchRuntime['list']>[number]): Set<RuntimeVersion> {
  const out = new Set<RuntimeVersion>([t.builtin, t.active]);
  if (t.previous !== undefined) out.add(t.previous);
  const canary = t.canary;
  if (canary !== null) {
    out.add(canary.baseline);
    out.add(canary.candidate);
  }
  return out;
}

/**
 * A label set with no prototype: prom-client walks label sets with `for…in`, so a property a
 * payload added to Object.prototype would otherwise make every increment throw.
 */
function labels<L extends Record<string, string>>(values: L): L {
  return Object.assign(Object.create(null) as L, values);
}

import { HotPatchError, asObject, describe } from '../core/index.js';
import type { ZdtOptions } from '../zero-downtime/index.js';
import { resolveZdtOptions } from '../zero-downtime/index.js';

/**
 * Canary options that can be stored: the plain-data ones. A plan (journal.json) and a fleet
 * rollout document (the shared store) are persisted and must come back identical after a
 * restart, so functions (`routingKey`, `random`) and the per-run `signal` / `runtime` are
 * not part of them.
 */
export type PersistableZdtOptions = Omit<ZdtOptions, 'signal' | 'routingKey' | 'random'>;

/** Persistable canary options held as numbers (each checked again by `resolveZdtOptions`). */
export const PERSISTABLE_ZDT_NUMBERS = [
  'canaryRatio',
  'canaryInterval',
  'backoffFactor',
  'jitterRatio',
  'confidence',
  'maxErrorExcess',
  'maxLatencyShift',
  'minCallsPerStep',
  'minCalls',
  'maxInconclusiveExtensions',
  'maxErrorRate',
  'maxLatencyRatio',
  'minLatencySamples',
  'latencyNoiseFloorMs',
  'warmupCalls',
  'canaryCallTimeoutMs',
  'differentialSampleRate',
  'probationMs',
  'drainTimeoutMs',
  'loadTimeoutMs',
] as const satisfies readonly (keyof PersistableZdtOptions)[];
/** Persistable canary options held as booleans. */
export const PERSISTABLE_ZDT_BOOLEANS = [
  'rollbackOnCancel',
  'returnErrorOnCanaryFail',
  'retryOnBaseline',
  'probationWatch',
] as const satisfies readonly (keyof PersistableZdtOptions)[];
/** Every field a stored `zdt` object may have. */
export const PERSISTABLE_ZDT_FIELDS: readonly string[] = [...PERSISTABLE_ZDT_NUMBERS, ...PERSISTABLE_ZDT_BOOLEANS, 'steps'];

const NUMBERS = new Set<string>(PERSISTABLE_ZDT_NUMBERS);
const BOOLEANS = new Set<string>(PERSISTABLE_ZDT_BOOLEANS);
const FIELDS = new Set<string>(PERSISTABLE_ZDT_FIELDS);
const MAX_STEPS = 100;

/**
 * Strict check of a stored `zdt` object (a plan's, a rollout's): unknown or non-persistable
 * fields, wrong types and values `resolveZdtOptions` refuses (out of range, timers over
 * 2^31 − 1 ms, `maxLatencyShift` together with the older `maxLatencyRatio`…) → INVALID,
 * the message prefixed with `field`. Returns a normalised copy (keys sorted, `undefined`
 * fields dropped), so the same options always serialise to the same JSON.
 */
export function checkPersistableZdt(value: unknown, field: string): PersistableZdtOptions {
  const obj = asObject(value, field);
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(obj).sort()) {
    if (!FIELDS.has(key)) {
      throw new HotPatchError(
        'INVALID',
        `${field} has unknown or non-persistable field ${JSON.stringify(key)} (allowed: ${PERSISTABLE_ZDT_FIELDS.join(', ')})`,
      );
    }
    const v = obj[key];
    if (v === undefined) continue;
    if (BOOLEANS.has(key) && typeof v !== 'boolean') {
      throw new HotPatchError('INVALID', `${field}.${key} must be a boolean, got ${describe(v)}`);
    }
    if (NUMBERS.has(key) && (typeof v !== 'number' || !Number.isFinite(v))) {
      throw new HotPatchError('INVALID', `${field}.${key} must be a finite number, got ${describe(v)}`);
    }
    if (key === 'steps') {
      if (!Array.isArray(v) || v.length === 0 || v.length > MAX_STEPS || v.some((s) => typeof s !== 'number')) {
        throw new HotPatchError('INVALID', `${field}.steps must be a non-empty array of at most ${MAX_STEPS} ratios, got ${describe(v)}`);
      }
      out[key] = [...(v as number[])];
      continue;
    }
    out[key] = v;
  }
  try {
    resolveZdtOptions(out as ZdtOptions);
  } catch (error) {
    if (error instanceof HotPatchError) throw new HotPatchError(error.code, `${field}: ${error.message}`, { cause: error });
    throw error;
  }
  return out as PersistableZdtOptions;
}

/**
 * `base` with `over`'s canary options laid over it, field by field. Setting the latency
 * tolerance one way (`maxLatencyShift`, or the older `maxLatencyRatio`) in `over` also drops
 * the other way from `base`, since giving both is refused.
 */
export function overlayZdtOptions<T extends object>(base: T | undefined, over: PersistableZdtOptions | undefined): T & PersistableZdtOptions {
  const merged: Record<string, unknown> = { ...base, ...over };
  if (over?.maxLatencyShift !== undefined && over.maxLatencyRatio === undefined) delete merged.maxLatencyRatio;
  if (over?.maxLatencyRatio !== undefined && over.maxLatencyShift === undefined) delete merged.maxLatencyShift;
  return merged as T & PersistableZdtOptions;
}

import { HotPatchError } from '../core/index.js';
import { checkPersistableZdt, overlayZdtOptions, type PersistableZdtOptions } from '../orchestration/index.js';
import { resolveZdtOptions, type ZdtOptions } from '../zero-downtime/index.js';
import { UsageError } from './cli-error.js';

/**
 * The canary flags of every command that applies a patch (`hotpatch apply`, `hotpatch fleet
 * rollout`): spread `CANARY_FLAGS` into `parseCommandArgs`, then `canaryOptionsFromFlags`
 * turns what was given into `zdt` options (the persistable canary options of a plan or a
 * rollout). Only the flags given appear; the rest keep `twoPhaseApply`'s defaults.
 */
export const CANARY_FLAGS = {
  steps: { type: 'string' },
  'canary-ratio': { type: 'string' },
  'canary-interval': { type: 'string' },
  confidence: { type: 'string' },
  'max-error-excess': { type: 'string' },
  'max-latency-shift': { type: 'string' },
  'min-calls': { type: 'string' },
  'min-calls-per-step': { type: 'string' },
  'warmup-calls': { type: 'string' },
  'call-timeout': { type: 'string' },
  'load-timeout': { type: 'string' },
  probation: { type: 'string' },
  'no-probation-watch': { type: 'boolean' },
  'retry-on-baseline': { type: 'boolean' },
} as const;

export type CanaryFlag = keyof typeof CANARY_FLAGS;

/** Which canary option each flag sets, and how its value reads. */
const OPTION_OF: Record<CanaryFlag, { option: keyof PersistableZdtOptions; kind: 'number' | 'ratios' | 'true' | 'false' }> = {
  steps: { option: 'steps', kind: 'ratios' },
  'canary-ratio': { option: 'canaryRatio', kind: 'number' },
  'canary-interval': { option: 'canaryInterval', kind: 'number' },
  confidence: { option: 'confidence', kind: 'number' },
  'max-error-excess': { option: 'maxErrorExcess', kind: 'number' },
  'max-latency-shift': { option: 'maxLatencyShift', kind: 'number' },
  'min-calls': { option: 'minCalls', kind: 'number' },
  'min-calls-per-step': { option: 'minCallsPerStep', kind: 'number' },
  'warmup-calls': { option: 'warmupCalls', kind: 'number' },
  'call-timeout': { option: 'canaryCallTimeoutMs', kind: 'number' },
  'load-timeout': { option: 'loadTimeoutMs', kind: 'number' },
  probation: { option: 'probationMs', kind: 'number' },
  'no-probation-watch': { option: 'probationWatch', kind: 'false' },
  'retry-on-baseline': { option: 'retryOnBaseline', kind: 'true' },
};

/** The flag names, as `parseCommandArgs` reports them in its values. */
export const CANARY_FLAG_NAMES: readonly CanaryFlag[] = Object.keys(CANARY_FLAGS) as CanaryFlag[];

/** One usage line's worth of the canary flags. */
export const CANARY_USAGE = `[--steps R,R,…] [--canary-ratio R] [--canary-interval MS] [--confidence C]
[--max-error-excess X] [--max-latency-shift S] [--min-calls N] [--min-calls-per-step N]
[--warmup-calls N] [--call-timeout MS] [--load-timeout MS] [--probation MS] [--no-probation-watch] [--retry-on-baseline]`;

/** What each canary flag means (for a command's --help): at most 100 columns a row. */
export const CANARY_HELP = `Canary flags (each sets one canary option; unset ones keep their defaults):
  --steps R,R,…           candidate share per step, increasing, in (0, 1]     (0.004,0.05,0.25,0.5)
  --canary-ratio R        share of the first step when --steps is not given   (0.004)
  --canary-interval MS    length of the first interval                        (150)
  --confidence C          one-sided confidence of a Failed verdict in (0, 1)  (0.99)
  --max-error-excess X    tolerated error rate above baseline's, in [0, 1]    (0)
  --max-latency-shift S   tolerated slowdown: fails past (1 + S) × baseline   (0.3)
  --min-calls N           candidate calls needed before promotion             (1000)
  --min-calls-per-step N  candidate calls a step needs before it is judged    (200)
  --warmup-calls N        first candidate calls left out of the latency test  (1000)
  --call-timeout MS       deadline of one async candidate call                (from baseline p99)
  --load-timeout MS       import + init() + selfTest() must settle within it  (30000)
  --probation MS          how long a promoted version is watched              (60000)
  --no-probation-watch    do not keep judging during probation
  --retry-on-baseline     re-run a failed candidate call on the baseline (idempotent targets)`;

/** A plain decimal number (no hex, no Infinity, no blanks); its value must be finite. */
const NUMBER = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;

function strictNumber(text: string, flag: string): number {
  if (!NUMBER.test(text)) throw new UsageError(`--${flag} must be a number, got ${JSON.stringify(text)}`);
  const n = Number(text);
  if (!Number.isFinite(n)) throw new UsageError(`--${flag} must be a finite number, got ${JSON.stringify(text)}`);
  return n;
}

function flagOfOption(option: string): string | undefined {
  const found = CANARY_FLAG_NAMES.find((f) => OPTION_OF[f].option === option);
  return found === undefined ? undefined : `--${found}`;
}

/**
 * The canary options the given flags set (an empty object when none is given). Numbers are
 * read strictly (`''`, `abc`, `0x10`, `1e999` → usage error naming the flag), then checked
 * together by `resolveZdtOptions`: a value it refuses is a usage error (exit 2) carrying its
 * message. Nothing is applied before this passes.
 */
export function canaryOptionsFromFlags(values: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const flag of CANARY_FLAG_NAMES) {
    const raw = values[flag];
    if (raw === undefined) continue;
    const { option, kind } = OPTION_OF[flag];
    if (kind === 'true' || kind === 'false') {
      if (raw !== true) throw new UsageError(`--${flag} takes no value`);
      out[option] = kind === 'true';
      continue;
    }
    if (typeof raw !== 'string' || raw.length === 0) throw new UsageError(`--${flag} needs a value`);
    if (kind === 'ratios') {
      const items = raw.split(',').map((item) => item.trim());
      if (items.some((item) => !NUMBER.test(item))) throw new UsageError(`--${flag} must be numbers separated by commas, got ${JSON.stringify(raw)}`);
      out[option] = items.map((item) => strictNumber(item, flag));
    } else {
      out[option] = strictNumber(raw, flag);
    }
  }
  try {
    resolveZdtOptions(out as ZdtOptions);
  } catch (error) {
    if (error instanceof HotPatchError) {
      const option = /^[A-Za-z]+/.exec(error.message)?.[0];
      const flag = option === undefined ? undefined : flagOfOption(option);
      throw new UsageError(flag === undefined ? `canary flags: ${error.message}` : `${flag}: ${error.message}`, 'INVALID', { cause: error });
    }
    throw error;
  }
  return out;
}

/**
 * A stored `zdt` object (a plan file's) with the flags' options laid over it: a flag wins
 * over the file's field, and `--max-latency-shift` also replaces the file's older
 * `maxLatencyRatio` (giving both is refused). The result is checked as a plan's `zdt` is;
 * a refusal is a usage error (exit 2).
 */
export function withCanaryFlags(zdt: unknown, flags: Record<string, unknown>, where: string): PersistableZdtOptions {
  if (zdt !== undefined && (typeof zdt !== 'object' || zdt === null || Array.isArray(zdt))) {
    throw new UsageError(`${where} must be an object of canary options to take canary flags`);
  }
  const merged = overlayZdtOptions(zdt as Record<string, unknown> | undefined, flags as PersistableZdtOptions);
  try {
    return checkPersistableZdt(merged, where);
  } catch (error) {
    if (error instanceof HotPatchError) throw new UsageError(error.message, error.code, { cause: error });
    throw error;
  }
}

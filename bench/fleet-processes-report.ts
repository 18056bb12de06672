/*
 * The fleet-processes benchmark's figures: what the service processes' lines say about one
 * rollout (its order, its apply's stages, its activation), and the rows for run.ts.
 */
import type { JsonLine } from '../test/support/json-lines.js';
import { lineOf, type Host } from './fleet-processes-hosts.js';
import { judge, median, type Row } from './harness.js';

export const NAME = 'fleet-processes';
/** The goal: convergence takes the soak time plus less than this. */
export const OVERHEAD_BUDGET_MS = 2000;
const GOAL = '<= 1';
/** An apply's events after its order, in the order the pipeline publishes them. */
const STAGES = ['Planned', 'Fetched', 'Verified', 'Approved', 'Staged', 'CanaryStarted', 'CanaryStep', 'Promoted', 'Activated'] as const;

export interface Params {
  agents: number;
  rings: number;
  soakMs: number;
  rollouts: number;
  canaryInterval: number;
}

export interface RolloutFigures {
  activatedMs: number;
  completedMs: number;
  /** Per agent: its order (`Requested`) → `Activated`, from its own events' timestamps. */
  applyMs: number[];
  /** Per stage, per agent: ms from its order to the stage's first event. */
  stages: Map<string, number[]>;
  timeline: string;
}

export interface Figures {
  allReadyMs: number;
  readyMs: number[];
  rollouts: RolloutFigures[];
  calls: number;
  failed: number;
}

export const ms = (x: number): string => `${x.toFixed(0)} ms`;
export const span = (xs: readonly number[]): string => `${ms(Math.min(...xs))}–${ms(Math.max(...xs))}`;

export const isActivated =
  (patchId: string) =>
  (l: JsonLine): boolean =>
    l.event === 'hotpatch' && l.type === 'Activated' && l.id === patchId;

export const isOrder =
  (rollout: string) =>
  (l: JsonLine): boolean => {
    const d = l.detail as Record<string, unknown> | undefined;
    return l.event === 'hotpatch' && l.type === 'Requested' && d?.action === 'fleet-apply' && d.rollout === rollout;
  };

/** A host's last event about `patchId` (type and reason), for a timeout's message. */
export function lastEvent(host: Host, patchId: string): string {
  const l = host.lines.filter((x) => x.event === 'hotpatch' && x.id === patchId).pop();
  return l === undefined ? '(none)' : `${String(l.type)}${l.reason === undefined || l.reason === '' ? '' : ` (${String(l.reason).slice(0, 200)})`}`;
}

/** One host's apply of a rollout, from its own events: ms from its order to each stage (Activated included). */
export function applyStages(host: Host, rollout: string, patchId: string): Map<string, number> {
  const order = lineOf(host, isOrder(rollout));
  if (order === undefined) throw new Error(`${host.config.agentId} printed no Requested (fleet-apply) event for ${rollout}`);
  const from = Date.parse(String(order.line.ts));
  const out = new Map<string, number>();
  for (const stage of STAGES) {
    const l = lineOf(host, (x) => x.event === 'hotpatch' && x.type === stage && x.id === patchId);
    if (l !== undefined) out.set(stage, Date.parse(String(l.line.ts)) - from);
  }
  if (!out.has('Activated')) throw new Error(`${host.config.agentId} printed no Activated event for ${patchId}`);
  return out;
}

/** The index of the median value (the lower middle one for an even count). */
function medianIndex(values: readonly number[]): number {
  const order = values.map((v, i) => ({ v, i })).sort((a, b) => a.v - b.v);
  return order[(order.length - 1) >> 1]!.i;
}

export function reportRows(p: Params, f: Figures): Row[] {
  const n = p.agents;
  const soak = p.rings * p.soakMs;
  const completed = f.rollouts.map((r) => r.completedMs);
  const overhead = completed.map((c) => c - soak);
  const activated = f.rollouts.map((r) => r.activatedMs);
  const apply = f.rollouts.flatMap((r) => r.applyMs);
  const rounds = f.rollouts.length;
  const ratio = median(overhead) / OVERHEAD_BUDGET_MS;
  // Stages every apply went through, as the median offset from the order.
  const stages = STAGES.map((s) => ({ s, xs: f.rollouts.flatMap((r) => r.stages.get(s) ?? []) }))
    .filter(({ xs }) => xs.length === apply.length)
    .map(({ s, xs }) => `${s} +${ms(median(xs))}`);
  const base = { benchmark: NAME, unit: 'ms' };
  return [
    {
      ...base,
      case: `${n} agent processes: spawn → every agent registered (ready)`,
      median: f.allReadyMs,
      best: f.allReadyMs,
      rounds: 1,
      status: 'info',
      note: `all ${n} spawned at once; per process (node start, imports, runtime, agent, registration) median ${ms(median(f.readyMs))}, ${span(f.readyMs)}`,
    },
    {
      ...base,
      case: `${n} agents: createRollout → every agent Activated`,
      median: median(activated),
      best: Math.min(...activated),
      rounds,
      status: 'info',
      note: `the rollout of median overhead: ${f.rollouts[medianIndex(overhead)]!.timeline}`,
    },
    {
      ...base,
      case: `${n} agents: createRollout → completed (${p.rings} rings, soak ${p.soakMs} ms)`,
      median: median(completed),
      best: Math.min(...completed),
      rounds,
      ratio: median(completed) / soak,
      baseline: `${p.rings} × soak = ${soak} ms`,
      status: 'info',
    },
    {
      ...base,
      case: `${n} agents: fleet overhead (completed − ${p.rings} × soak)`,
      median: median(overhead),
      best: Math.min(...overhead),
      rounds,
      ratio,
      baseline: `${OVERHEAD_BUDGET_MS} ms`,
      goal: GOAL,
      status: judge(ratio, GOAL),
      note: `goal: convergence = soak time + < ${OVERHEAD_BUDGET_MS / 1000} s; per rollout ${overhead.map(ms).join(', ')}; calls the processes served meanwhile ${f.calls}, failed ${f.failed}`,
    },
    {
      ...base,
      case: `per agent: fleet-apply Requested → Activated (its own events)`,
      median: median(apply),
      best: Math.min(...apply),
      rounds: apply.length,
      status: 'info',
      note:
        `${apply.length} applies (${n} agents × ${rounds} rollouts), slowest ${ms(Math.max(...apply))}; canary steps [1], interval ${p.canaryInterval} ms, ` +
        `probation 0; median from the order: ${stages.join(', ')}`,
    },
  ];
}

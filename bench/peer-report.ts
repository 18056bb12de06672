/*
 * The peer-reload benchmark's report: one line per round while it runs (and, for --steps 1, the
 * service's event timeline), then the rows: per way, the median over rounds and the best round
 * of time to new code serving, failed requests, the session counter kept and throughput, with
 * `pm2 reload` of the draining app as the baseline.
 */
import { judge, median, type Row } from './harness.js';
import { HP1, HPD, PM2, PM2C, type HotpatchWay, type Pm2Way, type Round, type Way } from './peer-round.js';

const NAME = 'peer-reload';
/** hotpatch --steps 1 serves the new code at least this many times sooner than pm2 reload. */
const GOAL = '>= 100';

const ms = (x: number): string => (x >= 100 ? x.toFixed(0) : x.toFixed(1));
const int = (x: number): string => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : 'none');
/** Median and best (lowest) of what there is; NaN when nothing (every round refused). */
const med = (values: number[]): number => (values.length === 0 ? Number.NaN : median(values));
const lowest = (values: number[]): number => (values.length === 0 ? Number.NaN : Math.min(...values));

function counterText(r: Round): string {
  if (r.kept === undefined) return `no v2 answer (counter ${int(r.counterBefore)} before)`;
  return `counter ${r.kept ? 'kept' : 'RESET'} (lowest v2 counter ${int(r.lowestNewCounter)}, ${int(r.counterBefore)} just before)`;
}

/** One round on one line, printed as the run goes (times from the agent's receipt for hotpatch, from `pm2 reload` for pm2). */
export function describe(r: Round): string {
  const t0 = r.agentAt ?? r.startAt;
  const e = r.wrk.errors;
  const errors =
    r.failed === 0 ? '0 failed' : `${r.failed} failed (connect ${e.connect}, read ${e.read}, write ${e.write}, non-2xx ${e.status}, timeout ${e.timeout})`;
  const serving =
    r.refused !== undefined
      ? `REFUSED, v1 kept serving (${r.refused}); ${r.wrk.new} v2 answers before that`
      : `every answer v2 ${ms(r.allNewAt - t0)} ms ${r.agentAt === undefined ? 'after `pm2 reload` started' : `after the agent got the request (${ms(r.allNewAt - r.startAt)} ms after CLI start)`}; ` +
        `first v2 answer +${ms(r.firstNewAt - t0)} ms`;
  return (
    `${serving}; command ${ms(r.endAt - r.startAt)} ms; ${errors}; ${counterText(r)}; ` +
    `${int(r.throughput)} req/s (${int(r.swapThroughput)} during the swap); p99 ${ms(r.wrk.p99Us / 1000)} ms` +
    (r.probeFailures > 0 ? `; probe: ${r.probeFailures} failed` : '')
  );
}

/** The service's events, as ms from the agent receiving the request. */
export function eventLine(r: Round): string {
  const t0 = r.agentAt!;
  const parts = [`CLI start ${ms(r.startAt - t0)}`];
  for (const [type, e] of r.events) {
    if (type === 'Requested') parts.push(`Requested recorded +${ms(e.at - t0)}`);
    else parts.push(`${type} +${ms(e.at - t0)}${type === 'CanaryStep' ? ` (${String(e.detail.verdict)}, ${String(e.detail.calls)} calls)` : ''}`);
  }
  if (r.firstNewAt > 0) parts.push(`first v2 answer +${ms(r.firstNewAt - t0)}`);
  parts.push(`CLI exit +${ms(r.endAt - t0)}`);
  return `    ms from the agent getting the request: ${parts.join(', ')}`;
}

/** "; refused in 1 of 3 rounds (first: …)" when some were. */
function refusals(rounds: Round[]): string {
  const refused = rounds.filter((r) => r.refused !== undefined);
  return refused.length === 0 ? '' : `; REFUSED in ${refused.length} of ${rounds.length} rounds, left out of the times (first: ${refused[0]!.refused})`;
}

function timeRows(rounds: Round[], way: HotpatchWay, pm2Median: number): Row[] {
  const mine = rounds.filter((r) => r.way === way);
  const served = mine.filter((r) => r.refused === undefined);
  const fromAgent = served.map((r) => r.allNewAt - r.agentAt!);
  const fromCli = served.map((r) => r.allNewAt - r.startAt);
  const m = med(fromAgent);
  const goal = way === HP1 ? GOAL : undefined;
  return [
    {
      benchmark: NAME,
      case: `${way}: new code serving, from the agent receiving the request`,
      unit: 'ms',
      median: m,
      best: lowest(fromAgent),
      rounds: served.length,
      ratio: pm2Median / m,
      baseline: PM2,
      ...(goal === undefined ? {} : { goal }),
      status: goal === undefined ? 'info' : judge(pm2Median / m, goal),
      note: `until every answer is v2; first v2 answer after ${ms(med(served.map((r) => r.firstNewAt - r.agentAt!)))} ms; ratio = ${PM2} time ÷ this${refusals(mine)}`,
    },
    {
      benchmark: NAME,
      case: `${way}: new code serving, from CLI start`,
      unit: 'ms',
      median: med(fromCli),
      best: lowest(fromCli),
      rounds: served.length,
      ratio: pm2Median / med(fromCli),
      baseline: PM2,
      status: 'info',
      note: `CLI start → agent receipt ${ms(med(mine.map((r) => r.agentAt! - r.startAt)))} ms; the CLI exits ${ms(med(served.map((r) => r.endAt - r.startAt)))} ms after its start (after promotion)`,
    },
  ];
}

function pm2TimeRow(rounds: Round[], way: Pm2Way, pm2Median: number): Row {
  const mine = rounds.filter((r) => r.way === way);
  const time = mine.map((r) => r.allNewAt - r.startAt);
  return {
    benchmark: NAME,
    case: `${way}: new code serving, from \`pm2 reload\` start`,
    unit: 'ms',
    median: med(time),
    best: lowest(time),
    rounds: mine.length,
    ...(way === PM2 ? { status: 'baseline' as const } : { ratio: med(time) / pm2Median, baseline: PM2, status: 'info' as const }),
    note: `until every answer is v2; first v2 answer after ${ms(med(mine.map((r) => r.firstNewAt - r.startAt)))} ms; pm2 reload exits after ${ms(med(mine.map((r) => r.endAt - r.startAt)))} ms`,
  };
}

function outcomeRows(rounds: Round[], way: Way, pm2Throughput: number): Row[] {
  const mine = rounds.filter((r) => r.way === way);
  const hot = way === HP1 || way === HPD;
  const failed = mine.map((r) => r.failed);
  const worst = Math.max(...failed);
  const judged = mine.filter((r) => r.kept !== undefined);
  const kept = judged.filter((r) => r.kept === true).length;
  const throughput = mine.map((r) => r.throughput);
  const e = mine.find((r) => r.failed === worst)!.wrk.errors;
  return [
    {
      benchmark: NAME,
      case: `${way}: failed requests`,
      unit: 'requests',
      median: median(failed),
      best: Math.min(...failed),
      rounds: mine.length,
      ...(hot ? { ratio: worst, baseline: 'failed (worst round)', goal: '<= 0', status: judge(worst, '<= 0') } : { status: 'info' as const }),
      note: `of ${int(median(mine.map((r) => r.wrk.requests)))} per run; worst round: connect ${e.connect}, read ${e.read}, write ${e.write}, non-2xx ${e.status}, timeout ${e.timeout}`,
    },
    {
      benchmark: NAME,
      case: `${way}: session counter kept`,
      unit: 'rounds',
      median: kept,
      best: kept,
      rounds: judged.length,
      ...(hot ? { ratio: kept / judged.length, baseline: 'rounds', goal: '>= 1', status: judge(kept / judged.length, '>= 1') } : { status: 'info' as const }),
      note: mine.map(counterText).join('; '),
    },
    {
      benchmark: NAME,
      case: `${way}: throughput`,
      unit: 'req/s',
      median: median(throughput),
      best: Math.max(...throughput),
      rounds: mine.length,
      ...(way === PM2 ? { status: 'baseline' as const } : { ratio: median(throughput) / pm2Throughput, baseline: PM2, status: 'info' as const }),
      note: `whole run (${ms(median(mine.map((r) => r.wrk.durationUs / 1e6)))} s); during the swap ${int(median(mine.map((r) => r.swapThroughput)))} req/s`,
    },
  ];
}

function breakdownRows(rounds: Round[]): Row[] {
  const mine = rounds.filter((r) => r.way === HP1 && r.refused === undefined);
  const at = (r: Round, type: string): number => r.events.get(type)?.at ?? Number.NaN;
  const spans: [string, (r: Round) => number][] = [
    ['CLI start → agent receives the request', (r) => r.agentAt! - r.startAt],
    ['agent receipt → canary started (v2 serving)', (r) => at(r, 'CanaryStarted') - r.agentAt!],
    ['canary started → promoted', (r) => at(r, 'Promoted') - at(r, 'CanaryStarted')],
    ['promoted → CLI exit', (r) => r.endAt - at(r, 'Promoted')],
  ];
  return spans.map(([what, f]) => {
    const values = mine.map(f);
    return { benchmark: NAME, case: `${HP1}: ${what}`, unit: 'ms', median: med(values), best: lowest(values), rounds: mine.length, status: 'info' as const };
  });
}

/** Every row, in the order they are reported: times, then outcomes, per way; then where --steps 1's time goes. */
export function reportRows(rounds: Round[]): Row[] {
  const pm2Median = median(rounds.filter((r) => r.way === PM2).map((r) => r.allNewAt - r.startAt));
  const pm2Throughput = median(rounds.filter((r) => r.way === PM2).map((r) => r.throughput));
  return [
    ...timeRows(rounds, HP1, pm2Median),
    ...timeRows(rounds, HPD, pm2Median),
    pm2TimeRow(rounds, PM2, pm2Median),
    pm2TimeRow(rounds, PM2C, pm2Median),
    ...outcomeRows(rounds, HP1, pm2Throughput),
    ...outcomeRows(rounds, HPD, pm2Throughput),
    ...outcomeRows(rounds, PM2, pm2Throughput),
    ...outcomeRows(rounds, PM2C, pm2Throughput),
    ...breakdownRows(rounds),
  ];
}

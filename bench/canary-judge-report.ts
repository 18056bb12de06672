/*
 * canary-judge, part 4: the figures. Per kind and in total, split quiet / noisy:
 *   runs; caught % (faulty: rolled back, in the canary or by the probation watch) or wrongly
 *   rolled back % (good); median and max exposure (candidate calls / calls issued from
 *   CanaryStarted to the verdict event); client-visible failures (calls that threw or
 *   rejected, wrong answers, async calls unsettled 2 s after the verdict, over the whole run);
 *   median time to verdict (CanaryStarted → Promoted, or → RolledBack).
 * Then every misjudged run with the judge's reason, and the rows for run.ts with the goals.
 */
import { judge, median, type Row } from './harness.js';
import { KINDS } from './canary-judge-patches.js';
import type { RunResult } from './canary-judge-trial.js';

const NAME = 'canary-judge';

interface Group {
  label: string;
  runs: RunResult[];
}

const pct = (x: number, digits = 1): string => `${(x * 100).toFixed(digits)}%`;
const isRight = (r: RunResult): boolean => (r.plan.good ? r.verdict === 'promoted' : r.verdict === 'rolled back');
/** Share of runs rolled back: "caught" for faulty patches, "wrongly rolled back" for good ones. */
const rolledBackShare = (runs: readonly RunResult[]): number => (runs.length === 0 ? 0 : runs.filter((r) => r.verdict === 'rolled back').length / runs.length);
const failuresOf = (runs: readonly RunResult[]): number => runs.reduce((n, r) => n + r.failures, 0);

function cells(g: Group): string[] {
  const runs = g.runs;
  if (runs.length === 0) return [g.label, '0', '', '', '', '', '', '', '', ''];
  const good = runs.every((r) => r.plan.good);
  const faulty = runs.every((r) => !r.plan.good);
  const rb = runs.filter((r) => r.verdict === 'rolled back').length;
  const share = (rs: RunResult[]): string => (rs.length === 0 ? '-' : `${rs.filter((r) => r.verdict === 'rolled back').length}/${rs.length}`);
  const exposures = runs.map((r) => r.exposure);
  return [
    g.label,
    String(runs.length),
    good ? `wrong RB ${pct(rb / runs.length)}` : faulty ? `caught ${pct(rb / runs.length)}` : `rolled back ${pct(rb / runs.length)}`,
    share(runs.filter((r) => !r.plan.noisy)),
    share(runs.filter((r) => r.plan.noisy)),
    pct(median(exposures), 2),
    pct(Math.max(...exposures), 2),
    pct(median(runs.map((r) => r.candidateShare)), 2),
    String(failuresOf(runs)),
    median(runs.map((r) => r.ttvMs)).toFixed(0),
  ];
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const fmt = (r: string[]): string => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [fmt(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(fmt)].join('\n');
}

export function printReport(results: readonly RunResult[]): void {
  const header = ['kind', 'runs', 'verdict', 'RB quiet', 'RB noisy', 'exp med', 'exp max', 'cand med', 'client fails', 'ttv med ms'];
  const byKind: Group[] = KINDS.map((k) => ({ label: `${k.good ? 'good' : 'faulty'} ${k.kind}`, runs: results.filter((r) => r.plan.kind === k.kind) })).filter(
    (g) => g.runs.length > 0,
  );
  const good = results.filter((r) => r.plan.good);
  const faulty = results.filter((r) => !r.plan.good);
  const totals: Group[] = [
    { label: 'ALL good', runs: good },
    { label: '  good, quiet', runs: good.filter((r) => !r.plan.noisy) },
    { label: '  good, noisy', runs: good.filter((r) => r.plan.noisy) },
    { label: 'ALL faulty', runs: faulty },
    { label: '  faulty, quiet', runs: faulty.filter((r) => !r.plan.noisy) },
    { label: '  faulty, noisy', runs: faulty.filter((r) => r.plan.noisy) },
  ].filter((g) => g.runs.length > 0);
  console.log(table(header, [...byKind.map(cells), ...totals.map(cells)]));
  console.log(
    "(RB = rolled back; exp = exposure: calls answered by the candidate (its executions less shadow calls, whose caller got the baseline's answer) / calls issued from CanaryStarted to the verdict; cand = candidate executions incl. shadow calls / calls issued; ttv = time to verdict)",
  );

  const byTarget = [...new Set(results.map((r) => r.plan.target))].map((t) => {
    const rs = results.filter((r) => r.plan.target === t);
    return `${t}: ${rs.filter(isRight).length}/${rs.length} right`;
  });
  console.log(`per target: ${byTarget.join('; ')}`);
  const fa = results.filter((r) => r.plan.kind === 'fails-after-N');
  if (fa.length > 0) {
    const phase = (p: RunResult['faultStarted']): string => {
      const rs = fa.filter((r) => r.faultStarted === p);
      return `${p}: ${rs.length} (caught ${rs.filter((r) => r.verdict === 'rolled back').length})`;
    };
    console.log(`fails-after-N, where the failure started: ${phase('canary')}; ${phase('after promotion')}; ${phase('never')}`);
  }

  const misjudged = results.filter((r) => !isRight(r));
  console.log(`\nmisjudged runs: ${misjudged.length}`);
  for (const r of misjudged) console.log(`  ${describeRun(r)}\n      reason: ${r.reason}`);
  const failing = results.filter((r) => r.failures > 0);
  console.log(`\nruns with client-visible failures: ${failing.length}`);
  for (const r of failing) {
    const l = r.load;
    const u = r.unsettledIssuedMs;
    const when = u.length === 0 ? '' : `; the unsettled calls were issued ${Math.min(...u).toFixed(0)}..${Math.max(...u).toFixed(0)} ms after CanaryStarted`;
    console.log(
      `  ${describeRun(r)}\n      ${r.failures} of ${l.issued} calls (threw ${l.threw}, wrong ${l.wrong}, unsettled ${l.unsettled}; ${r.failuresAfterPromotion} after Promoted${when}): ${l.firstFailure ?? ''}`,
    );
  }
}

function describeRun(r: RunResult): string {
  const p = r.plan;
  const fired =
    p.kind === 'fails-after-N' ? ` (N=${p.failAfter}, candidate calls in the run ${r.candidateCalls}: failure started ${r.faultStarted ?? '?'})` : '';
  return (
    `#${p.index} ${p.kind} on ${p.target}, ${p.noisy ? 'noisy' : 'quiet'}: ${r.verdict}${r.rolledBackIn === undefined ? '' : ` in ${r.rolledBackIn}`} ` +
    `after ${r.ttvMs.toFixed(0)} ms, exposure ${pct(r.exposure, 2)} (${r.candidateInWindow}/${r.issuedInWindow})${fired}`
  );
}

function goalRow(caseName: string, value: number, runs: number, goal: string, unit: string, baseline: string, note: string): Row {
  return {
    benchmark: NAME,
    case: caseName,
    unit,
    median: value * 100,
    best: value * 100,
    rounds: runs,
    ratio: value,
    baseline,
    goal,
    status: judge(value, goal),
    note,
  };
}

/** Rows for run.ts: the goals, then one informational row per kind. */
export function reportRows(results: readonly RunResult[]): Row[] {
  const rows: Row[] = [];
  for (const noisy of [false, true]) {
    const side = noisy ? 'noisy' : 'quiet';
    const faulty = results.filter((r) => !r.plan.good && r.plan.noisy === noisy);
    const good = results.filter((r) => r.plan.good && r.plan.noisy === noisy);
    if (faulty.length > 0) {
      const caught = rolledBackShare(faulty);
      rows.push(
        goalRow(
          `faulty patches caught (${side})`,
          caught,
          faulty.length,
          '>= 0.99',
          '%',
          'share of faulty runs',
          `${faulty.filter((r) => r.verdict === 'rolled back').length} of ${faulty.length} rolled back`,
        ),
      );
    }
    if (good.length > 0) {
      const wrong = rolledBackShare(good);
      rows.push(
        goalRow(
          `good patches wrongly rolled back (${side})`,
          wrong,
          good.length,
          '<= 0.01',
          '%',
          'share of good runs',
          `${good.filter((r) => r.verdict === 'rolled back').length} of ${good.length} rolled back`,
        ),
      );
    }
  }
  const faulty = results.filter((r) => !r.plan.good);
  if (faulty.length > 0) {
    const exp = median(faulty.map((r) => r.exposure));
    rows.push(
      goalRow(
        'faulty patches: median exposure',
        exp,
        faulty.length,
        '<= 0.005',
        '%',
        'share of calls issued',
        `max ${pct(Math.max(...faulty.map((r) => r.exposure)), 2)}; good patches: median ${results.some((r) => r.plan.good) ? pct(median(results.filter((r) => r.plan.good).map((r) => r.exposure)), 2) : '-'} (they are meant to reach every step)`,
      ),
    );
  }
  const issued = results.reduce((n, r) => n + r.load.issued, 0);
  const fails = failuresOf(results);
  rows.push({
    benchmark: NAME,
    case: 'client-visible failures, all runs',
    unit: 'calls',
    median: fails,
    best: fails,
    rounds: results.length,
    // The ratio column holds the count itself: the goal is none at all.
    ratio: fails,
    baseline: `failed calls (of ${issued} issued)`,
    goal: '<= 0',
    status: judge(fails, '<= 0'),
    note: `${fails} of ${issued} calls (threw ${results.reduce((n, r) => n + r.load.threw, 0)}, wrong ${results.reduce((n, r) => n + r.load.wrong, 0)}, unsettled ${results.reduce((n, r) => n + r.load.unsettled, 0)}) in ${results.filter((r) => r.failures > 0).length} runs`,
  });
  for (const k of KINDS) {
    const rs = results.filter((r) => r.plan.kind === k.kind);
    if (rs.length === 0) continue;
    const share = rolledBackShare(rs);
    rows.push({
      benchmark: NAME,
      case: `${k.kind}: ${k.good ? 'wrongly rolled back' : 'caught'}`,
      unit: '%',
      median: share * 100,
      best: share * 100,
      rounds: rs.length,
      status: 'info',
      note: `exposure median ${pct(median(rs.map((r) => r.exposure)), 2)}, max ${pct(Math.max(...rs.map((r) => r.exposure)), 2)}; client-visible failures ${failuresOf(rs)}; time to verdict median ${median(rs.map((r) => r.ttvMs)).toFixed(0)} ms`,
    });
  }
  return rows;
}

/**
 * The operator's line for one `CanaryStep` event, from its `detail` (the judge's figures):
 *
 *   canary step 2/4 at 5.0%: Successful (no-regression) — 812 calls, 0 errors (baseline 0.00% of 15,400), p=1; latency ×1.04 p=0.62 (mann-whitney, 600 samples)
 *
 * Pure, and tolerant: every figure may be missing or of the wrong type (an older agent, other
 * figures), and such a figure is left out rather than shown as `undefined` or `NaN`. Strings
 * come from the agent: control characters are replaced, so an event cannot drive the terminal.
 */
export function formatCanaryStep(detail: Readonly<Record<string, unknown>> | undefined): string {
  const d = detail ?? {};
  const step = int(d.step);
  const of = int(d.of);
  const ratio = num(d.ratio);
  let line = 'canary step';
  if (step !== undefined) line += ` ${step}${of === undefined ? '' : `/${of}`}`;
  if (ratio !== undefined) line += ` at ${percent(ratio, 1)}`;
  line += `: ${word(d.verdict) ?? 'no verdict'}`;

  const rule = word(d.rule);
  const intervals = int(d.intervals);
  const why = [rule, intervals !== undefined && intervals > 1 ? `${count(intervals)} intervals` : undefined].filter(present);
  if (why.length > 0) line += ` (${why.join(', ')})`;

  const calls = callsPart(d);
  if (calls !== '') line += ` — ${calls}`;
  const latency = latencyPart(d);
  if (latency !== '') line += `${calls === '' ? ' — ' : '; '}${latency}`;
  const samples = num(d.differentialSamples);
  const mismatches = num(d.differentialMismatches);
  if (mismatches !== undefined && mismatches > 0) {
    line += `; ${samples === undefined ? plural(mismatches, 'compared output') : `${count(mismatches)} of ${plural(samples, 'compared output')}`} differed`;
  }
  return line;
}

/** `812 calls, 0 errors (baseline 0.00% of 15,400), p=1` — whichever of these figures exist. */
function callsPart(d: Readonly<Record<string, unknown>>): string {
  const calls = num(d.candidateCalls);
  const errors = num(d.candidateErrors);
  const timeouts = num(d.timeouts);
  const parts: string[] = [];
  if (calls !== undefined) parts.push(plural(calls, 'call'));
  if (errors !== undefined) {
    const rate = num(d.errorRate) ?? (calls !== undefined && calls > 0 ? errors / calls : undefined);
    parts.push(`${plural(errors, 'error')}${errors > 0 && rate !== undefined ? ` = ${percent(rate, 2)}` : ''}`);
  }
  if (timeouts !== undefined && timeouts > 0) parts.push(`${count(timeouts)} timed out`);
  let text = parts.join(', ');

  const baselineCalls = num(d.baselineCalls);
  const baselineErrors = num(d.baselineErrors);
  const baselineRate =
    num(d.baselineErrorRate) ?? (baselineCalls !== undefined && baselineCalls > 0 && baselineErrors !== undefined ? baselineErrors / baselineCalls : undefined);
  let baseline: string | undefined;
  if (baselineRate !== undefined) baseline = `baseline ${percent(baselineRate, 2)}${baselineCalls === undefined ? '' : ` of ${count(baselineCalls)}`}`;
  else if (baselineCalls !== undefined) baseline = `baseline ${plural(baselineCalls, 'call')}`;
  if (baseline !== undefined) text += text === '' ? baseline : ` (${baseline})`;

  const p = num(d.errorP);
  if (p !== undefined) text += `${text === '' ? '' : ', '}p=${pValue(p)}`;
  return text;
}

/** `latency ×1.04 p=0.62 (mann-whitney, 600 samples)`, `latency not judged (12 samples)`, or an older agent's p99s. */
function latencyPart(d: Readonly<Record<string, unknown>>): string {
  const test = word(d.latencyTest);
  const samples = num(d.latencySamples);
  const sampleText = samples === undefined ? undefined : plural(samples, 'sample');
  if (test === 'none') return `latency not judged${sampleText === undefined ? '' : ` (${sampleText})`}`;
  const ratio = num(d.latencyRatio);
  const p = num(d.latencyP);
  // Older agents: the percentile compared and both sides' values.
  const percentile = num(d.latencyPercentile);
  const candidateMs = num(d.candidateP99Ms);
  const baselineMs = num(d.baselineP99Ms);
  const older =
    candidateMs !== undefined && baselineMs !== undefined
      ? `p${percentile === undefined ? 99 : count(percentile)} ${ms(candidateMs)} vs ${ms(baselineMs)} ms`
      : undefined;
  if (ratio === undefined && p === undefined && test === undefined && older === undefined) return '';
  let text = 'latency';
  if (ratio !== undefined) text += ` ×${ratio.toFixed(2)}`;
  if (p !== undefined) text += ` p=${pValue(p)}`;
  const notes = [test, sampleText, older].filter(present);
  if (notes.length > 0) text += ` (${notes.join(', ')})`;
  return text;
}

function present<T>(x: T | undefined): x is T {
  return x !== undefined;
}
function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}
function int(v: unknown): number | undefined {
  const n = num(v);
  return n !== undefined && Number.isSafeInteger(n) ? n : undefined;
}
/** A short printable string, or undefined. */
function word(v: unknown): string | undefined {
  if (typeof v !== 'string' || v.length === 0) return undefined;
  return v.slice(0, 64).replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, '?');
}
/** 15400 → `15,400` (the same on every locale). */
function count(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}
function plural(n: number, noun: string): string {
  return `${count(n)} ${noun}${Math.round(n) === 1 ? '' : 's'}`;
}
function percent(ratio: number, digits: number): string {
  return `${(ratio * 100).toFixed(digits)}%`;
}
function ms(value: number): string {
  return value >= 10 ? value.toFixed(0) : value.toPrecision(2);
}
/** Two significant digits; tiny values in exponent form (`p=3.2e-5`). */
export function pValue(p: number): string {
  if (p <= 0) return '0';
  if (p >= 0.001) return String(Number(p.toPrecision(2)));
  return p.toExponential(1);
}

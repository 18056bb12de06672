import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { CanaryEvidence, judge, lookAlpha, resolveZdtOptions, tripAlpha, type JudgeOptions } from '../../src/zero-downtime/index.js';
import { overwhelmingErrors } from '../../src/zero-downtime/canary-judge.js';
import { seeded } from './fixtures.js';

const DEFAULTS: JudgeOptions = resolveZdtOptions();

/** Evidence from counts alone: one step at `ratio`. */
function counts(ratio: number, c: { calls: number; errors: number }, b: { calls: number; errors: number }): CanaryEvidence {
  const ev = new CanaryEvidence(ratio);
  addCounts(ev, c, b);
  return ev;
}

function addCounts(ev: CanaryEvidence, c: { calls: number; errors: number }, b: { calls: number; errors: number }): void {
  for (let i = 0; i < c.calls; i++) ev.candidateCall();
  for (let i = 0; i < c.errors; i++) ev.candidateError();
  for (let i = 0; i < b.calls; i++) ev.baselineCall();
  for (let i = 0; i < b.errors; i++) ev.baselineError();
}

/** Log-normal latencies (ms) around `medianMs`, from a seeded source. */
function lognormal(random: () => number, medianMs: number, sigma = 0.3): number {
  const u = Math.max(random(), 1e-12);
  const v = random();
  return medianMs * Math.exp(sigma * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v));
}

test('lookAlpha spends at most half of 1 − confidence per test over any number of looks', () => {
  let spent = 0;
  for (let k = 1; k <= 100_000; k++) spent += lookAlpha(0.99, k);
  assert.ok(spent <= 0.005 + 1e-12, `spent ${spent}`);
  assert.ok(spent > 0.0049, `spent ${spent}`);
  assert.ok(tripAlpha(0.99) < lookAlpha(0.99, 20));
});

test('a 0.1 % error candidate against a baseline with no errors fails once the data can show it', () => {
  const few = judge(counts(0.005, { calls: 1000, errors: 1 }, { calls: 199_000, errors: 0 }), 1, false, DEFAULTS);
  // One error in 1,000 calls at a 0.5 % share: p = 0.005, not below the first look's level.
  assert.equal(few.verdict, 'Successful');
  assert.ok(Math.abs(few.figures.errorP - 0.005) < 1e-4, String(few.figures.errorP));
  const enough = judge(counts(0.005, { calls: 5000, errors: 5 }, { calls: 995_000, errors: 0 }), 2, false, DEFAULTS);
  assert.equal(enough.verdict, 'Failed');
  assert.equal(enough.figures.rule, 'error-excess');
  assert.equal(enough.figures.errorTest, 'fisher-exact');
  assert.match(enough.reason, /candidate failed 5 of 5,000 calls \(0\.10%\) against the baseline's 0 of 995,000 \(0\.00%\): Fisher exact one-sided p=\S+ < α=/);
});

test('a baseline that itself fails 2 % does not fail a candidate failing 2 %', () => {
  const v = judge(counts(0.25, { calls: 25_000, errors: 500 }, { calls: 75_000, errors: 1500 }), 1, false, DEFAULTS);
  assert.notEqual(v.verdict, 'Failed');
  assert.ok(v.figures.errorP > 0.3, String(v.figures.errorP));
  assert.equal(v.figures.baselineErrorRate, 0.02);
});

test('a tolerated error excess lets a slightly worse candidate through and still fails a much worse one', () => {
  const opts = { ...DEFAULTS, maxErrorExcess: 0.005 };
  const slightly = judge(counts(0.5, { calls: 20_000, errors: 100 }, { calls: 20_000, errors: 40 }), 1, false, opts);
  assert.notEqual(slightly.verdict, 'Failed');
  assert.equal(slightly.figures.errorTest, 'binomial-vs-baseline-bound');
  const much = judge(counts(0.5, { calls: 20_000, errors: 400 }, { calls: 20_000, errors: 40 }), 1, false, opts);
  assert.equal(much.verdict, 'Failed');
  assert.equal(much.figures.rule, 'error-excess');
});

test('errors are stratified by step: a background burst during the 50 % step does not fail a good candidate', () => {
  const ev = new CanaryEvidence(0.05);
  addCounts(ev, { calls: 5_000, errors: 0 }, { calls: 95_000, errors: 0 });
  ev.newStep(0.5);
  // Both versions fail 5 % of calls during this step (bad inputs arrived): same rate, same moment.
  addCounts(ev, { calls: 50_000, errors: 2500 }, { calls: 50_000, errors: 2500 });
  // Pooled, the candidate would show 2,500 of 55,000 (4.5 %) against 2,500 of 145,000 (1.7 %).
  const v = judge(ev, 2, true, { ...DEFAULTS, minCalls: 0, minLatencySamples: 1 });
  assert.equal(v.figures.errorTest, 'fisher-exact');
  assert.ok(v.figures.errorP > 0.3, `stratified p ${v.figures.errorP}`);
  assert.notEqual(v.verdict, 'Failed');
  // With errors in several steps the exact stratified test combines them.
  addCounts(ev, { calls: 0, errors: 0 }, { calls: 0, errors: 0 });
  ev.newStep(0.75);
  addCounts(ev, { calls: 7_500, errors: 10 }, { calls: 2_500, errors: 3 });
  const w = judge(ev, 3, true, { ...DEFAULTS, minCalls: 0, minLatencySamples: 1 });
  assert.equal(w.figures.errorTest, 'fisher-exact-stratified');
  assert.ok(w.figures.errorP > 0.2, `stratified p ${w.figures.errorP}`);
  assert.notEqual(w.verdict, 'Failed');
});

test('any output mismatch of a deterministic target fails, naming the count', () => {
  const ev = counts(0.05, { calls: 400, errors: 0 }, { calls: 8000, errors: 0 });
  ev.differentialSamples = 400;
  ev.differentialMismatches = 1;
  const v = judge(ev, 1, false, DEFAULTS);
  assert.equal(v.verdict, 'Failed');
  assert.equal(v.figures.rule, 'output-mismatch');
  assert.match(v.reason, /differed from the baseline in 1 of 400 compared calls/);
});

test('paired latency: 1.5× slower fails, 1.2× slower passes, with the effect and the test named', () => {
  const random = seeded(11);
  const paired = (factor: number): CanaryEvidence => {
    const ev = counts(0.25, { calls: 2000, errors: 0 }, { calls: 6000, errors: 0 });
    for (let i = 0; i < 800; i++) {
      // Machine noise hits both timings of a pair alike (same moment): the pair cancels it.
      const noise = lognormal(random, 1, 0.8);
      ev.pairs.add(noise * lognormal(random, 0.01, 0.1), noise * factor * lognormal(random, 0.01, 0.1), random);
    }
    return ev;
  };
  const slow = judge(paired(1.5), 1, false, DEFAULTS);
  assert.equal(slow.verdict, 'Failed');
  assert.equal(slow.figures.rule, 'latency-shift');
  assert.equal(slow.figures.latencyTest, 'wilcoxon-paired');
  assert.ok(Math.abs(slow.figures.latencyRatio! - 1.5) < 0.1, String(slow.figures.latencyRatio));
  assert.match(
    slow.reason,
    /candidate latency ×1\.\d\d the baseline's \(tolerated ×1\.30\): Wilcoxon signed-rank \(paired\) one-sided p=\S+ < α=\S+ over 800 pairs/,
  );
  const ok = judge(paired(1.2), 1, false, DEFAULTS);
  assert.equal(ok.verdict, 'Successful');
  assert.ok(ok.figures.latencyP! > 0.5, String(ok.figures.latencyP));
});

test('unpaired latency: Mann–Whitney on time-interleaved samples fails 3× and passes identical distributions', () => {
  const random = seeded(5);
  const sampled = (factor: number): CanaryEvidence => {
    const ev = counts(0.05, { calls: 2000, errors: 0 }, { calls: 40_000, errors: 0 });
    for (let i = 0; i < 600; i++) {
      ev.candidateLatency.add(lognormal(random, 0.05 * factor), random);
      ev.baselineLatency.add(lognormal(random, 0.05), random);
    }
    return ev;
  };
  const slow = judge(sampled(3), 1, false, DEFAULTS);
  assert.equal(slow.verdict, 'Failed');
  assert.equal(slow.figures.latencyTest, 'mann-whitney');
  const same = judge(sampled(1), 1, true, DEFAULTS);
  assert.equal(same.verdict, 'Successful');
  assert.equal(same.figures.rule, 'no-regression');
});

test('a step with too few calls is Inconclusive; promotion also needs minCalls and a latency verdict', () => {
  const step = judge(counts(0.005, { calls: 10, errors: 0 }, { calls: 2000, errors: 0 }), 1, false, DEFAULTS);
  assert.equal(step.verdict, 'Inconclusive');
  assert.match(step.reason, /only 10 of 200 candidate calls needed in this step/);
  const total = judge(counts(0.5, { calls: 600, errors: 0 }, { calls: 600, errors: 0 }), 1, true, DEFAULTS);
  assert.equal(total.verdict, 'Inconclusive');
  assert.match(total.reason, /only 600 of 1,000 candidate calls needed before promotion/);
  const latency = judge(counts(0.5, { calls: 1200, errors: 0 }, { calls: 1200, errors: 0 }), 1, true, DEFAULTS);
  assert.equal(latency.verdict, 'Inconclusive');
  assert.match(latency.reason, /latency samples needed on each side before promotion/);
});

test('a run of candidate errors no healthy version produces is overwhelming at once; a few scattered ones are not', () => {
  const run = counts(0.05, { calls: 12, errors: 12 }, { calls: 240, errors: 0 });
  const tripped = overwhelmingErrors(run, 0.99);
  assert.ok(tripped !== undefined);
  assert.match(tripped.reason, /judged at once/);
  assert.equal(overwhelmingErrors(counts(0.05, { calls: 1000, errors: 2 }, { calls: 19_000, errors: 20 }), 0.99), undefined);
});

test('identical versions are failed no more often than the configured false-alarm rate over many seeded canaries', () => {
  // Each canary: four steps, several looks each, both sides drawn from one distribution
  // (errors 0.5 %, log-normal latency), judged with the default confidence 0.99.
  const canaries = 200;
  let falseAlarms = 0;
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 2 ** 31 - 1 }), (seed) => {
      const random = seeded(seed);
      const ev = new CanaryEvidence(0.05);
      let look = 0;
      let failed = false;
      for (const [i, ratio] of [0.05, 0.25, 0.5].entries()) {
        if (i > 0) ev.newStep(ratio);
        for (let l = 0; l < 3 && !failed; l++) {
          for (let n = 0; n < 600; n++) {
            const candidate = random() < ratio;
            if (candidate) ev.candidateCall();
            else ev.baselineCall();
            if (random() < 0.005) {
              if (candidate) ev.candidateError();
              else ev.baselineError();
            }
            if (candidate && random() < 0.5) {
              ev.candidateLatency.add(lognormal(random, 0.2), random);
              ev.baselineLatency.add(lognormal(random, 0.2), random);
            }
          }
          look += 1;
          failed = judge(ev, look, i === 2, { ...DEFAULTS, minCalls: 0, minCallsPerStep: 1 }).verdict === 'Failed';
        }
      }
      if (failed) falseAlarms += 1;
    }),
    { numRuns: canaries, seed: 20261201 },
  );
  // Budget: 1 % per canary; allow three standard deviations of binomial noise above it.
  assert.ok(falseAlarms <= 0.01 * canaries + 3 * Math.sqrt(0.01 * canaries), `${falseAlarms} of ${canaries} identical canaries failed`);
});

test('the default 20 ns floor: a method of a few ns is not failed for a few ns more, a 1 µs method 1.5× slower is', () => {
  const random = seeded(23);
  const sampled = (baselineMs: number, candidateMs: number): CanaryEvidence => {
    const ev = counts(0.05, { calls: 2000, errors: 0 }, { calls: 40_000, errors: 0 });
    for (let i = 0; i < 600; i++) {
      ev.candidateLatency.add(lognormal(random, candidateMs, 0.2), random);
      ev.baselineLatency.add(lognormal(random, baselineMs, 0.2), random);
    }
    return ev;
  };
  // 5 ns measured as 10 ns (the clock's own granularity): not a slowdown anyone would roll back for.
  assert.notEqual(judge(sampled(0.000005, 0.00001), 1, false, DEFAULTS).verdict, 'Failed');
  const slow = judge(sampled(0.001, 0.0015), 1, false, DEFAULTS);
  assert.equal(slow.verdict, 'Failed');
  assert.equal(slow.figures.rule, 'latency-shift');
});

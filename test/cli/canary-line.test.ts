import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatCanaryStep, pValue } from '../../src/cli/canary-line.js';

/** A CanaryStep detail as the rewritten judge sends it: every figure present. */
const FULL = {
  step: 2,
  of: 4,
  verdict: 'Successful',
  intervals: 1,
  ratio: 0.05,
  rule: 'no-regression',
  candidateCalls: 812,
  candidateErrors: 0,
  errorRate: 0,
  baselineCalls: 15_400,
  baselineErrors: 0,
  baselineErrorRate: 0,
  errorTest: 'exact-binomial',
  errorP: 1,
  latencyTest: 'mann-whitney',
  latencyP: 0.6213,
  latencyRatio: 1.0412,
  latencySamples: 600,
  warmupExcluded: 200,
  timeouts: 0,
  differentialSamples: 812,
  differentialMismatches: 0,
  alpha: 0.0025,
  confidence: 0.99,
};

test('a full CanaryStep detail reads as one line: step, ratio, verdict, rule, calls, errors against the baseline, p-values, latency effect', () => {
  assert.equal(
    formatCanaryStep(FULL),
    'canary step 2/4 at 5.0%: Successful (no-regression) — 812 calls, 0 errors (baseline 0.00% of 15,400), p=1; latency ×1.04 p=0.62 (mann-whitney, 600 samples)',
  );
});

test("a failed step shows the candidate's error rate, its timeouts, compared outputs that differed and how many intervals it took", () => {
  const line = formatCanaryStep({
    ...FULL,
    step: 1,
    ratio: 0.005,
    verdict: 'Failed',
    rule: 'error-excess',
    intervals: 3,
    candidateCalls: 1200,
    candidateErrors: 18,
    errorRate: 0.015,
    baselineErrors: 31,
    baselineErrorRate: 31 / 15_400,
    errorP: 0.0000123,
    timeouts: 4,
    differentialSamples: 1200,
    differentialMismatches: 2,
    latencyTest: 'wilcoxon-paired',
  });
  assert.equal(
    line,
    'canary step 1/4 at 0.5%: Failed (error-excess, 3 intervals) — 1,200 calls, 18 errors = 1.50%, 4 timed out (baseline 0.20% of 15,400), p=1.2e-5; ' +
      'latency ×1.04 p=0.62 (wilcoxon-paired, 600 samples); 2 of 1,200 compared outputs differed',
  );
});

test('latency not judged yet reads as such, with the samples gathered so far', () => {
  const { latencyP: _p, latencyRatio: _r, ...rest } = FULL;
  const line = formatCanaryStep({ ...rest, verdict: 'Inconclusive', rule: 'insufficient-data', latencyTest: 'none', latencySamples: 12, intervals: 2 });
  assert.equal(
    line,
    'canary step 2/4 at 5.0%: Inconclusive (insufficient-data, 2 intervals) — 812 calls, 0 errors (baseline 0.00% of 15,400), p=1; latency not judged (12 samples)',
  );
});

test("an older agent's figures (no rule, no p-values, p99s instead) still read well", () => {
  const older = {
    step: 1,
    of: 2,
    verdict: 'Successful',
    intervals: 1,
    ratio: 0.5,
    candidateCalls: 120,
    candidateErrors: 0,
    errorRate: 0,
    baselineCalls: 131,
    latencyPercentile: 99,
    candidateP99Ms: 0.0421,
    baselineP99Ms: 0.0398,
    latencyRatio: 1.0578,
    differentialSamples: 120,
    differentialMismatches: 0,
  };
  assert.equal(
    formatCanaryStep(older),
    'canary step 1/2 at 50.0%: Successful — 120 calls, 0 errors (baseline 131 calls); latency ×1.06 (p99 0.042 vs 0.040 ms)',
  );
});

test('a sparse detail leaves out what is missing, never printing undefined or NaN', () => {
  assert.equal(formatCanaryStep({ step: 1, verdict: 'Successful' }), 'canary step 1: Successful');
  assert.equal(
    formatCanaryStep({ step: 3, of: 4, ratio: 0.25, verdict: 'Inconclusive', candidateCalls: 1 }),
    'canary step 3/4 at 25.0%: Inconclusive — 1 call',
  );
  assert.equal(formatCanaryStep({}), 'canary step: no verdict');
  assert.equal(formatCanaryStep(undefined), 'canary step: no verdict');
  assert.equal(formatCanaryStep({ baselineCalls: 10, baselineErrors: 1 }), 'canary step: no verdict — baseline 10.00% of 10');
  assert.equal(formatCanaryStep({ verdict: 'Failed', rule: 'timeout', latencyRatio: 2.5 }), 'canary step: Failed (timeout) — latency ×2.50');
  const wrongTypes = formatCanaryStep({
    step: '2',
    of: null,
    ratio: Number.NaN,
    verdict: 7,
    candidateCalls: 'many',
    candidateErrors: Number.POSITIVE_INFINITY,
    errorP: 'small',
    latencyRatio: Number.NaN,
    latencySamples: {},
  });
  assert.equal(wrongTypes, 'canary step: no verdict');
  assert.doesNotMatch(wrongTypes, /undefined|NaN|null|Infinity|object/);
});

test('strings from the agent cannot drive the terminal: control characters are replaced and length is bounded', () => {
  const line = formatCanaryStep({
    step: 1,
    of: 1,
    verdict: 'Successful\x1b[2J\r',
    rule: `no-regression\n${'x'.repeat(500)}`,
    latencyTest: 'mann\u202ewhitney',
    latencySamples: 5,
  });
  assert.doesNotMatch(line, /[\x00-\x1f\x7f\u202e]/);
  assert.ok(line.length < 220, `bounded: ${line.length}`);
  assert.match(line, /^canary step 1\/1: Successful\?\[2J\? \(no-regression\?x+\) — latency \(mann\?whitney, 5 samples\)$/);
});

test('p-values are shown with two significant digits, tiny ones in exponent form', () => {
  assert.deepEqual([1, 0.62134, 0.05, 0.0042, 0.00099, 3.2e-9, 0].map(pValue), ['1', '0.62', '0.05', '0.0042', '9.9e-4', '3.2e-9', '0']);
});

/*
 * The canary options a plan (and a fleet rollout) may store: the judge's new ones are
 * accepted, checked by the same rules as `twoPhaseApply`, written to journal.json and read
 * back identically after a restart.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  PERSISTABLE_ZDT_FIELDS,
  checkPersistableZdt,
  checkPlan,
  overlayZdtOptions,
  parseJournal,
  type PatchPlan,
  type PlanZdtOptions,
} from '../../src/orchestration/index.js';
import { FAST_ZDT, makeEnv, planOf, withTraffic } from './helpers.js';
import { isCode } from '../support/assertions.js';

/** Every new option of the judge, with values other than their defaults. */
const JUDGE_OPTIONS = {
  confidence: 0.995,
  maxErrorExcess: 0.002,
  maxLatencyShift: 0.5,
  minCalls: 300,
  warmupCalls: 50,
  canaryCallTimeoutMs: 750,
  probationWatch: false,
} as const;

const BASE = { id: 'p1', target: 'xps.a', repo: 'fs', verifier: 'v', security: 's', installer: 'i' };

test("a plan accepts the judge's canary options beside the older ones, and normalises them with sorted keys", () => {
  const plan = checkPlan({ ...BASE, zdt: { steps: [0.005, 0.05, 0.5], canaryRatio: 0.005, retryOnBaseline: true, minCallsPerStep: 50, ...JUDGE_OPTIONS } });
  assert.deepEqual(plan.zdt, {
    canaryCallTimeoutMs: 750,
    canaryRatio: 0.005,
    confidence: 0.995,
    maxErrorExcess: 0.002,
    maxLatencyShift: 0.5,
    minCalls: 300,
    minCallsPerStep: 50,
    probationWatch: false,
    retryOnBaseline: true,
    steps: [0.005, 0.05, 0.5],
    warmupCalls: 50,
  });
  assert.deepEqual(Object.keys(plan.zdt!), Object.keys(plan.zdt!).sort());
  for (const field of ['confidence', 'maxErrorExcess', 'maxLatencyShift', 'minCalls', 'warmupCalls', 'canaryCallTimeoutMs', 'probationWatch']) {
    assert.ok(PERSISTABLE_ZDT_FIELDS.includes(field), field);
  }
  // The deprecated alias alone is still accepted (older plan files and journals).
  assert.deepEqual(checkPlan({ ...BASE, zdt: { maxLatencyRatio: 2 } }).zdt, { maxLatencyRatio: 2 });
  // maxErrorRate is now an absolute ceiling, 1 meaning off.
  assert.deepEqual(checkPlan({ ...BASE, zdt: { maxErrorRate: 1 } }).zdt, { maxErrorRate: 1 });
});

test("a plan's canary options are refused with INVALID when unknown, mistyped or out of range", () => {
  const refused: [Record<string, unknown>, RegExp][] = [
    [{ confidence: 1 }, /confidence must be a number in \(0, 1\)/],
    [{ confidence: 0 }, /confidence/],
    [{ confidence: '0.99' }, /zdt\.confidence must be a finite number/],
    [{ confidence: Number.NaN }, /zdt\.confidence must be a finite number/],
    [{ maxErrorExcess: 1.5 }, /maxErrorExcess must be a number in \[0, 1\]/],
    [{ maxErrorExcess: -0.1 }, /maxErrorExcess/],
    [{ maxLatencyShift: -0.1 }, /maxLatencyShift must be a finite number >= 0/],
    [{ maxLatencyShift: Number.POSITIVE_INFINITY }, /maxLatencyShift must be a finite number/],
    [{ minCalls: 1.5 }, /minCalls must be an integer >= 0/],
    [{ minCalls: -1 }, /minCalls/],
    [{ warmupCalls: -1 }, /warmupCalls must be an integer >= 0/],
    [{ warmupCalls: 2.5 }, /warmupCalls/],
    [{ canaryCallTimeoutMs: 0 }, /canaryCallTimeoutMs must be > 0/],
    [{ canaryCallTimeoutMs: 2 ** 31 }, /canaryCallTimeoutMs must be at most 2147483647 ms/],
    [{ probationMs: 2 ** 31 }, /probationMs must be at most 2147483647 ms/],
    [{ canaryInterval: 2 ** 31 }, /canaryInterval must be at most/],
    [{ drainTimeoutMs: 2 ** 31 }, /drainTimeoutMs must be at most/],
    [{ probationWatch: 'no' }, /zdt\.probationWatch must be a boolean/],
    [{ retryOnBaseline: 1 }, /zdt\.retryOnBaseline must be a boolean/],
    [{ maxLatencyShift: 0.3, maxLatencyRatio: 1.3 }, /not both/],
    [{ maxErrorRate: 2 }, /maxErrorRate/],
    [{ steps: [0.5, 0.25] }, /steps must increase/],
    [{ steps: [] }, /steps must be a non-empty array/],
    [{ minCallsPerStep: 0 }, /minCallsPerStep/],
    [{ random: 0.5 }, /unknown or non-persistable field "random"/],
    [{ routingKey: 'user' }, /non-persistable field "routingKey"/],
    [{ confidance: 0.99 }, /unknown or non-persistable field "confidance"/],
  ];
  for (const [zdt, message] of refused) {
    assert.throws(() => checkPlan({ ...BASE, zdt }), isCode('INVALID', message), JSON.stringify(zdt));
    assert.throws(() => checkPersistableZdt(zdt, 'rollout.zdt'), isCode('INVALID', /^rollout\.zdt/), JSON.stringify(zdt));
  }
  assert.throws(() => checkPlan({ ...BASE, zdt: [] }), isCode('INVALID', /zdt must be a JSON object, got /));
  assert.throws(() => checkPlan({ ...BASE, zdt: null }), isCode('INVALID'));
});

test('overlayZdtOptions lays options over defaults field by field, and one latency tolerance replaces the other', () => {
  const base = { steps: [0.5, 1], minCalls: 0, maxLatencyRatio: 1000, canaryInterval: 25 };
  assert.deepEqual(overlayZdtOptions(base, { minCalls: 200, confidence: 0.9 }), {
    steps: [0.5, 1],
    minCalls: 200,
    maxLatencyRatio: 1000,
    canaryInterval: 25,
    confidence: 0.9,
  });
  assert.deepEqual(overlayZdtOptions(base, { maxLatencyShift: 0.5 }), { steps: [0.5, 1], minCalls: 0, canaryInterval: 25, maxLatencyShift: 0.5 });
  assert.deepEqual(overlayZdtOptions({ maxLatencyShift: 0.1 }, { maxLatencyRatio: 3 }), { maxLatencyRatio: 3 });
  assert.deepEqual(overlayZdtOptions(base, undefined), base);
  assert.deepEqual(overlayZdtOptions(undefined, { minCalls: 5 }), { minCalls: 5 });
  assert.equal(base.maxLatencyRatio, 1000, 'the base is not changed');
});

test("a plan with the judge's canary options survives a restart: the journal stores them, the reopened planner has the same plan and runs it", async () => {
  const env = await makeEnv();
  try {
    const first = env.process();
    const planner = await first.open();
    await env.publish('fix-zdt', '1.0.1');
    // FAST_ZDT for speed, its deprecated maxLatencyRatio swapped for the new shift.
    const { maxLatencyRatio: _ratio, ...fast } = FAST_ZDT;
    const zdt: PlanZdtOptions = { ...fast, ...JUDGE_OPTIONS, maxLatencyShift: 999, minCalls: 10, warmupCalls: 0, probationMs: 0 };
    const added = planner.addPlan(planOf('p-zdt', { patch: 'fix-zdt', zdt }) as PatchPlan);
    await planner.flush();

    const journal = await env.journal();
    const stored = (journal.plans[0]!.plan as { zdt: Record<string, unknown> }).zdt;
    for (const [key, value] of Object.entries(JUDGE_OPTIONS)) {
      if (key !== 'maxLatencyShift' && key !== 'minCalls' && key !== 'warmupCalls') assert.deepEqual(stored[key], value, key);
    }
    assert.equal(stored.maxLatencyShift, 999);
    assert.equal(stored.maxLatencyRatio, undefined);
    // What the journal wrote, its reader accepts as it is.
    const text = await readFile(join(env.stateDir, 'journal.json'));
    assert.deepEqual(parseJournal(text, 'journal.json').plans[0]!.plan, added.plan);

    const second = env.process();
    await second.runtime.restore();
    const reopened = await second.open();
    assert.deepEqual(reopened.plans(), planner.plans());
    assert.deepEqual(reopened.plan('p-zdt').plan.zdt, added.plan.zdt);
    assert.equal(reopened.addPlan(planOf('p-zdt', { patch: 'fix-zdt', zdt }) as PatchPlan).status, 'pending', 'the identical plan again: harmless');
    const run = await withTraffic(second, reopened.runOnce('p-zdt'));
    assert.equal(run.result.status, 'activated', run.result.reason);
    assert.equal(run.errors, 0);
    assert.equal(second.target.active.patchId, 'fix-zdt');
  } finally {
    await env.close();
  }
});

test("parseJournal takes a plan whose zdt carries the judge's options and refuses one out of range with INVALID", () => {
  const journal = (zdt: Record<string, unknown>): Uint8Array =>
    new TextEncoder().encode(
      JSON.stringify({ format: 1, plans: [{ plan: { ...BASE, zdt }, status: 'pending', attempts: 0, updatedAt: '2030-01-01T00:00:00Z' }] }),
    );
  assert.deepEqual(parseJournal(journal({ ...JUDGE_OPTIONS }), 'journal.json').plans[0]!.plan.zdt, { ...JUDGE_OPTIONS });
  assert.throws(() => parseJournal(journal({ confidence: 1.5 }), 'journal.json'), isCode('INVALID', /plan p1: zdt: confidence/));
  assert.throws(() => parseJournal(journal({ probationMs: 2 ** 31 }), 'journal.json'), isCode('INVALID', /probationMs/));
  assert.throws(() => parseJournal(journal({ probationWatch: 'off' }), 'journal.json'), isCode('INVALID', /probationWatch/));
});

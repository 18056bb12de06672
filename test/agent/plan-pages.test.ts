/*
 * GET /v1/plans and GET /v1/status serve plans a page at a time (`?limit=N&after=ID`, a
 * bounded default page, a `next` cursor while more remain), so an agent with thousands of
 * plans answers with a bounded body; `hotpatch status` follows the pages to list them all.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startAgent, type Agent } from '../../src/agent/index.js';
import type { PatchPlan } from '../../src/orchestration/index.js';
import { T, call, hostRuntime, hotpatch, makeFixture, planOf, type Endpoint, type Fixture } from './helpers.js';

/**
 * 300 failed plans (a repository that kept refusing), then 800 pending: past the CLI's
 * 1,000-plan page, and under the planner's default 500 finished plans kept, so none is pruned.
 */
const FAILED = 300;
const PENDING = 800;
const TOTAL = FAILED + PENDING;
const idOf = (i: number): string => `plan-${String(i).padStart(4, '0')}`;

/** A journal as the planner writes it, so the agent starts with TOTAL plans without running any. */
async function seedJournal(stateDir: string): Promise<void> {
  const updatedAt = new Date().toISOString();
  const plans = Array.from({ length: TOTAL }, (_, i) => ({
    plan: planOf(idOf(i), `patch-${i}`),
    ...(i < FAILED
      ? { status: 'failed', phase: 'verify', code: 'UNTRUSTED_KEY', reason: `patch-${i} is signed by an unknown key` }
      : { status: 'pending', reason: 'planned' }),
    attempts: i < FAILED ? 1 : 0,
    updatedAt,
  }));
  await writeFile(join(stateDir, 'journal.json'), JSON.stringify({ format: 1, updated_at: updatedAt, plans }), { mode: 0o600 });
}

const CURSOR = /^[0-9a-f]{8}\.[1-9]\d*$/;

interface PageJson {
  ok: boolean;
  plans: { id: string; status: string }[];
  total: number;
  next?: string;
}

describe('plans are served a page at a time', { timeout: 60_000 }, () => {
  let fx: Fixture;
  let agent: Agent;
  let ep: Endpoint;

  before(async () => {
    fx = await makeFixture('hotpatch-agent-pages-');
    await seedJournal(fx.stateDir);
    const host = hostRuntime(fx.stateDir);
    agent = await startAgent({ stateDir: fx.stateDir, runtime: host.runtime, defaults: { repository: fx.repoDir, trustStore: fx.trustFile }, log: false });
    ep = { socketPath: agent.address.slice('unix:'.length) };
    assert.equal(agent.planner.plans().length, TOTAL);
  });

  after(async () => {
    await agent?.close();
    await fx?.close();
  });

  const page = async (path: string): Promise<PageJson> => {
    const r = await call(ep, 'GET', path);
    assert.equal(r.status, 200, `${path}: ${r.text}`);
    return r.json as unknown as PageJson;
  };

  test('GET /v1/plans without parameters returns the first 100 plans in the order they were added, the total and a next cursor', async () => {
    const first = await page('/v1/plans');
    assert.deepEqual(
      first.plans.map((p) => p.id),
      Array.from({ length: 100 }, (_, i) => idOf(i)),
    );
    assert.equal(first.total, TOTAL);
    assert.match(String(first.next), CURSOR);
  });

  test('following next walks every plan exactly once, in order, and the last page has no next', async () => {
    const seen: string[] = [];
    let path = '/v1/plans?limit=300';
    let pages = 0;
    for (;;) {
      const p = await page(path);
      pages += 1;
      seen.push(...p.plans.map((x) => x.id));
      if (p.next === undefined) break;
      path = `/v1/plans?limit=300&after=${encodeURIComponent(p.next)}`;
    }
    assert.equal(pages, Math.ceil(TOTAL / 300));
    assert.deepEqual(
      seen,
      agent.planner.plans().map((s) => s.plan.id),
    );
  });

  test('a plan added while a client pages is on a later page, and none is skipped or repeated', async () => {
    const first = await page('/v1/plans?limit=1000');
    agent.planner.addPlan(planOf('plan-added-late', 'patch-late') as unknown as PatchPlan);
    const rest = await page(`/v1/plans?limit=1000&after=${encodeURIComponent(first.next!)}`);
    assert.equal(rest.next, undefined);
    const ids = [...first.plans, ...rest.plans].map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length, 'no plan repeated');
    assert.deepEqual(
      ids,
      agent.planner.plans().map((s) => s.plan.id),
    );
    assert.equal(ids.at(-1), 'plan-added-late');
    assert.equal(rest.total, TOTAL + 1);
    await agent.planner.removePlan('plan-added-late');
  });

  test('GET /v1/status returns the targets, the first page of plans, the total and the count of plans by status', async () => {
    const r = await call(ep, 'GET', '/v1/status');
    assert.equal(r.status, 200, r.text);
    assert.equal((r.json.targets as { target: string }[])[0]!.target, T);
    assert.equal((r.json.plans as unknown[]).length, 100);
    assert.equal(r.json.total, TOTAL);
    assert.match(String(r.json.next), CURSOR);
    assert.deepEqual(r.json.planCounts, { pending: PENDING, waiting: 0, running: 0, activated: 0, failed: FAILED, 'rolled-back': 0 });
    // The page ending at the fifth-last failed plan, then ten from there on.
    const upTo = await page(`/v1/plans?limit=${FAILED - 4}`);
    const small = await call(ep, 'GET', `/v1/status?limit=10&after=${encodeURIComponent(upTo.next!)}`);
    assert.deepEqual(
      (small.json.plans as { id: string; status: string }[]).map((p) => [p.id, p.status]),
      [...Array.from({ length: 4 }, (_, i) => [idOf(FAILED - 4 + i), 'failed']), ...Array.from({ length: 6 }, (_, i) => [idOf(FAILED + i), 'pending'])],
    );
    // Bounded by the page, whatever the number of plans: the whole list would be 11 times as long.
    assert.ok(r.text.length < 60_000, `status is ${r.text.length} bytes`);
  });

  test('bad paging parameters are refused with 400 INVALID naming the parameter', async () => {
    const epoch = String((await page('/v1/plans?limit=1')).next).split('.')[0]!;
    assert.notEqual(epoch, '00000000');
    const bad: [string, RegExp][] = [
      ['limit=0', /limit must be a whole number from 1 to 1000, got "0"/],
      ['limit=-1', /limit must be a whole number/],
      ['limit=1.5', /limit must be a whole number/],
      ['limit=1e2', /limit must be a whole number/],
      ['limit=', /limit must be a whole number/],
      ['limit=abc', /limit must be a whole number/],
      ['limit=1001', /limit must be a whole number from 1 to 1000, got "1001"/],
      ['limit=99999999999', /limit must be a whole number/],
      ['limit=5&limit=6', /limit is given more than once/],
      ['after=', /after: "" is not a cursor of this agent/],
      [`after=${idOf(3)}`, /after: "plan-0003" is not a cursor of this agent/],
      // Another process's epoch (an agent restarted since), and a position never handed out.
      [`after=00000000.5`, /is not a cursor of this agent .*start again without after/],
      [`after=${epoch}.99999999`, /is not a cursor of this agent/],
      ['page=2', /unknown query parameter "page" \(allowed: limit, after\)/],
    ];
    for (const endpoint of ['/v1/plans', '/v1/status']) {
      for (const [query, message] of bad) {
        const r = await call(ep, 'GET', `${endpoint}?${query}`);
        assert.equal(r.status, 400, `${endpoint}?${query}: ${r.text}`);
        assert.equal(r.json.code, 'INVALID', `${endpoint}?${query}`);
        assert.match(String(r.json.message), message, `${endpoint}?${query}`);
      }
    }
  });

  test('a cursor survives the removal of the plan its page ended at: the next page starts right after it', async () => {
    // The planner drops old finished plans as new ones finish: the plan a page ended at may go.
    const first = await page('/v1/plans?limit=50');
    const last = first.plans.at(-1)!.id;
    await agent.planner.removePlan(last);
    const rest = await page(`/v1/plans?limit=1000&after=${encodeURIComponent(first.next!)}`);
    assert.equal(rest.plans[0]!.id, idOf(50));
    assert.deepEqual(
      [...first.plans.slice(0, -1), ...rest.plans].map((p) => p.id),
      agent.planner
        .plans()
        .map((s) => s.plan.id)
        .slice(0, 1000 + 49),
    );
    // The next page goes on from where this one ended, though the list shifted under it.
    const tail = await page(`/v1/plans?limit=1000&after=${encodeURIComponent(rest.next!)}`);
    assert.deepEqual(
      [...first.plans.slice(0, -1), ...rest.plans, ...tail.plans].map((p) => p.id),
      agent.planner.plans().map((s) => s.plan.id),
    );
    assert.equal(tail.next, undefined);
  });

  test('hotpatch status follows the pages and lists every plan, with --json and without', async () => {
    const json = await hotpatch(['status', '--agent', agent.address, '--json']);
    assert.equal(json.status, 0, json.stderr);
    assert.deepEqual(
      (json.json?.plans as { id: string }[]).map((p) => p.id),
      agent.planner.plans().map((s) => s.plan.id),
    );
    const human = await hotpatch(['status', '--agent', agent.address]);
    assert.equal(human.status, 0, human.stderr);
    const total = agent.planner.plans().length;
    assert.ok(total > 1000, `${total} plans: more than one page of the CLI`);
    assert.equal(human.stdout.match(/^ {2}plan-\d{4} {2}/gm)?.length, total);
    assert.match(human.stdout, new RegExp(`^ {2}${idOf(TOTAL - 1)} {2}${T.replace(/\./g, '\\.')} {2}pending {2}patch-${TOTAL - 1} {2}— planned$`, 'm'));
    assert.match(`${human.stdout}${human.stderr}`, new RegExp(`1 target\\(s\\), ${total} plan\\(s\\)`));
  });
});

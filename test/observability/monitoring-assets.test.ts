/*
 * The Prometheus and Grafana assets shipped in assets/: the alerting rules pass `promtool check
 * rules` and their unit tests (each alert fires on the series that should raise it, not
 * before); every expression of the Grafana dashboard is PromQL promtool accepts, over metrics a
 * live agent exports; and against a live agent scraped by Debian's real Prometheus with the
 * rules loaded, a rollback raises HotPatchRolledBack.
 */
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import type { Agent } from '../../src/agent/index.js';
import { call, faultySource, freePort, hostRuntime, makeFixture, planOf, sha, startHttpAgent, type Endpoint, type Fixture } from '../agent/helpers.js';
import { promtool, startPrometheus, type RunningPrometheus } from '../support/prometheus.js';
import { waitFor } from '../support/wait.js';

const ASSETS = resolve('assets');
const RULES = join(ASSETS, 'prometheus', 'hotpatch-alerts.yml');
const DASHBOARD = join(ASSETS, 'grafana', 'hotpatch-dashboard.json');

let fx: Fixture;
let agent: Agent;
let ep: Endpoint;
let agentPort: number;
let tokenFile: string;
let prom: RunningPrometheus | undefined;
let target: ReturnType<typeof hostRuntime>['target'];

before(async () => {
  fx = await makeFixture('hotpatch-monitoring-');
  ({ agent, ep, port: agentPort, tokenFile, target } = await startHttpAgent(fx));
});

after(async () => {
  await prom?.stop();
  await agent?.close();
  await fx?.close();
});

/** The hotpatch_* metric names an expression reads (a histogram's _bucket/_sum/_count as the histogram). */
function metricNames(text: string): string[] {
  return [...new Set([...text.matchAll(/\bhotpatch_[a-z_]+/g)].map((m) => m[0].replace(/_(bucket|sum|count)$/, '')))];
}

/** Every PromQL expression of the dashboard (panels and annotations), with Grafana's variables given values. */
async function dashboardExpressions(): Promise<string[]> {
  const dashboard = JSON.parse(await readFile(DASHBOARD, 'utf8')) as {
    panels: { title: string; targets: { expr: string }[] }[];
    annotations: { list: { expr?: string }[] };
    templating: { list: { name: string }[] };
  };
  assert.deepEqual(
    dashboard.templating.list.map((v) => v.name),
    ['datasource', 'instance', 'target'],
  );
  const exprs = [
    ...dashboard.panels.flatMap((p) => p.targets.map((t) => t.expr)),
    ...dashboard.annotations.list.flatMap((a) => (a.expr === undefined ? [] : [a.expr])),
  ];
  return exprs.map((e) => e.replaceAll('$__rate_interval', '1m').replaceAll('$instance', '.*').replaceAll('$target', '.*'));
}

test('the alerting rules pass promtool check rules, and their unit tests: each alert fires on its series and not before', async () => {
  const checked = await promtool(['check', 'rules', RULES]);
  assert.equal(checked.status, 0, checked.output);
  assert.match(checked.output, /SUCCESS: 7 rules found/);
  const unit = await promtool(['test', 'rules', 'hotpatch-alerts.test.yml'], join(ASSETS, 'prometheus'));
  assert.equal(unit.status, 0, unit.output);
});

test('every dashboard expression is PromQL promtool accepts, and every metric the assets read is one a live agent exports', async () => {
  const exprs = await dashboardExpressions();
  assert.ok(exprs.length >= 10);
  // promtool parses recording rules: each expression becomes one.
  const asRules = join(fx.dir, 'dashboard-exprs.yml');
  await writeFile(
    asRules,
    [
      'groups:',
      '  - name: dashboard',
      '    rules:',
      ...exprs.flatMap((e, i) => [`      - record: dashboard:expr${i}`, `        expr: ${JSON.stringify(e)}`]),
      '',
    ].join('\n'),
  );
  const checked = await promtool(['check', 'rules', asRules]);
  assert.equal(checked.status, 0, checked.output);

  // A canary look, so that the event-driven counters have samples too.
  for (let i = 0; i < 20; i++) assert.equal(target.api.digest(`m${i}`), sha(`m${i}`));
  const exposition = (await call(ep, 'GET', '/metrics')).text;
  const exported = new Set([...exposition.matchAll(/^# TYPE (hotpatch_[a-z_]+) /gm)].map((m) => m[1]!));
  const read = metricNames(`${exprs.join('\n')}\n${await readFile(RULES, 'utf8')}`);
  assert.ok(read.length >= 9, read.join(', '));
  assert.deepEqual(
    read.filter((name) => !exported.has(name)),
    [],
    `metrics the assets read that the agent does not export (it exports ${[...exported].join(', ')})`,
  );
  assert.match(exposition, /^hotpatch_audit_chain_ok 1$/m);
});

test('Prometheus with the rules loaded, scraping a live agent, raises HotPatchRolledBack when a canary rolls a patch back', { timeout: 120_000 }, async () => {
  prom = await startPrometheus({ dir: fx.dir, port: await freePort(), agentPort, tokenFile, ruleFiles: [RULES] });
  const running = prom;
  // Scraped before the rollback: the counter's 0 is a sample, so increase() sees it move.
  await waitFor(
    'Prometheus to scrape hotpatch_rollbacks_total at 0',
    async () => (await running.query('hotpatch_rollbacks_total'))[0]?.value[1] === '0',
    60_000,
  );
  assert.deepEqual(
    (await running.alerts()).filter((a) => a.state === 'firing'),
    [],
  );

  await fx.publish('mon-faulty', '1.0.1', faultySource('monitoring'));
  let done = false;
  const reply = call(ep, 'POST', '/v1/apply', { plan: planOf('mon-plan', 'mon-faulty') }).finally(() => (done = true));
  for (let i = 0; !done; i++) {
    target.api.digest(`q${i}`);
    if (i % 20 === 0) await new Promise((r) => setImmediate(r));
  }
  const r = await reply;
  assert.equal(r.json.status, 'rolled-back', r.text);

  const alert = await waitFor(
    'HotPatchRolledBack to fire',
    async () => (await running.alerts()).find((a) => a.labels.alertname === 'HotPatchRolledBack' && a.state === 'firing'),
    60_000,
    250,
  ).catch((error: unknown) => assert.fail(`${(error as Error).message}\nprometheus log:\n${running.log()}`));
  assert.equal(alert.labels.target, 'xps.crypto.hash.sha256');
  assert.equal(alert.labels.severity, 'warning');
  assert.equal(alert.annotations.summary, `xps.crypto.hash.sha256 rolled back on 127.0.0.1:${agentPort}`);
  // The audit chain of this agent is intact: its alert stays quiet.
  assert.equal((await running.query('hotpatch_audit_chain_ok'))[0]?.value[1], '1');
});

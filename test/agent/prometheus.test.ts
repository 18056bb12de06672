/*
 * Debian's real Prometheus scrapes the agent's /metrics over loopback HTTP with the bearer
 * token, and hotpatch_events_total is read back through Prometheus's HTTP query API.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import type { Agent } from '../../src/agent/index.js';
import type { Target } from '../../src/zero-downtime/index.js';
import { findPrometheus, startPrometheus, type RunningPrometheus } from '../support/prometheus.js';
import { waitFor } from '../support/wait.js';
import { T, builtin, call, freePort, makeFixture, planOf, sha, startHttpAgent, type Endpoint, type Fixture } from './helpers.js';

describe('Prometheus scrapes the agent', { timeout: 70_000 }, () => {
  let fx: Fixture;
  let agent: Agent | undefined;
  let target: Target<typeof builtin>;
  let ep: Endpoint;
  let prom: RunningPrometheus | undefined;
  let tokenFile: string;

  before(async () => {
    fx = await makeFixture('hotpatch-prometheus-');
    await fx.publish('prom-good', '1.1.0');
    ({ agent, ep, tokenFile, target } = await startHttpAgent(fx));
  });

  after(async () => {
    await prom?.stop();
    await agent?.close();
    await fx?.close();
  });

  test("hotpatch_events_total reaches Prometheus and matches the agent's own count", { timeout: 60_000 }, async () => {
    const version = spawnSync(await findPrometheus(), ['--version'], { encoding: 'utf8' });
    assert.equal(version.status, 0, `prometheus --version failed: ${version.stderr}`);

    // Publish some events first: a real apply under live calls.
    let done = false;
    const reply = call(ep, 'POST', '/v1/apply', { plan: planOf('prom-plan', 'prom-good') }).finally(() => (done = true));
    for (let i = 0; !done; i++) {
      assert.equal(target.api.digest(`p${i}`), sha(`p${i}`));
      if (i % 20 === 0) await new Promise((r) => setImmediate(r));
    }
    const r = await reply;
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.status, 'activated');

    // What the agent itself counts, from its own exposition.
    const own = await call(ep, 'GET', '/metrics');
    const line = /^hotpatch_events_total\{type="CanaryStep",target="xps\.crypto\.hash\.sha256"\} (\d+)$/m.exec(own.text);
    assert.ok(line !== null, own.text);
    const expected = Number(line[1]);
    assert.ok(expected >= 2);

    prom = await startPrometheus({ dir: fx.dir, port: await freePort(), agentPort: ep.port!, tokenFile });
    const running = prom;
    const hit = await waitFor(
      'a hotpatch_events_total sample with a type label in Prometheus',
      async () => (await running.query(`hotpatch_events_total{type="CanaryStep",target="${T}"}`)).find((x) => x.metric.type === 'CanaryStep'),
      30_000,
      250,
    ).catch((error: unknown) => assert.fail(`${(error as Error).message}\nprometheus log:\n${running.log()}`));
    const value = Number(hit.value[1]);
    const labels = hit.metric;
    assert.equal(value, expected, 'Prometheus reads the same count the agent serves');
    assert.equal(labels.__name__, 'hotpatch_events_total');
    assert.equal(labels.target, T);
    assert.equal(labels.job, 'hotpatch-agent');
    assert.equal(labels.instance, `127.0.0.1:${ep.port}`);

    // The scrape itself was authenticated: Prometheus reports the target up.
    assert.equal((await running.query('up{job="hotpatch-agent"}'))[0]?.value[1], '1');
  });
});

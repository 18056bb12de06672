/*
 * Debian's real Prometheus scrapes the agent's /metrics over loopback HTTP with the bearer
 * token, and hotpatch_events_total is read back through Prometheus's HTTP query API.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { access, constants, writeFile } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startAgent, type Agent } from '../../src/agent/index.js';
import type { Target } from '../../src/zero-downtime/index.js';
import { T, builtin, call, freePort, hostRuntime, makeFixture, planOf, sha, writeToken, type Endpoint, type Fixture } from './helpers.js';

async function findPrometheus(): Promise<string | undefined> {
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter((d) => d !== ''), '/usr/bin'];
  for (const dir of dirs) {
    const candidate = join(dir, 'prometheus');
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here; try the next directory
    }
  }
  return undefined;
}

interface QueryResult {
  status: string;
  data: { resultType: string; result: { metric: Record<string, string>; value: [number, string] }[] };
}

describe('Prometheus scrapes the agent', { timeout: 70_000 }, () => {
  let fx: Fixture;
  let agent: Agent | undefined;
  let target: Target<typeof builtin>;
  let ep: Endpoint;
  let prom: ChildProcess | undefined;
  let promLog = '';
  let tokenFile: string;

  before(async () => {
    fx = await makeFixture('hotpatch-prometheus-');
    await fx.publish('prom-good', '1.1.0');
    const token = randomBytes(24).toString('hex');
    tokenFile = join(fx.dir, 'agent.token');
    await writeToken(tokenFile, token);
    const host = hostRuntime(fx.stateDir);
    target = host.target;
    agent = await startAgent({
      stateDir: fx.stateDir,
      runtime: host.runtime,
      http: { port: 0, tokenFile },
      defaults: { repository: fx.repoDir, trustStore: fx.trustFile },
      log: false,
    });
    ep = { host: '127.0.0.1', port: Number(new URL(agent.address).port), token };
  });

  after(async () => {
    if (prom !== undefined && prom.exitCode === null && prom.signalCode === null) {
      const exited = new Promise((r) => prom!.once('exit', r));
      prom.kill('SIGTERM');
      const timer = setTimeout(() => prom!.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    }
    await agent?.close();
    await fx?.close();
  });

  test("hotpatch_events_total reaches Prometheus and matches the agent's own count", { timeout: 60_000 }, async () => {
    const binary = await findPrometheus();
    assert.ok(binary !== undefined, 'prometheus is not installed (not on PATH, not /usr/bin/prometheus): install it with apt-get install -y prometheus');
    const version = spawnSync(binary, ['--version'], { encoding: 'utf8' });
    assert.equal(version.status, 0, `${binary} --version failed: ${version.stderr}`);

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

    const promPort = await freePort();
    const config = join(fx.dir, 'prometheus.yml');
    await writeFile(
      config,
      [
        'global:',
        '  scrape_interval: 1s',
        '  evaluation_interval: 1s',
        'scrape_configs:',
        '  - job_name: hotpatch-agent',
        '    metrics_path: /metrics',
        '    scheme: http',
        '    authorization:',
        '      type: Bearer',
        `      credentials_file: ${JSON.stringify(tokenFile)}`,
        '    static_configs:',
        `      - targets: ['127.0.0.1:${ep.port}']`,
        '',
      ].join('\n'),
    );
    prom = spawn(
      binary,
      [`--config.file=${config}`, `--storage.tsdb.path=${join(fx.dir, 'tsdb')}`, `--web.listen-address=127.0.0.1:${promPort}`, '--log.level=warn'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    prom.stdout!.setEncoding('utf8').on('data', (d: string) => (promLog += d));
    prom.stderr!.setEncoding('utf8').on('data', (d: string) => (promLog += d));

    const query = `hotpatch_events_total{type="CanaryStep",target="${T}"}`;
    const url = `http://127.0.0.1:${promPort}/api/v1/query?query=${encodeURIComponent(query)}`;
    const deadline = Date.now() + 30_000;
    let last = 'no answer yet';
    let value: number | undefined;
    let labels: Record<string, string> | undefined;
    while (Date.now() < deadline) {
      assert.ok(prom.exitCode === null && prom.signalCode === null, `prometheus exited early (${prom.exitCode ?? prom.signalCode}):\n${promLog}`);
      try {
        const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
        const body = (await res.json()) as QueryResult;
        last = JSON.stringify(body);
        const hit = body.status === 'success' ? body.data.result.find((x) => x.metric.type === 'CanaryStep') : undefined;
        if (hit !== undefined) {
          value = Number(hit.value[1]);
          labels = hit.metric;
          break;
        }
      } catch (error) {
        last = (error as Error).message; // not listening yet
      }
      await new Promise((r) => setTimeout(r, 250));
    }
    assert.ok(
      value !== undefined,
      `no hotpatch_events_total sample with a type label in Prometheus after 30 s; last answer: ${last}\nprometheus log:\n${promLog}`,
    );
    assert.equal(value, expected, 'Prometheus reads the same count the agent serves');
    assert.equal(labels?.__name__, 'hotpatch_events_total');
    assert.equal(labels?.target, T);
    assert.equal(labels?.job, 'hotpatch-agent');
    assert.equal(labels?.instance, `127.0.0.1:${ep.port}`);

    // The scrape itself was authenticated: Prometheus reports the target up.
    const up = (await (await fetch(`http://127.0.0.1:${promPort}/api/v1/query?query=${encodeURIComponent('up{job="hotpatch-agent"}')}`)).json()) as QueryResult;
    assert.equal(up.data.result[0]?.value[1], '1', JSON.stringify(up));
  });
});

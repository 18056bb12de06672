/*
 * The examples/ directory, run as a user would: the example service (compiled with the rest
 * of the project, so type-checked by the build) started as its own process, the example
 * patch built with examples/patch/build.mjs, signed with a key made by `hotpatch keygen`,
 * packed and signed with the CLI, and applied with `hotpatch apply` through the service's
 * agent on loopback HTTP while clients keep calling the API. No fixed sleeps: every wait is
 * on a line the service prints, a process exiting, or an answer.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { Agent as HttpAgent, get } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { hotpatch, writeToken, type CliResult } from '../agent/helpers.js';
import { collectJsonLines, type JsonLine } from '../support/json-lines.js';

const SERVICE = resolve('dist/examples/service/main.js');
const BUILD = resolve('examples/patch/build.mjs');
const TARGET = 'example.pricing.quote';

type Line = JsonLine;

interface Service {
  lines: Line[];
  waitLine(event: string, timeoutMs?: number): Promise<Line>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  child: ChildProcess;
  stderr(): string;
}

/** Starts the compiled example service with `env` and resolves once it printed its ready line. */
async function startService(env: Record<string, string>): Promise<{ service: Service; ready: Line }> {
  const child = spawn(process.execPath, [SERVICE], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: Line[] = [];
  const waiters = new Set<() => void>();
  let err = '';
  collectJsonLines(child.stdout!, lines, () => {
    for (const w of waiters) w();
  });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  let done = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.on('exit', (code, signal) => {
      done = true;
      for (const w of waiters) w();
      r({ code, signal });
    }),
  );
  const waitLine = (event: string, timeoutMs = 20_000): Promise<Line> =>
    new Promise((resolveLine, reject) => {
      const check = (): void => {
        const hit = lines.find((l) => l.event === event || l.event === 'start-failed');
        const fail = (why: string): void => {
          cleanup();
          reject(new Error(`${why} waiting for "${event}"; lines: ${JSON.stringify(lines)}; stderr:\n${err.slice(-4000)}`));
        };
        if (hit?.event === 'start-failed') return fail('the service failed to start');
        if (hit !== undefined) {
          cleanup();
          resolveLine(hit);
        } else if (done) fail('the service exited');
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out waiting for "${event}"; stderr:\n${err.slice(-4000)}`));
      }, timeoutMs);
      const cleanup = (): void => {
        clearTimeout(timer);
        waiters.delete(check);
      };
      waiters.add(check);
      check();
    });
  const service: Service = { lines, waitLine, exited, child, stderr: () => err };
  try {
    return { service, ready: await waitLine('ready') };
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  }
}

/** SIGTERM, then the exit (SIGKILL only past a generous bound, so a hung stop fails the test). */
async function stopService(service: Service): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  service.child.kill('SIGTERM');
  const timer = setTimeout(() => service.child.kill('SIGKILL'), 15_000);
  const result = await service.exited;
  clearTimeout(timer);
  return result;
}

interface Answer {
  status: number;
  body: string;
}

function getText(url: string, agent?: HttpAgent): Promise<Answer> {
  return new Promise((resolveAnswer, reject) => {
    const req = get(url, agent === undefined ? {} : { agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolveAnswer({ status: res.statusCode ?? 0, body }));
    });
    req.setTimeout(10_000, () => req.destroy(new Error(`GET ${url}: no answer within 10 s`)));
    req.on('error', reject);
  });
}

interface QuoteAnswer {
  totalCents: number;
  discountPercent: number;
  currency: string;
  engine: string;
}

const quoteOf = async (api: string, quantity: number): Promise<QuoteAnswer> => {
  const r = await getText(`${api}/quote?sku=widget&quantity=${quantity}`);
  assert.equal(r.status, 200, r.body);
  return JSON.parse(r.body) as QuoteAnswer;
};

/** Clients calling /quote in a loop until `until` settles: the live traffic the canary judges. */
async function clients(api: string, until: Promise<unknown>): Promise<{ ok: number; bad: string[]; engines: Set<string> }> {
  let running = true;
  void until.finally(() => (running = false));
  const agent = new HttpAgent({ keepAlive: true, maxSockets: 4 });
  const seen = { ok: 0, bad: [] as string[], engines: new Set<string>() };
  let n = 0;
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      while (running) {
        const quantity = 1 + (n++ % 150);
        const r = await getText(`${api}/quote?sku=widget&quantity=${quantity}`, agent);
        if (r.status !== 200) seen.bad.push(`${r.status} ${r.body}`);
        else {
          seen.ok += 1;
          seen.engines.add((JSON.parse(r.body) as QuoteAnswer).engine);
        }
      }
    }),
  );
  agent.destroy();
  return seen;
}

const show = (r: Pick<CliResult, 'status' | 'stdout' | 'stderr'>): string => `exit ${r.status}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;

describe('the example service and patch, as a user runs them', { timeout: 120_000 }, () => {
  let dir: string;
  let env: Record<string, string>;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hotpatch-example-'));
    const repo = join(dir, 'repo');
    await mkdir(repo);
    await mkdir(join(dir, 'state'), { mode: 0o700 });
    env = {
      PORT: '0',
      API_HOST: '127.0.0.1',
      HOTPATCH_AGENT_PORT: '0',
      HOTPATCH_STATE_DIR: join(dir, 'state'),
      HOTPATCH_REPO: repo,
      HOTPATCH_TRUST: join(dir, 'trust.json'),
      HOTPATCH_TOKEN_FILE: join(dir, 'agent.token'),
    };
    await writeToken(env.HOTPATCH_TOKEN_FILE!, `example-operator-${process.pid}-token`);
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true, maxRetries: 5 });
  });

  test('the patch builds into a self-contained module, and a patch importing a package is refused by the build', async () => {
    const built = await runNode([BUILD, '--out', join(dir, 'patch.mjs')]);
    assert.equal(built.status, 0, show(built));
    assert.equal((built.json as { ok?: unknown }).ok, true);
    const bad = join(dir, 'bad-patch.ts');
    await writeFile(bad, `import { round } from 'lodash';\nexport const api = { quote: (s: string, q: number) => round(q) };\n`);
    const refused = await runNode([BUILD, bad, '--out', join(dir, 'bad.mjs')]);
    assert.equal(refused.status, 1, show(refused));
    assert.match(refused.stdout, /imports \\"lodash\\"; a payload may import node: built-ins only/);
  });

  test('a freshly signed patch applied with the hotpatch CLI through the agent changes the API answers with no failed request; SIGTERM stops the service and a restart keeps the patch', async () => {
    // Keys, trust store, pack and sign: the operator's side, all with the CLI.
    const keygen = await hotpatch(['keygen', '--alg', 'ed25519', '--out', join(dir, 'keys'), '--name', 'example-ci', '--json']);
    assert.equal(keygen.status, 0, show(keygen));
    await writeFile(env.HOTPATCH_TRUST!, JSON.stringify({ keys: keygen.json?.trust_entry, threshold: 1 }));
    const built = await runNode([BUILD, '--out', join(dir, 'patch.mjs')]);
    assert.equal(built.status, 0, show(built));
    const pack = await hotpatch([
      'pack',
      '--repo',
      env.HOTPATCH_REPO!,
      '--id',
      'pricing-fix-1',
      '--target',
      TARGET,
      '--version',
      '1.0.1',
      '--type',
      'esm',
      '--payload',
      join(dir, 'patch.mjs'),
      '--signer',
      'example-ci',
      '--json',
    ]);
    assert.equal(pack.status, 0, show(pack));
    const sign = await hotpatch(['sign', '--repo', env.HOTPATCH_REPO!, '--id', 'pricing-fix-1', '--key', join(dir, 'keys', 'example-ci.key'), '--json']);
    assert.equal(sign.status, 0, show(sign));

    const { service, ready } = await startService(env);
    try {
      const api = String(ready.api);
      assert.match(String(ready.agent), /^http:\/\/127\.0\.0\.1:\d+$/);
      assert.deepEqual(ready.active, { version: '1.0.0', patchId: null });
      // The built-in's bug: exactly 10 units get no discount.
      assert.deepEqual(await quoteOf(api, 10), {
        sku: 'widget',
        quantity: 10,
        unitCents: 250,
        discountPercent: 0,
        totalCents: 2500,
        currency: 'EUR',
        engine: '1.0.0',
      });

      const apply = hotpatch(
        [
          'apply',
          '--agent',
          String(ready.agent),
          '--token-file',
          env.HOTPATCH_TOKEN_FILE!,
          '--target',
          TARGET,
          '--patch',
          'pricing-fix-1',
          '--steps',
          '0.5,1',
          '--canary-interval',
          '20',
          '--min-calls-per-step',
          '5',
          '--min-calls',
          '0',
          '--warmup-calls',
          '0',
          '--max-latency-shift',
          '1000',
          '--probation',
          '0',
          '--json',
        ],
        { timeoutMs: 60_000 },
      );
      const traffic = await clients(api, apply);
      const applied = await apply;
      assert.equal(applied.status, 0, show(applied));
      assert.equal(applied.json?.status, 'activated', show(applied));
      assert.deepEqual(traffic.bad, [], 'no request failed while the patch was applied');
      // Both versions answered live calls: the canary really routed traffic to the candidate.
      assert.deepEqual([...traffic.engines].sort(), ['1.0.0', '1.0.1']);

      // The fix, with the host's prices and currency that reached it through ctx.config.
      assert.deepEqual(await quoteOf(api, 10), {
        sku: 'widget',
        quantity: 10,
        unitCents: 250,
        discountPercent: 10,
        totalCents: 2250,
        currency: 'EUR',
        engine: '1.0.1',
      });
      assert.deepEqual(JSON.parse((await getText(`${api}/version`)).body), { target: TARGET, version: '1.0.1', patchId: 'pricing-fix-1', canary: false });
      const metrics = await getText(`${api}/metrics`);
      assert.match(metrics.body, /hotpatch_active_version_info\{target="example\.pricing\.quote",version="1\.0\.1"\} 1/);

      const stopped = await stopService(service);
      assert.deepEqual(stopped, { code: 0, signal: null }, service.stderr());
      assert.deepEqual(service.lines.find((l) => l.event === 'stopped')?.active, { version: '1.0.1', patchId: 'pricing-fix-1' });
    } finally {
      service.child.kill('SIGKILL');
    }

    // A restart: the agent restores (and re-verifies) the patch; its init gets the config again.
    const restarted = await startService(env);
    try {
      assert.deepEqual(restarted.ready.active, { version: '1.0.1', patchId: 'pricing-fix-1' });
      assert.equal((await quoteOf(String(restarted.ready.api), 100)).totalCents, 18750);
      assert.deepEqual(await stopService(restarted.service), { code: 0, signal: null }, restarted.service.stderr());
    } finally {
      restarted.service.child.kill('SIGKILL');
    }
  });
});

/** `node ARGS` in a child process; the last stdout line parsed as JSON when it is. */
function runNode(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string; json: Record<string, unknown> | undefined }> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (status) => {
      let json: Record<string, unknown> | undefined;
      try {
        json = JSON.parse(stdout.trim().split('\n').pop() ?? '') as Record<string, unknown>;
      } catch {
        json = undefined; // not JSON: the assertion shows stdout
      }
      resolveRun({ status, stdout, stderr, json });
    });
  });
}

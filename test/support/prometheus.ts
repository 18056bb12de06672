/*
 * Debian's real Prometheus for tests: started on a loopback port the test picks, scraping one
 * agent every second with its bearer token (job "hotpatch-agent"), with rule files loaded and
 * evaluated every second; queried through its HTTP API; stopped by the test.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { access, constants, writeFile } from 'node:fs/promises';
import { delimiter, join } from 'node:path';

export interface RunningPrometheus {
  port: number;
  /** Instant query: the result vector ([] while nothing matches or Prometheus is not up yet). */
  query(expr: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]>;
  /** Alerts in every state, as /api/v1/alerts lists them. */
  alerts(): Promise<{ labels: Record<string, string>; annotations: Record<string, string>; state: string }[]>;
  /** What Prometheus printed so far (for a failing assertion's message). */
  log(): string;
  stop(): Promise<void>;
}

/** The prometheus binary (PATH, then /usr/bin), or an error saying how to install it. */
export async function findPrometheus(name = 'prometheus'): Promise<string> {
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter((d) => d !== ''), '/usr/bin'];
  for (const dir of dirs) {
    const candidate = join(dir, name);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here; try the next directory
    }
  }
  throw new Error(`${name} is not installed (not on PATH, not /usr/bin/${name}): install it with apt-get install -y prometheus`);
}

/** Runs `promtool args…`; its exit status and output. */
export async function promtool(args: string[], cwd?: string): Promise<{ status: number | null; output: string }> {
  const binary = await findPrometheus('promtool');
  const r = spawnSync(binary, args, { encoding: 'utf8', ...(cwd === undefined ? {} : { cwd }) });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

export async function startPrometheus(options: {
  dir: string;
  port: number;
  agentPort: number;
  tokenFile: string;
  ruleFiles?: string[];
}): Promise<RunningPrometheus> {
  const binary = await findPrometheus();
  const config = join(options.dir, 'prometheus.yml');
  await writeFile(
    config,
    [
      'global:',
      '  scrape_interval: 1s',
      '  evaluation_interval: 1s',
      ...(options.ruleFiles === undefined ? [] : ['rule_files:', ...options.ruleFiles.map((f) => `  - ${JSON.stringify(f)}`)]),
      'scrape_configs:',
      '  - job_name: hotpatch-agent',
      '    metrics_path: /metrics',
      '    scheme: http',
      '    authorization:',
      '      type: Bearer',
      `      credentials_file: ${JSON.stringify(options.tokenFile)}`,
      '    static_configs:',
      `      - targets: ['127.0.0.1:${options.agentPort}']`,
      '',
    ].join('\n'),
  );
  let log = '';
  const child: ChildProcess = spawn(
    binary,
    [`--config.file=${config}`, `--storage.tsdb.path=${join(options.dir, 'tsdb')}`, `--web.listen-address=127.0.0.1:${options.port}`, '--log.level=warn'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (log += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (log += d));
  const api = async <T>(path: string): Promise<T | undefined> => {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`prometheus exited (${child.exitCode ?? child.signalCode}):\n${log}`);
    try {
      const res = await fetch(`http://127.0.0.1:${options.port}${path}`, { signal: AbortSignal.timeout(2_000) });
      const body = (await res.json()) as { status: string; data: T };
      return body.status === 'success' ? body.data : undefined;
    } catch {
      return undefined; // not listening yet
    }
  };
  return {
    port: options.port,
    async query(expr) {
      const data = await api<{ result: { metric: Record<string, string>; value: [number, string] }[] }>(`/api/v1/query?query=${encodeURIComponent(expr)}`);
      return data?.result ?? [];
    },
    async alerts() {
      const data = await api<{ alerts: { labels: Record<string, string>; annotations: Record<string, string>; state: string }[] }>('/api/v1/alerts');
      return data?.alerts ?? [];
    },
    log: () => log,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants, closeSync, openSync } from 'node:fs';
import { mkdir, mkdtemp, open, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

/**
 * A real etcd cluster on loopback for tests: every member has its own free ports, its own
 * temporary data directory and its own log file (`<dataDir>/etcd.log`, whose tail is put in
 * every error). Shared by the store, approval and fleet tests.
 *
 * Missing etcd is an error, never a skip: `.ci/run` installs Debian's `etcd-server`.
 */

export interface EtcdMember {
  readonly name: string;
  /** `http://127.0.0.1:PORT`, what clients connect to. */
  readonly clientUrl: string;
  readonly peerUrl: string;
  /** etcd's `--data-dir`; also holds `etcd.log`. */
  readonly dataDir: string;
  /** SIGKILL (a crash, no graceful leave); resolves when the process has exited. */
  kill(): Promise<void>;
  /**
   * Restarts the member on the same ports and data dir (`--initial-cluster-state existing`).
   * Resolves when it answers on its client URL and, if a quorum of members is running, once
   * it reports healthy (it has a leader and serves a linearizable read).
   */
  start(): Promise<void>;
  readonly running: boolean;
}

export interface EtcdCluster {
  /** Client URLs of every member, `http://127.0.0.1:PORT`. */
  readonly endpoints: string[];
  readonly members: EtcdMember[];
  /**
   * The member that is the Raft leader now, as the running members report it (undefined
   * when none answers or they have no leader). For tests that kill the leader, or spare it.
   */
  leader(): Promise<EtcdMember | undefined>;
  /** Kills every member and removes the data directories. */
  stop(): Promise<void>;
}

export interface StartEtcdClusterOptions {
  /** Number of members (default 3). */
  members?: number;
  /** How long to wait for the cluster to become healthy (default 20 s). */
  timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 20_000;

/** Every etcd we started, killed if the test process exits without stopping its cluster. */
const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of live) {
      try {
        child.kill('SIGKILL');
      } catch {
        // already gone: nothing left to clean up
      }
    }
  });
}

/** The etcd binary: the first `etcd` on PATH, else /usr/bin/etcd. */
export function findEtcd(): string {
  const dirs = (process.env.PATH ?? '').split(delimiter).filter((d) => d.length > 0);
  for (const candidate of [...dirs.map((d) => join(d, 'etcd')), '/usr/bin/etcd']) {
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here; try the next directory
    }
  }
  throw new Error('etcd not found: install it with apt-get install -y etcd-server');
}

/** Go's GOARCH for the few arches etcd calls "unsupported" (it refuses to start without this). */
function unsupportedArchEnv(): Record<string, string> {
  const arch = process.arch;
  if (arch === 'x64' || arch === 'arm64' || process.env.ETCD_UNSUPPORTED_ARCH !== undefined) return {};
  const goArch: Record<string, string> = { ia32: '386', ppc64: 'ppc64le', mipsel: 'mipsle' };
  return { ETCD_UNSUPPORTED_ARCH: goArch[arch] ?? arch };
}

/** `count` distinct free loopback ports (all listeners are held open until every port is known). */
async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
          const server = createServer();
          server.once('error', reject);
          server.listen(0, '127.0.0.1', () => resolve(server));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  return ports;
}

/** The last `maxBytes` of a log file, for error messages. */
export async function logTail(file: string, maxBytes = 3000): Promise<string> {
  try {
    const handle = await open(file, 'r');
    try {
      const { size } = await handle.stat();
      const start = Math.max(0, size - maxBytes);
      const buffer = Buffer.alloc(size - start);
      await handle.read(buffer, 0, buffer.length, start);
      return buffer.toString('utf8');
    } finally {
      await handle.close();
    }
  } catch (error) {
    return `(no log: ${(error as Error).message})`;
  }
}

/** GET `url`; resolves to status and body, or undefined when nothing answers within `timeoutMs`. */
function httpGet(url: string, timeoutMs: number): Promise<{ status: number; body: string } | undefined> {
  return new Promise((resolve) => {
    const req = request(url, { method: 'GET', timeout: timeoutMs, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', () => resolve(undefined));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
    req.end();
  });
}

async function isHealthy(clientUrl: string): Promise<boolean> {
  const res = await httpGet(`${clientUrl}/health`, 1000);
  if (res === undefined || res.status !== 200) return false;
  try {
    return (JSON.parse(res.body) as { health?: unknown }).health === 'true';
  } catch {
    return false;
  }
}

/** POST `body` to `url`; the response body, or undefined. */
function httpPost(url: string, body: string, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const req = request(url, { method: 'POST', timeout: timeoutMs, agent: false, headers: { 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        text += chunk;
      });
      res.on('end', () => resolve(res.statusCode === 200 ? text : undefined));
      res.on('error', () => resolve(undefined));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
    req.end(body);
  });
}

/** A member's own id and its leader's id (etcd's maintenance status through the gRPC gateway). */
async function memberStatus(clientUrl: string): Promise<{ id: string; leader: string } | undefined> {
  const text = await httpPost(`${clientUrl}/v3/maintenance/status`, '{}', 1000);
  if (text === undefined) return undefined;
  try {
    const status = JSON.parse(text) as { header?: { member_id?: unknown }; leader?: unknown };
    const id = status.header?.member_id;
    const leader = status.leader;
    return typeof id === 'string' && typeof leader === 'string' ? { id, leader } : undefined;
  } catch {
    return undefined;
  }
}

async function answers(clientUrl: string): Promise<boolean> {
  return (await httpGet(`${clientUrl}/version`, 1000)) !== undefined;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

class Member implements EtcdMember {
  readonly logFile: string;
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private started = false;

  constructor(
    readonly name: string,
    readonly clientUrl: string,
    readonly peerUrl: string,
    readonly dataDir: string,
    private readonly binary: string,
    private readonly cluster: { initialCluster: string; token: string; timeoutMs: number; members: () => Member[] },
  ) {
    this.logFile = join(dataDir, 'etcd.log');
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  /** Spawns the process (`state` = `new` the first time, `existing` on a restart). */
  spawn(state: 'new' | 'existing'): void {
    if (this.child !== undefined) throw new Error(`etcd member ${this.name} is already running`);
    const args = [
      '--name',
      this.name,
      '--data-dir',
      this.dataDir,
      '--listen-client-urls',
      this.clientUrl,
      '--advertise-client-urls',
      this.clientUrl,
      '--listen-peer-urls',
      this.peerUrl,
      '--initial-advertise-peer-urls',
      this.peerUrl,
      '--initial-cluster',
      this.cluster.initialCluster,
      '--initial-cluster-token',
      this.cluster.token,
      '--initial-cluster-state',
      state,
      '--heartbeat-interval',
      '50',
      '--election-timeout',
      '500',
      '--logger',
      'zap',
      '--log-outputs',
      'stderr',
    ];
    const fd = openSync(this.logFile, 'a');
    let child: ChildProcess;
    try {
      child = spawn(this.binary, args, {
        stdio: ['ignore', fd, fd],
        env: { ...process.env, ...unsupportedArchEnv() },
      });
    } finally {
      closeSync(fd);
    }
    installExitHook();
    live.add(child);
    this.child = child;
    this.started = true;
    this.exited = new Promise<void>((resolve) => {
      const done = (): void => {
        live.delete(child);
        if (this.child === child) this.child = undefined;
        resolve();
      };
      child.once('exit', done);
      child.once('error', done);
    });
  }

  /** Waits until the member answers on its client URL, and is healthy when `healthy`. */
  async waitReady(healthy: boolean, deadline: number): Promise<void> {
    while (Date.now() < deadline) {
      if (this.child === undefined) {
        throw new Error(`etcd member ${this.name} exited during startup; log tail:\n${await logTail(this.logFile)}`);
      }
      if (healthy ? await isHealthy(this.clientUrl) : await answers(this.clientUrl)) return;
      await sleep(50);
    }
    throw new Error(
      `etcd member ${this.name} (${this.clientUrl}) not ${healthy ? 'healthy' : 'answering'} after ${this.cluster.timeoutMs} ms; log tail:\n${await logTail(this.logFile)}`,
    );
  }

  async kill(): Promise<void> {
    const child = this.child;
    if (child === undefined) return;
    child.kill('SIGKILL');
    await this.exited;
  }

  async start(): Promise<void> {
    if (this.child !== undefined) return;
    this.spawn(this.started ? 'existing' : 'new');
    const deadline = Date.now() + this.cluster.timeoutMs;
    await this.waitReady(false, deadline);
    const members = this.cluster.members();
    const running = members.filter((m) => m.running).length;
    if (running > members.length / 2) await this.waitReady(true, deadline);
  }
}

/**
 * Starts a cluster of `members` etcd processes on loopback and waits until every member is
 * healthy. Always `stop()` it (in `after()`): it kills the processes and removes the data.
 */
export async function startEtcdCluster(options: StartEtcdClusterOptions = {}): Promise<EtcdCluster> {
  const count = options.members ?? 3;
  if (!Number.isInteger(count) || count < 1 || count > 9) throw new Error(`members must be an integer from 1 to 9, got ${count}`);
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const binary = findEtcd();
  const root = await mkdtemp(join(tmpdir(), 'hotpatch-etcd-'));
  const ports = await freePorts(count * 2);
  const token = `hotpatch-test-${randomBytes(6).toString('hex')}`;
  const names = Array.from({ length: count }, (_, i) => `m${i}`);
  const peerUrls = names.map((_, i) => `http://127.0.0.1:${ports[2 * i + 1]!}`);
  const initialCluster = names.map((n, i) => `${n}=${peerUrls[i]!}`).join(',');
  const members: Member[] = [];
  const shared = { initialCluster, token, timeoutMs, members: () => members };
  for (const [i, name] of names.entries()) {
    const dataDir = join(root, name);
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    members.push(new Member(name, `http://127.0.0.1:${ports[2 * i]!}`, peerUrls[i]!, dataDir, binary, shared));
  }

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await Promise.all(members.map((m) => m.kill()));
    await rm(root, { recursive: true, force: true });
  };

  try {
    for (const m of members) m.spawn('new');
    const deadline = Date.now() + timeoutMs;
    await Promise.all(members.map((m) => m.waitReady(true, deadline)));
  } catch (error) {
    // Keep the logs in the message, then clean up: a failed start leaves nothing behind.
    await stop();
    throw error;
  }

  const leader = async (): Promise<EtcdMember | undefined> => {
    const statuses = await Promise.all(members.map(async (m) => (m.running ? { m, status: await memberStatus(m.clientUrl) } : undefined)));
    const known = statuses.filter((s) => s?.status !== undefined) as Array<{ m: Member; status: { id: string; leader: string } }>;
    const leaderId = known.find((s) => s.status.leader !== '0')?.status.leader;
    return known.find((s) => s.status.id === leaderId)?.m;
  };

  return { endpoints: members.map((m) => m.clientUrl), members, leader, stop };
}

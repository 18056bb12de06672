/*
 * The pm2 side of the peer-reload benchmark: pm2 from node_modules with its own PM2_HOME in the
 * temp directory (never the user's daemon), the service started as a plain app in cluster mode
 * (2 instances), its code file rewritten to v2 and `pm2 reload` under load; and the daemon
 * killed at the end (`pm2 kill`, by pid should that fail or the run be interrupted).
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { PACKAGE_ROOT } from './fixtures.js';
import { get, underLoad } from './peer-load.js';
import { atExit, freePort, runCommand, tail, type Ran } from './peer-processes.js';
import { PM2, PATH, SERVICE, codeSource, nowMs, sleep, type Pm2Way, type Round, type Setup } from './peer-round.js';

const PM2_APP = 'peer-bench';

/** pm2's command (from node_modules: a dev dependency). */
export function pm2Bin(): string {
  try {
    const pkg = createRequire(import.meta.url).resolve('pm2/package.json');
    return join(pkg, '..', 'bin', 'pm2');
  } catch {
    throw new Error('peer-reload needs pm2 (a dev dependency of this package): run `npm ci` (or `npm install`) first');
  }
}

/** `<PM2_HOME>/pm2.pid` while our pm2 daemon may run. */
let pm2PidFile: string | undefined;

/** Kills the pm2 daemon named by our PM2_HOME's pid file, if it still runs (its cluster workers exit when it goes). */
function killPm2Daemon(): void {
  if (pm2PidFile === undefined || !existsSync(pm2PidFile)) return;
  const pid = Number(readFileSync(pm2PidFile, 'utf8').trim());
  if (!Number.isSafeInteger(pid) || pid <= 1) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** Makes `<dir>/pm2` our PM2_HOME (its daemon killed by the exit hook) and returns pm2's environment. */
export async function makePm2Home(dir: string): Promise<NodeJS.ProcessEnv> {
  const pm2Home = join(dir, 'pm2');
  await mkdir(pm2Home);
  pm2PidFile = join(pm2Home, 'pm2.pid');
  atExit(killPm2Daemon);
  return { ...process.env, PM2_HOME: pm2Home, PM2_DISABLE_VERSION_CHECK: 'true' };
}

/** `pm2 kill` when a daemon may have started, its pid killed should that fail. */
export async function stopPm2(s: Setup): Promise<void> {
  if (s.pm2Started) {
    const killed = await runCommand(process.execPath, [s.pm2, 'kill'], s.pm2Env, 30_000).catch((error: unknown) => ({
      status: null,
      stdout: '',
      stderr: (error as Error).message,
    }));
    if (killed.status !== 0) {
      console.log(`pm2 kill exited ${killed.status}: ${tail(killed.stdout + killed.stderr)}; killing its daemon by pid`);
      killPm2Daemon();
    }
  }
  pm2PidFile = undefined;
}

async function pm2(s: Setup, args: readonly string[]): Promise<Ran> {
  const r = await runCommand(process.execPath, [s.pm2, ...args], s.pm2Env);
  if (r.status !== 0) throw new Error(`pm2 ${args.join(' ')} exited ${r.status}: ${tail(r.stdout + r.stderr)}`);
  return r;
}

/** One round of `pm2 reload`: a fresh app under `<dir>/<label>`, deleted from pm2 afterwards. */
export async function pm2Round(s: Setup, way: Pm2Way, label: string): Promise<Round> {
  const dir = join(s.dir, label);
  await mkdir(dir, { recursive: true });
  const code = join(dir, 'page.mjs');
  await writeFile(code, codeSource('v1'));
  const port = await freePort();
  const ecosystem = join(dir, 'ecosystem.json');
  await writeFile(
    ecosystem,
    JSON.stringify({
      apps: [
        {
          name: PM2_APP,
          script: SERVICE,
          cwd: PACKAGE_ROOT,
          exec_mode: 'cluster',
          instances: 2,
          env: { PEER_MODE: 'plain', PEER_CODE: code, PEER_PORT: String(port), PEER_STOP: way === PM2 ? 'drain' : 'close' },
          out_file: join(dir, 'out.log'),
          error_file: join(dir, 'err.log'),
        },
      ],
    }),
  );
  s.pm2Started = true;
  await pm2(s, ['start', ecosystem]);
  try {
    // Both instances answering (v1) before the load starts.
    const pids = new Set<number>();
    const deadline = nowMs() + 30_000;
    while (pids.size < 2) {
      if (nowMs() > deadline)
        throw new Error(`${way}: the app did not answer from 2 instances within 30 s (saw ${pids.size}): ${tail(readFileSync(join(dir, 'err.log'), 'utf8'))}`);
      try {
        const a = await get(port, PATH, false, 1000);
        if (a.status === 200 && a.code === 'v1') pids.add(a.pid);
      } catch {
        // not listening yet
      }
      await sleep(50);
    }
    const r = await underLoad(s, port, way, async () => {
      // The new code on disk (atomically, as a deploy would), then the reload.
      const next = `${code}.next`;
      await writeFile(next, codeSource('v2'));
      await rename(next, code);
      const startAt = nowMs();
      await pm2(s, ['reload', PM2_APP]);
      return { startAt, endAt: nowMs() };
    });
    return { ...r, agentAt: undefined, events: new Map() };
  } finally {
    await runCommand(process.execPath, [s.pm2, 'delete', PM2_APP], s.pm2Env);
  }
}

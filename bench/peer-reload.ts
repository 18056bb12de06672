/*
 * Benchmark 10 — peer-reload: replacing the code of a live HTTP service, `hotpatch apply`
 * against `pm2 reload`, under the same load.
 *
 * The service (bench/peer-service.ts): HTTP on 127.0.0.1, every answer `<code> <sha256 of the
 * URL> <count>`, where `<code>` marks the code that computed it (v1, then v2 after the swap) and
 * `<count>` is an in-memory session counter (requests the process has served). Load: `wrk`
 * (Debian's package), 2 threads and 32 keep-alive connections, with a Lua script that reads
 * every answer's headers and records, on the wall clock (gettimeofday through LuaJIT's ffi),
 * when the first v2 answer and the last v1 answer arrived, the lowest counter a v2 answer
 * carried, and answers per 100 ms. Beside it a probe (one request every 10 ms from this
 * process) gives the counter just before the swap. The code is replaced once per run, four
 * ways, each on a fresh service, the ways interleaved round by round:
 *   - `hotpatch apply --steps 1`: the real CLI (dist/src/cli/main.js) against the service's
 *     agent (loopback HTTP + token file), applying a really signed v2 (packPatch + signPatch, a
 *     trust store of one Ed25519 key): fetch, verify, stage, load, self-test, one canary step
 *     at 100 %, promote;
 *   - `hotpatch apply` with the default canary steps (0.4 %, 5 %, 25 %, 50 %, then promotion);
 *   - `pm2 reload` (pm2 from npm, a dev dependency, with its own PM2_HOME in the temp
 *     directory): the same service as a plain app in cluster mode, 2 instances, its code file
 *     rewritten to v2 and then `pm2 reload`. On pm2's SIGINT the old process answers with
 *     `connection: close`, stops accepting and exits once its connections are gone (a drain);
 *   - the same, with the app stopping by `server.close()` as pm2's documentation shows: in
 *     Node 20 that also closes idle keep-alive connections at once, racing requests clients are
 *     sending on them (the failed requests of the earlier measurement, 43).
 * Reported per way (median over rounds, best round beside it):
 *   - new code serving: until every answer comes from v2 (the later of the last v1 answer and
 *     the first v2 answer wrk received), timed from the command's start (`pm2 reload`; the
 *     hotpatch CLI) and, for hotpatch, from the agent receiving the request (the `ts` of its
 *     `Requested` event, taken once the request is read, before it is recorded); the first v2
 *     answer is in the note;
 *   - failed requests: wrk's non-2xx/3xx answers plus its socket errors (connect, read, write,
 *     timeout);
 *   - state kept: every v2 answer's counter is above the counter the probe saw just before the
 *     swap began (the counter went on; not reset);
 *   - throughput: wrk's answers per second over the whole run (during the swap in the note);
 *   - for --steps 1, where the time goes: CLI start → agent receipt → canary started (v2
 *     serving every call) → promoted → CLI exit, from the events the service's runtime
 *     published (printed per run, with every event, as ms from the agent's receipt).
 * Goals (reported, not asserted): hotpatch --steps 1 serves the new code ≥ 100× sooner than pm2
 * reload (the draining app: pm2 at its best; hotpatch timed from the agent receiving the
 * request, pm2 from `pm2 reload` start); 0 failed requests and the counter kept for both
 * hotpatch ways.
 *
 * Needs `wrk` (installed with apt-get when missing and running as root with apt-get, as
 * .ci/run does; otherwise the benchmark stops saying how to install it) and pm2 (`npm ci`).
 * Every process it starts — services, wrk, the CLI, the pm2 daemon (`pm2 kill`) — is stopped
 * and the temp directory removed in `finally`, and by an exit hook if the run is interrupted.
 *
 * --quick: 1 round of each way, wrk running at least 4 s, the swap 1 s after it starts and at
 * least 1 s of load after the swap (about 25 s in all). Full: 3 rounds, at least 10 s of load
 * per run, the swap 3 s in, at least 2 s after it.
 *
 * This file sets the run up and runs the rounds; the parts: peer-round.ts (the ways, what a
 * round records), peer-wrk.ts (wrk and its Lua script), peer-load.ts (the load and probe
 * around one swap), peer-hotpatch.ts and peer-pm2.ts (the two ways of swapping),
 * peer-processes.ts (child processes and their cleanup), peer-report.ts (lines and rows).
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { withTempDir, type Row } from './harness.js';
import { hotpatchRound, makeSignedV2 } from './peer-hotpatch.js';
import { makePm2Home, pm2Bin, pm2Round, stopPm2 } from './peer-pm2.js';
import { describe, eventLine, reportRows } from './peer-report.js';
import { HP1, HPD, PATH, PM2, PM2C, SERVICE, type Round, type RoundTiming, type Setup, type Way } from './peer-round.js';
import { CONNECTIONS, THREADS, WRK_SCRIPT, ensureWrk } from './peer-wrk.js';

const QUICK: RoundTiming = { rounds: 1, minRunMs: 4000, beforeMs: 1000, afterMs: 1000 };
const FULL: RoundTiming = { rounds: 3, minRunMs: 10_000, beforeMs: 3000, afterMs: 2000 };

export async function run(options: { quick?: boolean } = {}): Promise<Row[]> {
  const timing = options.quick === true ? QUICK : FULL;
  const wrk = ensureWrk();
  const pm2Path = pm2Bin();
  if (!existsSync(SERVICE)) throw new Error(`${SERVICE} is missing: run \`npm run build\` first`);
  return withTempDir('xps-bench-peer-', async (dir) => {
    const s: Setup = {
      dir,
      wrk,
      script: join(dir, 'peer.lua'),
      pm2: pm2Path,
      pm2Env: await makePm2Home(dir),
      repo: join(dir, 'repo'),
      trust: join(dir, 'trust.json'),
      tokenFile: join(dir, 'agent.token'),
      v1: join(dir, 'page-v1.mjs'),
      v2: join(dir, 'page-v2.mjs'),
      timing,
      pm2Started: false,
    };
    await writeFile(s.script, WRK_SCRIPT);
    await makeSignedV2(s);
    const expected = createHash('sha256').update(PATH).digest('hex');
    console.log(
      `service answers "<v1|v2> ${expected.slice(0, 12)}… <count>" for ${PATH}; wrk -t${THREADS} -c${CONNECTIONS}; ${timing.rounds} round(s) of each way`,
    );

    // The ways interleaved round by round, so a burst of load from elsewhere hits them alike.
    const rounds: Round[] = [];
    const labels: Record<Way, string> = { [HP1]: 'hp1', [HPD]: 'hpd', [PM2]: 'pm2', [PM2C]: 'pm2c' };
    try {
      for (let i = 1; i <= timing.rounds; i++) {
        for (const way of [HP1, HPD, PM2, PM2C] as const) {
          const label = `${labels[way]}-${i}`;
          const r = way === PM2 || way === PM2C ? await pm2Round(s, way, label) : await hotpatchRound(s, way, label);
          rounds.push(r);
          console.log(`  ${way}, round ${i}: ${describe(r)}`);
          if (way === HP1) console.log(eventLine(r));
        }
      }
    } finally {
      await stopPm2(s);
    }
    return reportRows(rounds);
  });
}

/*
 * A host process for the operator CLI and crash tests: a service that declares
 * `xps.crypto.hash.sha256`, embeds the agent on a Unix socket, and calls its own target in a
 * loop (live traffic the canary judges). Stdout carries one JSON object per line:
 *
 *   {"event":"ready","address":"unix:…","restored":[…],"plans":[…]}   once the agent serves
 *   {"event":"bus","type":…}               every bus event, when config.printEvents
 *   {"event":"flushed","seq":N,"pendingAppends":N,"journal":"fulfilled"|"rejected"}
 *                                          after SIGUSR2: audit appends and the journal written if they can be
 *   {"event":"stopped","calls":N,"errors":N,"wrong":N}   after SIGTERM, then exit 0
 *
 *   node agent-host.js '<HostConfig JSON>'
 *
 * `runLoop: true` runs the planner's loop (every 20 ms) once the agent serves, so plans left
 * pending by a crash run again on their own, as in a service that resumes its plans.
 * `killOn: "<EventType>"` makes the process SIGKILL itself inside the (synchronous) bus
 * listener the first time that event is published: a crash at an exact point of a plan.
 * Exit status: 0 after SIGTERM, 5 when the agent failed to start (the error is printed).
 */
import { startAgent, type Agent } from '../../src/agent/index.js';
import { HotPatchError } from '../../src/core/index.js';
import { hostRuntime, sha, type HostConfig } from './helpers.js';

function out(line: Record<string, unknown>): void {
  // stdout is a pipe: writes are synchronous on Linux, so a line is out before the next step.
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

const config = JSON.parse(process.argv[2] ?? '{}') as HostConfig;
const { runtime, target, bus } = hostRuntime(config.stateDir);

// Subscribed before the agent, so this listener runs first for every event.
bus.subscribe((e) => {
  if (config.printEvents === true) out({ event: 'bus', type: e.type, id: e.id, version: e.version, reason: e.reason });
  if (config.killOn !== undefined && e.type === config.killOn) {
    out({ event: 'self-kill', on: e.type, id: e.id });
    process.kill(process.pid, 'SIGKILL');
  }
});

// Live traffic: bursts of calls, each checked against the right answer.
let calls = 0;
let errors = 0;
let wrong = 0;
const load = setInterval(() => {
  for (let k = 0; k < 25; k++) {
    const input = `m${calls}`;
    calls += 1;
    try {
      if (target.api.digest(input) !== sha(input)) wrong += 1;
    } catch {
      errors += 1;
    }
  }
}, 1);

let agent: Agent;
try {
  agent = await startAgent({
    stateDir: config.stateDir,
    runtime,
    socketPath: config.socketPath,
    defaults: { repository: config.repoDir, trustStore: config.trustFile },
    log: false,
  });
} catch (error) {
  clearInterval(load);
  out({ event: 'start-failed', code: error instanceof HotPatchError ? error.code : 'INTERNAL', message: (error as Error).message });
  process.exit(5);
}

const loop = new AbortController();
const looping = config.runLoop === true ? agent.planner.runLoop(loop.signal, 20) : Promise.resolve();

process.on('SIGUSR2', () => {
  // Audit appends (kept ones too) and the journal: what is in memory reaches the disk if it can.
  void Promise.allSettled([agent.audit.flush(), agent.planner.flush()]).then(([, journal]) =>
    out({ event: 'flushed', seq: agent.audit.seq, pendingAppends: agent.audit.pendingAppends, journal: journal.status }),
  );
});

process.once('SIGTERM', () => {
  clearInterval(load);
  loop.abort();
  void looping
    .then(() => agent.close())
    .then(() => {
      out({ event: 'stopped', calls, errors, wrong, active: { version: target.active.version, patchId: target.active.patchId } });
      process.exitCode = 0;
    })
    .catch((error: unknown) => {
      out({ event: 'stop-failed', message: (error as Error).message });
      process.exitCode = 6;
    });
});

// Ready last: a test may signal the host as soon as it reads this line, so every handler is in place first.
out({
  event: 'ready',
  address: agent.address,
  pid: process.pid,
  active: { version: target.active.version, patchId: target.active.patchId },
  plans: agent.planner.plans().map((p) => ({ id: p.plan.id, status: p.status, reason: p.reason, patchId: p.patchId })),
});

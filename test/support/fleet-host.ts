/*
 * A service process for the fleet tests: one hot-swappable target (`xps.crypto.hash.sha256`,
 * built-in SHA-256), its own traffic (calls every few milliseconds, so a canary has calls to
 * judge), and an agent that joins the fleet by configuration — `startAgent({ fleet })` —
 * exactly as a host would. Configured by one JSON argument (HostConfig); prints JSON lines on
 * stdout: `{"event":"ready", …}`, then one `{"event":"hotpatch", …}` per bus event, and
 * `{"event":"calls", failed}` every second. Stops on SIGTERM (a graceful close).
 */
import { createHash } from 'node:crypto';
import { startAgent } from '../../src/agent/index.js';
import { DynamicInstaller } from '../../src/installer/index.js';
import { HotPatchRuntime } from '../../src/zero-downtime/index.js';
import { HOST_TARGET, type HostConfig } from './fleet-processes.js';

const sha256hex = (s: string): string => createHash('sha256').update(s).digest('hex');
const ABC = sha256hex('abc');

async function main(): Promise<void> {
  const config = JSON.parse(process.argv[2] ?? '{}') as HostConfig;
  const runtime = new HotPatchRuntime({ stateDir: config.stateDir, installer: new DynamicInstaller(config.stateDir) });
  const target = runtime.target<{ digest(s: string): string }>(HOST_TARGET, {
    version: '1.0.0',
    impl: { digest: sha256hex },
    deterministic: true,
    selfTest: (api) => {
      if (api.digest('abc') !== ABC) throw new Error('host KAT abc');
    },
  });
  runtime.bus.subscribe((e) => process.stdout.write(`${JSON.stringify({ event: 'hotpatch', ...e })}\n`));
  const agent = await startAgent({
    stateDir: config.stateDir,
    runtime,
    defaults: { repository: config.repository, trustStore: config.trustStore },
    log: false,
    fleet: {
      store: config.store,
      ring: config.ring,
      agentId: config.agentId,
      ...(config.key === undefined ? {} : { key: config.key }),
      leaseTtlMs: config.leaseTtlMs ?? 2000,
      reportIntervalMs: config.reportIntervalMs ?? 100,
      resyncMs: 3000,
    },
  });
  // Traffic: every call's answer is checked against SHA-256, the way a client would notice a bad fix.
  let calls = 0;
  let failed = 0;
  const traffic = setInterval(() => {
    for (let i = 0; i < 20; i++) {
      const input = `call ${calls++}`;
      try {
        if (target.api.digest(input) !== sha256hex(input)) failed++;
      } catch {
        failed++;
      }
    }
  }, 5);
  const report = setInterval(() => process.stdout.write(`${JSON.stringify({ event: 'calls', calls, failed })}\n`), 1000);
  process.stdout.write(`${JSON.stringify({ event: 'ready', agent: agent.address, agentId: config.agentId, ring: config.ring, pid: process.pid })}\n`);
  process.once('SIGTERM', () => {
    clearInterval(traffic);
    clearInterval(report);
    void agent.close().then(
      () => process.exit(0),
      (error: unknown) => {
        process.stderr.write(`close failed: ${String(error)}\n`);
        process.exit(1);
      },
    );
  });
}

main().catch((error: unknown) => {
  process.stderr.write(`fleet host failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});

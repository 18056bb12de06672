/*
 * An example service embedding xps-hotpatch: it declares one hot-swappable target (price
 * quotes), serves a small HTTP API on it, and embeds the agent, through which an operator
 * applies signed patches (`hotpatch apply --agent …`) while the service keeps answering.
 *
 * Settings (the service's own, from its environment; patches get theirs from the target's
 * `config`, never from here):
 *   PORT                 API port (default 8080; 0 picks a free one, reported in the ready line)
 *   API_HOST             API address (default 127.0.0.1; a container sets 0.0.0.0)
 *   HOTPATCH_STATE_DIR   state directory, kept across restarts (default ./pricing-state)
 *   HOTPATCH_REPO        patch repository directory (required)
 *   HOTPATCH_TRUST       trust store file (required)
 *   HOTPATCH_TOKEN_FILE  the agent's operator token (a 0600/0400 file): the agent serves on
 *                        loopback HTTP; unset, on the Unix socket <state>/agent.sock
 *   HOTPATCH_AGENT_PORT  the agent's loopback port (default 7070; 0 picks one)
 *
 * Stdout carries one JSON line per lifecycle step ({"event":"ready",…}, {"event":"stopped"});
 * the agent's event log goes to stderr (JSON lines). SIGTERM or SIGINT stops it cleanly:
 * exit 0. Exit 2: bad settings; 1: the start failed.
 */
import { once } from 'node:events';
import { resolve } from 'node:path';
import { HotPatchError } from 'xps-hotpatch';
import { startAgent } from 'xps-hotpatch/agent';
import { DynamicInstaller, HotPatchRuntime } from 'xps-hotpatch/runtime';
import { createApiServer } from './http-api.js';
import { BUILTIN_VERSION, PRICING_CONFIG, PRICING_TARGET, builtinPricing, isSaneQuote, pricingSelfTest, type PricingApi } from './pricing.js';

interface Settings {
  apiHost: string;
  port: number;
  stateDir: string;
  repository: string;
  trustStore: string;
  tokenFile: string | undefined;
  agentPort: number;
}

function out(line: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

function port(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const text = env[name];
  if (text === undefined || text === '') return fallback;
  const n = /^\d{1,5}$/.test(text) ? Number(text) : Number.NaN;
  if (!(n <= 65535)) throw new HotPatchError('INVALID', `${name} must be a port number (0-65535), got ${JSON.stringify(text)}`);
  return n;
}

function required(env: NodeJS.ProcessEnv, name: string): string {
  const value = env[name];
  if (value === undefined || value === '') throw new HotPatchError('INVALID', `${name} must be set`);
  return resolve(value);
}

function readSettings(env: NodeJS.ProcessEnv): Settings {
  return {
    apiHost: env.API_HOST || '127.0.0.1',
    port: port(env, 'PORT', 8080),
    stateDir: resolve(env.HOTPATCH_STATE_DIR || 'pricing-state'),
    repository: required(env, 'HOTPATCH_REPO'),
    trustStore: required(env, 'HOTPATCH_TRUST'),
    tokenFile: env.HOTPATCH_TOKEN_FILE ? resolve(env.HOTPATCH_TOKEN_FILE) : undefined,
    agentPort: port(env, 'HOTPATCH_AGENT_PORT', 7070),
  };
}

let settings: Settings;
try {
  settings = readSettings(process.env);
} catch (error) {
  out({ event: 'start-failed', code: 'INVALID', message: (error as Error).message });
  process.exit(2);
}

// 1. The runtime and the target. `config` is what every patch's init(ctx) gets as ctx.config.
const installer = new DynamicInstaller(settings.stateDir);
const runtime = new HotPatchRuntime({ stateDir: settings.stateDir, installer });
const pricing = runtime.target<PricingApi>(PRICING_TARGET, {
  version: BUILTIN_VERSION,
  impl: builtinPricing(PRICING_CONFIG),
  config: PRICING_CONFIG,
  selfTest: pricingSelfTest(PRICING_CONFIG),
  validate: isSaneQuote(PRICING_CONFIG),
  idempotent: true,
});

// 2. The agent: restores the persisted version (re-verified), then serves the admin API.
const agent = await startAgent({
  stateDir: settings.stateDir,
  runtime,
  defaults: { repository: settings.repository, trustStore: settings.trustStore },
  // The event log (one JSON line per event) to stderr: stdout carries the lifecycle lines.
  log: { destination: 2 },
  ...(settings.tokenFile === undefined ? {} : { http: { port: settings.agentPort, tokenFile: settings.tokenFile } }),
}).catch((error: unknown) => {
  out({ event: 'start-failed', code: error instanceof HotPatchError ? error.code : 'INTERNAL', message: (error as Error).message });
  process.exit(1);
});

// 3. The public API.
const server = createApiServer(pricing, PRICING_CONFIG, agent.metrics);
server.listen(settings.port, settings.apiHost);
try {
  await once(server, 'listening');
} catch (error) {
  out({ event: 'start-failed', code: 'IO', message: (error as Error).message });
  await agent.close();
  process.exit(1);
}
const address = server.address();
const apiPort = typeof address === 'object' && address !== null ? address.port : settings.port;

let stopping = false;
async function stop(signal: NodeJS.Signals): Promise<void> {
  if (stopping) return;
  stopping = true;
  out({ event: 'stopping', signal });
  // No new connections; idle keep-alive ones closed now, busy ones once their answer is sent.
  const closed = new Promise((done) => server.close(done));
  server.closeIdleConnections();
  // A client holding a connection open does not hold the stop for ever.
  const force = setTimeout(() => server.closeAllConnections(), 5000);
  force.unref();
  // The agent first: its graceful stop suspends a running probation (resumed at the next
  // start) rather than reverting it, and closes the audit log and the journal.
  await agent.close();
  runtime.close();
  await closed;
  clearTimeout(force);
  out({ event: 'stopped', active: { version: pricing.active.version, patchId: pricing.active.patchId } });
  process.exitCode = 0;
  // Everything is closed; should a handle linger, the process still ends within a bound.
  setTimeout(() => process.exit(0), 2000).unref();
}
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    stop(signal).catch((error: unknown) => {
      out({ event: 'stop-failed', message: (error as Error).message });
      process.exit(1);
    });
  });
}

// Ready last: whoever reads this line may signal the process at once.
out({
  event: 'ready',
  api: `http://${settings.apiHost}:${apiPort}`,
  agent: agent.address,
  target: PRICING_TARGET,
  active: { version: pricing.active.version, patchId: pricing.active.patchId },
});

/*
 * The hotpatch side of the peer-reload benchmark: v2 really signed (packPatch + signPatch, a
 * trust store of one Ed25519 key), the service started in hotpatch mode with its agent on
 * loopback HTTP and a token file, the real CLI (`hotpatch apply`, with --steps 1 or the default
 * canary steps) under load, and the timeline of the events the service's runtime published.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generateKeyPair, packPatch, signPatch } from '../src/index.js';
import { collectJsonLines, type JsonLine } from '../test/support/json-lines.js';
import { runNode } from '../test/support/run-node.js';
import { CLI_MAIN, PACKAGE_ROOT } from './fixtures.js';
import { underLoad } from './peer-load.js';
import { HANG_GUARD_MS, stopChild, tail, track } from './peer-processes.js';
import { HP1, SERVICE, codeSource, nowMs, sleep, type HotpatchWay, type Round, type ServiceEvent, type Setup } from './peer-round.js';

/** The service's hot-swappable target (peer-service.ts names it too) and the patch that brings v2. */
const TARGET = 'bench.peer.page';
const PATCH_ID = 'peer-page-v2';

/** The code files, the agent's token, and v2 packed and signed into `s.repo` as `hotpatch pack` + `hotpatch sign` do. */
export async function makeSignedV2(s: Setup): Promise<void> {
  await writeFile(s.v1, codeSource('v1'));
  await writeFile(s.v2, codeSource('v2'));
  await writeFile(s.tokenFile, randomBytes(24).toString('hex'), { mode: 0o600 });
  // One Ed25519 key, threshold 1.
  const { privateKey, publicKey } = generateKeyPair('ed25519');
  await writeFile(s.trust, JSON.stringify({ keys: { 'bench-peer': { alg: 'ed25519', public_key: publicKey.toPem() } }, threshold: 1 }, null, 2));
  await packPatch(s.repo, { id: PATCH_ID, target: TARGET, version: '1.0.1', type: 'esm', payload: { fromFile: s.v2 }, signers: ['bench-peer'] });
  await signPatch(s.repo, PATCH_ID, privateKey, { keyid: 'bench-peer' });
}

/**
 * One round of `hotpatch apply`: a fresh service (its own state directory under
 * `<dir>/<label>`), the CLI against its agent under load, the events it published collected.
 */
export async function hotpatchRound(s: Setup, way: HotpatchWay, label: string): Promise<Round> {
  const stateDir = join(s.dir, label, 'state');
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const child = track(
    spawn(process.execPath, [SERVICE], {
      cwd: PACKAGE_ROOT,
      env: {
        ...process.env,
        PEER_MODE: 'hotpatch',
        PEER_CODE: s.v1,
        PEER_PORT: '0',
        PEER_STATE_DIR: stateDir,
        PEER_REPO: s.repo,
        PEER_TRUST: s.trust,
        PEER_TOKEN_FILE: s.tokenFile,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
  const lines: JsonLine[] = [];
  let stderr = '';
  collectJsonLines(child.stdout!, lines);
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  try {
    const deadline = nowMs() + 30_000;
    let ready: JsonLine | undefined;
    while ((ready = lines.find((l) => l.event === 'ready')) === undefined) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${way}: the service exited before it was ready: ${tail(stderr)}`);
      if (nowMs() > deadline) throw new Error(`${way}: the service was not ready within 30 s: ${tail(stderr)}`);
      await sleep(20);
    }
    const port = Number(ready.port);
    const agentUrl = String(ready.agent);
    const args = [
      CLI_MAIN,
      'apply',
      '--agent',
      agentUrl,
      '--token-file',
      s.tokenFile,
      '--target',
      TARGET,
      '--patch',
      PATCH_ID,
      '--json',
      ...(way === HP1 ? ['--steps', '1'] : []),
    ];
    const r = await underLoad(s, port, way, async () => {
      const startAt = nowMs();
      const cli = await runNode(args, { cwd: PACKAGE_ROOT, hangGuardMs: HANG_GUARD_MS });
      const endAt = nowMs();
      if (cli.status === 0 && cli.json?.ok === true) return { startAt, endAt };
      // Exit 1: the patch was refused or rolled back (the canary's verdict): an outcome, reported.
      // Anything else (usage, an agent that cannot be reached, a crash) means the run is broken.
      const why = cli.json === undefined ? tail(cli.stderr) : `${String(cli.json.code)}: ${String(cli.json.message)}`;
      if (cli.status === 1 && cli.json !== undefined) return { startAt, endAt, refused: why };
      throw new Error(`${way}: hotpatch apply exited ${cli.status ?? cli.signal}: ${why}`);
    });
    const events = new Map<string, ServiceEvent>();
    for (const l of lines) {
      if (l.event === 'hotpatch' && !events.has(String(l.type))) events.set(String(l.type), { at: Number(l.at), ts: Date.parse(String(l.ts)), detail: l });
    }
    const requested = events.get('Requested');
    if (requested === undefined) throw new Error(`${way}: the service published no Requested event`);
    return { ...r, agentAt: requested.ts, events };
  } finally {
    await stopChild(child);
  }
}

import { stat } from 'node:fs/promises';
import { hostname, userInfo } from 'node:os';
import { basename } from 'node:path';
import { HotPatchError } from '../../core/index.js';
import { importPrivateKey } from '../../crypto-agile/index.js';
import {
  abortRollout,
  createRollout,
  fleetKeys,
  fleetStatus,
  openStore,
  pauseRollout,
  resumeRollout,
  type FleetStatus,
  type KvStore,
  type RolloutDocument,
  type RolloutSigner,
} from '../../distributed/index.js';
import { readFileBounded } from '../../repo/index.js';
import type { TrustStore } from '../../verification/index.js';
import { optionalString, parseCommandArgs, requireString, stringList } from '../args.js';
import { CANARY_FLAGS, CANARY_FLAG_NAMES, CANARY_HELP, CANARY_USAGE, canaryOptionsFromFlags } from '../canary-flags.js';
import { EXIT_OK, UsageError } from '../cli-error.js';
import { printHelp, type Command } from '../command.js';
import { loadTrustStore } from '../config-files.js';
import type { Output } from '../output.js';

const USAGE = `hotpatch fleet status   --store SPEC [--trust FILE] [--prefix P] [--json]
hotpatch fleet rollout  --store SPEC --trust FILE --key FILE… --target T --patch ID
                        --version V --payload-hash H --rings N --soak MS [--id ROLLOUT]
                        [--skip-empty-rings] [--keyid KEYID] [--prefix P]
${CANARY_USAGE.replace(/^/gm, '                        ')} [--json]
hotpatch fleet pause    --store SPEC --trust FILE --key FILE… --rollout ID [--reason TEXT]
                        [--keyid KEYID] [--prefix P] [--json]
hotpatch fleet resume   --store SPEC --trust FILE --key FILE… --rollout ID [--reason TEXT]
                        [--keyid KEYID] [--prefix P] [--json]
hotpatch fleet abort    --store SPEC --trust FILE --key FILE… --rollout ID [--reason TEXT]
                        [--keyid KEYID] [--prefix P] [--json]

--store names the shared store: etcd://HOST:PORT[,HOST:PORT…] for a fleet, or the embedded
store on one machine (file:/DIR or a directory). --prefix defaults to /xps/hotpatch/fleet.

Rollouts are signed. --trust is the trust store the agents use: its fleet role says which
operators' keys sign rollouts and how many must (fleet.threshold for a rollout or a resume,
fleet.stopThreshold for a pause or an abort). --key is an operator's private key file as
hotpatch keygen writes it (DIR/KEYID.key; KEYID=FILE or --keyid KEYID names another key id),
given once per operator signing. Too few keys: refused, nothing written. status verifies each
rollout when given --trust (one that does not verify is listed as ignored).

status lists the alive agents by ring (per target: version, phase, health) and the rollouts
(ring, status, reason). rollout creates a rollout at ring 0 (the canary hosts); the active
controller opens the next ring once every alive agent of the current one has promoted the
version and stayed healthy for --soak ms, halts and rolls every ring back on any failure. A
ring with no alive agent waits, unless --skip-empty-rings. pause stops opening rings and
starting applies; resume continues (the soak starts over); abort makes every agent that
applied the patch roll it back.

The canary flags of rollout are stored in the rollout (its zdt options): every agent applies
the patch with them, over its own defaults. A bad value is a usage error (exit 2), nothing is
written.

${CANARY_HELP}`;

const FLAGS = {
  store: { type: 'string' },
  prefix: { type: 'string' },
  target: { type: 'string' },
  patch: { type: 'string' },
  version: { type: 'string' },
  'payload-hash': { type: 'string' },
  rings: { type: 'string' },
  soak: { type: 'string' },
  id: { type: 'string' },
  'skip-empty-rings': { type: 'boolean' },
  rollout: { type: 'string' },
  reason: { type: 'string' },
  trust: { type: 'string' },
  key: { type: 'string', multiple: true },
  keyid: { type: 'string' },
  ...CANARY_FLAGS,
} as const;

const SUBCOMMANDS = ['status', 'rollout', 'pause', 'resume', 'abort'] as const;
type Sub = (typeof SUBCOMMANDS)[number];

/** Flags each subcommand accepts (besides --store, --prefix, --json, --help). */
const SIGNING = ['trust', 'key', 'keyid'];
const ALLOWED: Record<Sub, readonly string[]> = {
  status: ['trust'],
  rollout: ['target', 'patch', 'version', 'payload-hash', 'rings', 'soak', 'id', 'skip-empty-rings', ...CANARY_FLAG_NAMES, ...SIGNING],
  pause: ['rollout', 'reason', ...SIGNING],
  resume: ['rollout', 'reason', ...SIGNING],
  abort: ['rollout', 'reason', ...SIGNING],
};
const MAX_KEY_FILE = 64 * 1024;
const KEYID = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/;

function integerFlag(values: Record<string, unknown>, name: string, min: number): number {
  const text = requireString(values, name);
  if (!/^\d+$/.test(text)) throw new UsageError(`--${name} must be a whole number, got ${JSON.stringify(text)}`);
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < min) throw new UsageError(`--${name} must be at least ${min}, got ${text}`);
  return n;
}

export const fleetCommand: Command = {
  name: 'fleet',
  summary: 'fleet rollout by rings: status, rollout, pause, resume, abort',
  usage: USAGE,
  async run(argv, out) {
    const [sub, ...rest] = argv;
    if (sub === undefined || sub === '--help' || sub === '-h') {
      if (sub === undefined) throw new UsageError(`fleet needs a subcommand (${SUBCOMMANDS.join(', ')})`);
      return printHelp(out, this.usage);
    }
    if (sub === '--json' && rest.length === 0) throw new UsageError(`fleet needs a subcommand (${SUBCOMMANDS.join(', ')})`);
    if (!(SUBCOMMANDS as readonly string[]).includes(sub)) {
      throw new UsageError(`unknown fleet subcommand ${JSON.stringify(sub)} (${SUBCOMMANDS.join(', ')})`);
    }
    const { values, help } = parseCommandArgs(rest, FLAGS);
    if (help) return printHelp(out, this.usage);
    const action = sub as Sub;
    for (const [flag, value] of Object.entries(values)) {
      if (value === undefined || ['store', 'prefix', 'json', 'help'].includes(flag)) continue;
      if (!ALLOWED[action].includes(flag)) throw new UsageError(`fleet ${action} does not take --${flag}`);
    }
    const spec = requireString(values, 'store');
    const prefix = optionalString(values, 'prefix');
    const options = prefix === undefined ? {} : { prefix };
    try {
      fleetKeys(prefix);
    } catch (error) {
      throw new UsageError(`--prefix: ${(error as Error).message}`, 'INVALID', { cause: error });
    }
    // Every flag is checked, and the trust store and keys read, before the store is opened.
    const run = await prepare(action, values, options, out.warn.bind(out));
    let store: KvStore;
    try {
      store = await openStore(spec);
    } catch (error) {
      if (error instanceof HotPatchError && error.code === 'INVALID') throw new UsageError(`--store ${spec}: ${error.message}`, error.code, { cause: error });
      throw error;
    }
    try {
      await run(store, out);
    } finally {
      await store.close().catch(() => undefined); // the command's own outcome matters more than a failed close
    }
    return EXIT_OK;
  },
};

type Runner = (store: KvStore, out: Output) => Promise<void>;

async function prepare(action: Sub, values: Record<string, unknown>, base: { prefix?: string }, warn: (text: string) => void): Promise<Runner> {
  switch (action) {
    case 'status': {
      const trustPath = optionalString(values, 'trust');
      const options = trustPath === undefined ? base : { ...base, trust: await loadTrustStore(trustPath) };
      return async (store, out) => printStatus(out, await fleetStatus(store, options), trustPath !== undefined);
    }
    case 'rollout': {
      const id = optionalString(values, 'id');
      const zdt = canaryOptionsFromFlags(values);
      const spec = {
        ...(id === undefined ? {} : { id }),
        target: requireString(values, 'target'),
        patchId: requireString(values, 'patch'),
        version: requireString(values, 'version'),
        payloadHash: requireString(values, 'payload-hash'),
        rings: integerFlag(values, 'rings', 1),
        soakMs: integerFlag(values, 'soak', 0),
        emptyRings: values['skip-empty-rings'] === true ? ('skip' as const) : ('wait' as const),
        ...(Object.keys(zdt).length === 0 ? {} : { zdt }),
      };
      const options = { ...base, ...(await signing(values, warn)) };
      return async (store, out) => {
        const doc = await createRollout(store, spec, options);
        out.success(
          `rollout ${doc.id} created: ${doc.patchId} (${doc.version}) on ${doc.target} over ${doc.rings} ring(s), soak ${doc.soakMs} ms${canaryText(doc)}`,
          { rollout: doc },
        );
      };
    }
    case 'pause':
    case 'resume':
    case 'abort': {
      const id = requireString(values, 'rollout');
      const reason = optionalString(values, 'reason');
      const fn = action === 'pause' ? pauseRollout : action === 'resume' ? resumeRollout : abortRollout;
      const options = { ...base, ...(await signing(values, warn)) };
      return async (store, out) => {
        const doc = await fn(store, id, reason ?? `${action}d by operator`, options);
        out.success(`rollout ${doc.id} ${doc.state.status} at ring ${doc.state.ring}/${doc.rings}`, { rollout: doc });
      };
    }
  }
}

/** The trust store and the operators' keys of a signed write, and who the operator says they are. */
async function signing(values: Record<string, unknown>, warn: (text: string) => void): Promise<{ trust: TrustStore; signers: RolloutSigner[]; actor: string }> {
  const trustPath = requireString(values, 'trust');
  const keys = stringList(values, 'key');
  if (keys.length === 0) throw new UsageError("--key is required: rollouts are signed by the fleet operators' keys (one --key per operator)");
  const keyid = optionalString(values, 'keyid');
  if (keyid !== undefined && keys.length > 1) throw new UsageError('--keyid names the key of a single --key; with several, write --key KEYID=FILE');
  const trust = await loadTrustStore(trustPath);
  const signers: RolloutSigner[] = [];
  for (const item of keys) {
    const at = item.indexOf('=');
    const [id, path] = at > 0 ? [item.slice(0, at), item.slice(at + 1)] : [keyid ?? basename(item).replace(/\.key$/, ''), item];
    if (!KEYID.test(id)) throw new UsageError(`key id ${JSON.stringify(id)} of --key ${item} must be 1-128 of [A-Za-z0-9._:@-]; pass --keyid or KEYID=FILE`);
    if (signers.some((s) => s.keyid === id)) throw new UsageError(`--key names key id ${id} twice`);
    signers.push({ keyid: id, privateKey: await loadPrivateKey(path, warn) });
  }
  let actor = 'unknown';
  try {
    actor = `${userInfo().username}@${hostname()}`.slice(0, 256);
  } catch {
    // No user name (a container's uid without an entry): the actor is only a record anyway.
  }
  return { trust, signers, actor };
}

async function loadPrivateKey(path: string, warn: (text: string) => void): Promise<RolloutSigner['privateKey']> {
  let bytes: Uint8Array;
  try {
    bytes = await readFileBounded(path, MAX_KEY_FILE, { noFollow: false, what: 'key file' });
  } catch (error) {
    // The key file is the operator's own input: a wrong one is a usage error (exit 2).
    if (error instanceof HotPatchError && error.code !== 'IO') throw new UsageError(`--key ${path}: ${error.message}`, error.code, { cause: error });
    throw error;
  }
  const mode = (await stat(path)).mode & 0o077;
  if (mode !== 0) warn(`${path} is readable by group or others (mode ${(0o600 | mode).toString(8)}); keep private keys 0600`);
  try {
    return importPrivateKey(new TextDecoder().decode(bytes));
  } catch (error) {
    if (error instanceof HotPatchError) throw new UsageError(`--key ${path}: ${error.message}`, error.code, { cause: error });
    throw error;
  }
}

/** `, canary confidence=0.995 minCalls=500` for a rollout that carries canary options. */
function canaryText(r: RolloutDocument): string {
  if (r.zdt === undefined) return '';
  const fields = Object.entries(r.zdt).map(([k, v]) => `${k}=${Array.isArray(v) ? v.join(',') : String(v)}`);
  return fields.length === 0 ? '' : `, canary ${fields.join(' ')}`;
}

function describeRollout(r: RolloutDocument): string {
  const ring = r.state.status === 'completed' ? `${r.rings}/${r.rings}` : `${r.state.ring}/${r.rings}`;
  const signed = r.signers.length === 0 ? '' : `  signed by ${r.signers.join(', ')}; state ${r.seq} by ${r.state.by ?? 'operator'}`;
  return `${r.id}  ${r.target} → ${r.version} (${r.patchId})  ${r.state.status}  ring ${ring}${canaryText(r)}${signed}${r.state.reason === undefined ? '' : `  — ${r.state.reason}`}`;
}

function printStatus(out: Output, status: FleetStatus, verified: boolean): void {
  out.line(`controller: ${status.controller ?? 'none leading'}`);
  if (!verified) out.line('rollouts: signatures not checked (pass --trust to verify them)');
  const rings = [...new Set(status.agents.map((a) => a.ring))].sort((a, b) => a - b);
  if (rings.length === 0) out.line('agents: none alive');
  for (const ring of rings) {
    const agents = status.agents.filter((a) => a.ring === ring);
    out.line(`ring ${ring}: ${agents.length} agent(s)`);
    for (const a of agents) {
      const targets = Object.entries(a.targets);
      if (targets.length === 0) out.line(`  ${a.agentId}  (no target reported)`);
      for (const [name, t] of targets) {
        out.line(
          `  ${a.agentId}  ${name}  ${t.version}${t.patchId === undefined ? ' (built-in)' : ` (${t.patchId})`}  ${t.phase}  ${t.health}${t.reason === undefined ? '' : `  — ${t.reason}`}`,
        );
      }
    }
  }
  out.line(status.rollouts.length === 0 ? 'rollouts: none' : 'rollouts:');
  for (const r of status.rollouts) out.line(`  ${describeRollout(r)}`);
  for (const p of status.problems) out.warn(`ignored ${p.key}: ${p.error}`);
  const agents = status.agents.map(({ key: _key, ...a }) => a);
  const rollouts = status.rollouts.map(({ key: _key, raw: _raw, ...r }) => r);
  out.success(`${status.agents.length} agent(s) in ${rings.length} ring(s), ${status.rollouts.length} rollout(s)`, {
    controller: status.controller ?? null,
    verified,
    agents,
    rollouts,
    problems: status.problems,
  });
}

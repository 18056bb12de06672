import { HotPatchError } from '../../core/index.js';
import { abortRollout, fleetKeys, parseFleetId, pauseRollout, resumeRollout, type KvStore } from '../../distributed/index.js';
import { integerFlag, optionalString, parseCommandArgs, requireString } from '../args.js';
import { CANARY_FLAGS, CANARY_FLAG_NAMES, CANARY_HELP, CANARY_USAGE } from '../canary-flags.js';
import { EXIT_OK, UsageError } from '../cli-error.js';
import { printHelp, type Command } from '../command.js';
import { loadTrustStore } from '../config-files.js';
import type { Output } from '../output.js';
import { runController } from './fleet-controller-command.js';
import { runHistory } from './fleet-history-command.js';
import { controllerSigning, operatorSigning } from './fleet-keys.js';
import { prepareRollout, runRollout } from './fleet-rollout-command.js';
import { runStatus } from './fleet-status-command.js';
import { openFleetStore, requireExistingStore, storeFailure } from './fleet-store.js';

const USAGE = `hotpatch fleet status     --store SPEC [--trust FILE] [--watch] [--prefix P] [--json]
hotpatch fleet history    --store SPEC [--trust FILE] [--rollout ID] [--limit N] [--prefix P] [--json]
hotpatch fleet rollout    --store SPEC --trust FILE --key FILE… --patch ID --rings N --soak MS
                          (--repo DIR | --target T --version V --payload-hash H) [--id ROLLOUT]
                          [--skip-empty-rings] [--watch] [--keyid KEYID] [--prefix P]
${CANARY_USAGE.replace(/^/gm, '                          ')} [--json]
hotpatch fleet pause      --store SPEC --trust FILE --key FILE… --rollout ID [--reason TEXT]
                          [--keyid KEYID] [--prefix P] [--json]
hotpatch fleet resume     --store SPEC --trust FILE --key FILE… --rollout ID [--reason TEXT]
                          [--keyid KEYID] [--prefix P] [--json]
hotpatch fleet abort      --store SPEC --trust FILE --key FILE… --rollout ID [--reason TEXT]
                          [--keyid KEYID] [--prefix P] [--json]
hotpatch fleet controller --store SPEC --id ID --trust FILE --key FILE [--keyid KEYID]
                          [--lease-ttl MS] [--prefix P] [--json]

--store names the shared store: etcd://HOST:PORT[,HOST:PORT…] for a fleet, or the embedded
store on one machine (file:/DIR or a directory). --prefix defaults to /xps/hotpatch/fleet. A
store that cannot be reached, or an etcd cluster without quorum, is exit 3 (code IO), the
message naming the members tried. Only controller creates an embedded store's directory; the
other commands on one that does not exist end with exit 3 (code NOT_FOUND, "no fleet store at
…") and create nothing.

Rollouts are signed. --trust is the trust store the agents use: its fleet role says which
operators' keys sign rollouts and how many must (fleet.threshold for a rollout or a resume,
fleet.stopThreshold for a pause or an abort); its controllers role, which keys controllers
sign states with. --key is a private key file as hotpatch keygen writes it (DIR/KEYID.key;
KEYID=FILE or --keyid KEYID names another key id), given once per operator signing. Too few
keys: refused, nothing written. status and history verify each rollout when given --trust.

status lists the alive agents by ring (per target: version, phase, health), the rollouts
(ring, status, reason) and the leading controller; one that does not verify is listed as
ignored. With --watch it is shown again on every change until SIGINT or SIGTERM (exit 0): a
terminal is redrawn, otherwise one block (with --json one {"event":"status",…} line) per
change.

history lists every rollout, final ones too, newest first (--limit N: the N newest;
--rollout ID: that one): who signed its spec and every state it went through (seq, status,
ring, by, actor, time, reason), verified or not (one that does not verify is shown, marked,
with why).

rollout creates a rollout at ring 0 (the canary hosts); the leading controller opens the next
ring once every alive agent of the current one has promoted the version and stayed healthy for
--soak ms, halts and rolls every ring back on any failure. A ring with no alive agent waits,
unless --skip-empty-rings. With --repo, DIR/ID.json and DIR/ID.bin are verified against the
trust store as agents verify them, and the signed manifest says the target, version and payload
hash; --target, --version or --payload-hash given as well must say the same (else exit 1,
INVALID or HASH_MISMATCH, nothing written). With --watch the rollout is followed until it is
final: every state and every change of an agent working on it ({"event":"rollout",…} and
{"event":"agent",…} lines with --json); exit 0 when it completed, 1 when it was halted, rolled
back (the failing agent's code when its report carries one, e.g. SELF_TEST_FAILED, else
CANARY_FAILED) or aborted (ABORTED). A document at the rollout's key that does not verify or is
another rollout's is not believed: a warning ({"event":"ignored",…} with --json), and following
goes on. Interrupted (SIGINT, SIGTERM), it stops following
(the rollout goes on): exit 0, or 1 if it was halted or rolling back by then.

pause stops opening rings and starting applies; resume continues (the soak starts over); abort
makes every agent that applied the patch roll it back.

controller runs a fleet controller until SIGTERM or SIGINT: it campaigns in the fleet's
election as --id; the leader drives the rollouts, signing every state it writes with --key
(one of the trust store's controllers, else exit 2 before the store is touched); a standby
takes over when the leader's lease (--lease-ttl, default 10000 ms) ends. One line per
happening, with --json one object: {"event":"started"}, {"event":"standby","leader":…},
{"event":"leading"}, {"event":"transition","rollout":…,"from":…,"to":…,"ring":…,"by":…},
{"event":"error","code":…,"message":…}; on SIGTERM or SIGINT it resigns, revokes its lease
and ends with {"event":"stopped"} (exit 0).

The canary flags of rollout are stored in the rollout (its zdt options): every agent applies
the patch with them, over its own defaults. A bad value is a usage error (exit 2), nothing is
written.

${CANARY_HELP}`;

const FLAGS = {
  store: { type: 'string' },
  prefix: { type: 'string' },
  repo: { type: 'string' },
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
  watch: { type: 'boolean' },
  limit: { type: 'string' },
  'lease-ttl': { type: 'string' },
  ...CANARY_FLAGS,
} as const;

const SUBCOMMANDS = ['status', 'history', 'rollout', 'pause', 'resume', 'abort', 'controller'] as const;
type Sub = (typeof SUBCOMMANDS)[number];

/** Flags each subcommand accepts (besides --store, --prefix, --json, --help). */
const SIGNING = ['trust', 'key', 'keyid'];
const ROLLOUT = ['repo', 'target', 'patch', 'version', 'payload-hash', 'rings', 'soak', 'id', 'skip-empty-rings', 'watch'];
const ALLOWED: Record<Sub, readonly string[]> = {
  status: ['trust', 'watch'],
  history: ['trust', 'rollout', 'limit'],
  rollout: [...ROLLOUT, ...CANARY_FLAG_NAMES, ...SIGNING],
  pause: ['rollout', 'reason', ...SIGNING],
  resume: ['rollout', 'reason', ...SIGNING],
  abort: ['rollout', 'reason', ...SIGNING],
  controller: ['id', 'lease-ttl', ...SIGNING],
};

export const fleetCommand: Command = {
  name: 'fleet',
  summary: 'fleet rollout by rings: status, history, rollout, pause, resume, abort, controller',
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
    try {
      fleetKeys(prefix);
    } catch (error) {
      throw new UsageError(`--prefix: ${(error as Error).message}`, 'INVALID', { cause: error });
    }
    const failure = (error: unknown): unknown => storeFailure(error, spec);
    // Every flag is checked, and the trust store, keys and patch read, before the store is opened.
    const run = await prepare(action, values, prefix, out.warn.bind(out), failure);
    // Only a controller may create an embedded store; the other commands need one that exists.
    if (action !== 'controller') await requireExistingStore(spec);
    const store = await openFleetStore(spec);
    try {
      return await run(store, out);
    } catch (error) {
      throw failure(error);
    } finally {
      await store.close().catch(() => undefined); // the command's own outcome matters more than a failed close
    }
  },
};

type Runner = (store: KvStore, out: Output) => Promise<number>;

async function prepare(
  action: Sub,
  values: Record<string, unknown>,
  prefix: string | undefined,
  warn: (text: string) => void,
  onFailure: (error: unknown) => unknown,
): Promise<Runner> {
  const base = prefix === undefined ? {} : { prefix };
  switch (action) {
    case 'status': {
      const trustPath = optionalString(values, 'trust');
      const options = trustPath === undefined ? base : { ...base, trust: await loadTrustStore(trustPath) };
      const run = { options, verified: trustPath !== undefined, watch: values.watch === true, onFailure };
      return (store, out) => runStatus(store, out, run);
    }
    case 'history': {
      const trustPath = optionalString(values, 'trust');
      const rollout = optionalString(values, 'rollout');
      if (rollout !== undefined) fleetId(rollout, '--rollout');
      const limit = values.limit === undefined ? undefined : integerFlag(values, 'limit', 1);
      const run = { prefix, trust: trustPath === undefined ? undefined : await loadTrustStore(trustPath), rollout, limit };
      return (store, out) => runHistory(store, out, run);
    }
    case 'rollout': {
      const run = await prepareRollout(values, base, () => operatorSigning(values, warn));
      return (store, out) => runRollout(store, out, run, onFailure);
    }
    case 'pause':
    case 'resume':
    case 'abort': {
      const id = requireString(values, 'rollout');
      const reason = optionalString(values, 'reason');
      const fn = action === 'pause' ? pauseRollout : action === 'resume' ? resumeRollout : abortRollout;
      const options = { ...base, ...(await operatorSigning(values, warn)) };
      return async (store, out) => {
        const doc = await fn(store, id, reason ?? `${action}d by operator`, options);
        out.success(`rollout ${doc.id} ${doc.state.status} at ring ${doc.state.ring}/${doc.rings}`, { rollout: doc });
        return EXIT_OK;
      };
    }
    case 'controller': {
      const controllerId = fleetId(requireString(values, 'id'), '--id');
      // `by: "operator"` is how agents tell operators' states from controllers'.
      if (controllerId === 'operator') throw new UsageError('--id operator is reserved: it marks the states operators sign');
      const leaseTtlMs = values['lease-ttl'] === undefined ? undefined : integerFlag(values, 'lease-ttl', 1);
      const run = { controllerId, ...(await controllerSigning(values, warn)), prefix, leaseTtlMs, onFailure };
      return (store, out) => runController(store, out, run);
    }
  }
}

/** A rollout or controller id given on the command line (it becomes a key segment). */
function fleetId(value: string, flag: string): string {
  try {
    return parseFleetId(value, flag);
  } catch (error) {
    if (error instanceof HotPatchError) throw new UsageError(error.message, error.code, { cause: error });
    throw error;
  }
}

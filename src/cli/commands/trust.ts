import { HotPatchError, decodeEnvelope, encodeEnvelope, pae, type Envelope } from '../../core/index.js';
import { readFileBounded } from '../../repo/index.js';
import { TRUST_STORE_PAYLOAD_TYPE, rotateTrustStore, type TrustStore, type TrustStoreDocument } from '../../verification/index.js';
import { optionalString, parseCommandArgs, requireString, stringList } from '../args.js';
import { EXIT_OK, UsageError } from '../cli-error.js';
import { printHelp, type Command } from '../command.js';
import { loadTrustStoreFile } from '../config-files.js';
import type { Output } from '../output.js';
import { PKCS11_FLAGS, PKCS11_USAGE } from '../pkcs11-flags.js';
import { signingKeyOf, withSigner } from '../signing-key.js';
import {
  addKey,
  bumpVersion,
  checkKeyId,
  checkedStore,
  keyIdFromFile,
  newStore,
  readPublicKeyFile,
  ROLES,
  keyList,
  removeKey,
  replaceFile,
  setRole,
  setThreshold,
  type Role,
  targetList,
  thresholdArg,
  writeFile,
} from '../trust-edit.js';

const MAX_STORE_BYTES = 1024 * 1024;
/** A rotation envelope: the store (≤ 1 MiB) in base64 and up to 256 signatures. */
const MAX_ENVELOPE_BYTES = 4 * 1024 * 1024;

const USAGE = `hotpatch trust init          --out FILE --public-key [ID=]PEM_FILE... [--threshold N] [--json]
hotpatch trust add-key       --trust FILE --public-key PEM_FILE [--id ID] [--alg ALG]
                             [--targets PATTERN,…] [--bump-version] [--json]
hotpatch trust remove-key    --trust FILE --id ID [--bump-version] [--json]
hotpatch trust set-threshold --trust FILE N [--bump-version] [--json]
hotpatch trust set-role      (fleet --threshold N [--stop-threshold N] | controllers | agents
                              | index --threshold N)
                             --trust FILE --keys ID,… [--bump-version] [--json]
hotpatch trust show          --trust FILE [--json]
hotpatch trust sign          --trust NEXT_FILE (--key DIR/KEYID.key [--keyid KEYID]
                              | ${PKCS11_USAGE} --keyid KEYID) --envelope FILE [--json]
hotpatch trust rotate        --trust FILE --envelope FILE [--out FILE] [--json]

Builds and edits trust store files. Every write is checked first by the parser the verifier
uses and is atomic: a store that could not be loaded (a threshold above its distinct keys, a
key that does not parse, a duplicate key id or public key) is refused (exit 2) and nothing is
written.

init creates FILE (never replacing one) with the public keys given (PEM_FILE as written by
hotpatch keygen: the key id is its name without .pub, or ID=PEM_FILE) and the threshold
(default: every key given). add-key adds a key (its algorithm is read from the key; --targets
limits the targets it may sign for). remove-key removes one, also from the rules, the root
and the fleet, controllers, index and agents roles that list it; it refuses (naming the rule or role) when a
threshold could no longer be met or a role would be left without keys. set-threshold sets the
store-wide threshold. set-role sets a fleet role to the keys --keys names (keys of the store,
added first with add-key), replacing the keys it had: fleet, the operators who sign rollouts
(--threshold of them sign a rollout or a resume, --stop-threshold a pause or an abort;
default --threshold); controllers, the fleet controllers' keys; agents, the agents' keys (each
named as its agent id; an agent's key may be in no other role, rule or root); index, the keys
that sign repository indexes (hotpatch index; --threshold of them). A role cannot be
emptied, a threshold must be reachable with the role's distinct keys and --stop-threshold not
above --threshold. --bump-version raises the store's version by one (a rotation needs a
higher version). show prints the keys, their fingerprints, the thresholds, the rules, the
root and the fleet, controllers, index and agents roles.

Rotation (as TUF chains root metadata): the next store must have a higher version and be
signed by root.threshold of the current store's root keys and by root.threshold of its own.
sign adds one signature over NEXT_FILE's exact bytes to the rotation envelope FILE (created
by the first signature), made with a key file or a key on a PKCS#11 token; each key holder runs
it in turn. rotate checks the envelope against
the current store FILE with the library's rotateTrustStore and, if it is accepted, replaces
FILE (or writes --out) with the new store, byte for byte as signed; a refusal exits 1
(THRESHOLD_NOT_MET, DOWNGRADE, …) and changes nothing.`;

const SUBCOMMANDS = ['init', 'add-key', 'remove-key', 'set-threshold', 'set-role', 'show', 'sign', 'rotate'] as const;
type Sub = (typeof SUBCOMMANDS)[number];

const FLAGS = {
  out: { type: 'string' },
  trust: { type: 'string' },
  'public-key': { type: 'string', multiple: true },
  threshold: { type: 'string' },
  'stop-threshold': { type: 'string' },
  keys: { type: 'string' },
  id: { type: 'string' },
  alg: { type: 'string' },
  targets: { type: 'string' },
  'bump-version': { type: 'boolean' },
  key: { type: 'string' },
  keyid: { type: 'string' },
  envelope: { type: 'string' },
  ...PKCS11_FLAGS,
} as const;

const ALLOWED: Record<Sub, readonly string[]> = {
  init: ['out', 'public-key', 'threshold'],
  'add-key': ['trust', 'public-key', 'id', 'alg', 'targets', 'bump-version'],
  'remove-key': ['trust', 'id', 'bump-version'],
  'set-threshold': ['trust', 'bump-version'],
  'set-role': ['trust', 'keys', 'threshold', 'stop-threshold', 'bump-version'],
  show: ['trust'],
  sign: ['trust', 'key', 'keyid', 'envelope', ...Object.keys(PKCS11_FLAGS)],
  rotate: ['trust', 'envelope', 'out'],
};

export const trustCommand: Command = {
  name: 'trust',
  summary: 'create, edit, show, sign and rotate trust store files',
  usage: USAGE,
  async run(argv, out) {
    const [sub, ...rest] = argv;
    if (sub === '--help' || sub === '-h') return printHelp(out, this.usage);
    if (sub === undefined || (sub === '--json' && rest.length === 0)) throw new UsageError(`trust needs a subcommand (${SUBCOMMANDS.join(', ')})`);
    if (!(SUBCOMMANDS as readonly string[]).includes(sub)) throw new UsageError(`unknown trust subcommand ${JSON.stringify(sub)} (${SUBCOMMANDS.join(', ')})`);
    const action = sub as Sub;
    const { values, help, positionals } = parseCommandArgs(rest, FLAGS, action === 'set-threshold' || action === 'set-role');
    if (help) return printHelp(out, this.usage);
    for (const [flag, value] of Object.entries(values)) {
      if (value === undefined || flag === 'json' || flag === 'help') continue;
      if (!ALLOWED[action].includes(flag)) throw new UsageError(`trust ${action} does not take --${flag}`);
    }
    switch (action) {
      case 'init':
        return init(values, out);
      case 'add-key':
      case 'remove-key':
      case 'set-threshold':
      case 'set-role':
        return edit(action, values, positionals, out);
      case 'show':
        return show(values, out);
      case 'sign':
        return signNext(values, out);
      case 'rotate':
        return rotate(values, out);
    }
  },
};

type Values = Record<string, unknown>;

/** What the JSON output says about a store: no key material, fingerprints instead. */
function summary(store: TrustStore): Record<string, unknown> {
  return {
    version: store.version,
    threshold: store.threshold,
    keys: [...store.keys.values()].map((k) => ({
      id: k.keyid,
      alg: k.key.alg,
      fingerprint: `sha256:${k.key.fingerprint}`,
      ...(k.targets === undefined ? {} : { targets: k.targets }),
    })),
    rules: store.rules.length,
    root: store.root,
    ...(store.fleet === undefined ? {} : { fleet: store.fleet }),
    ...(store.controllers === undefined ? {} : { controllers: store.controllers }),
    ...(store.index === undefined ? {} : { index: store.index }),
    ...(store.agents === undefined ? {} : { agents: store.agents }),
  };
}

function describeStore(store: TrustStore): string {
  return `version ${store.version}, ${store.keys.size} key(s) (${[...store.keys.keys()].join(', ')}), threshold ${store.threshold}`;
}

async function init(values: Values, out: Output): Promise<number> {
  const path = requireString(values, 'out');
  const files = stringList(values, 'public-key');
  if (files.length === 0) throw new UsageError('trust init needs at least one --public-key (a trust store has at least one key)');
  const keys = [];
  for (const item of files) {
    const at = item.indexOf('=');
    const [id, file] = at > 0 ? [item.slice(0, at), item.slice(at + 1)] : [keyIdFromFile(item), item];
    keys.push([checkKeyId(id, `key id of --public-key ${item}`), await readPublicKeyFile(file)] as [string, Awaited<ReturnType<typeof readPublicKeyFile>>]);
  }
  const thresholdText = optionalString(values, 'threshold');
  const doc = newStore(keys, thresholdText === undefined ? undefined : thresholdArg(thresholdText, '--threshold'));
  const { text, store } = checkedStore(doc, 'trust init');
  await writeFile(path, text, true);
  out.success(`created ${path}: ${describeStore(store)}`, { path, store: summary(store) });
  return EXIT_OK;
}

async function edit(action: 'add-key' | 'remove-key' | 'set-threshold' | 'set-role', values: Values, positionals: string[], out: Output): Promise<number> {
  const path = requireString(values, 'trust');
  // Every flag and argument is checked before the file is read.
  let threshold: number | undefined;
  if (action === 'set-threshold') {
    if (positionals.length !== 1)
      throw new UsageError(
        `trust set-threshold takes one number N, got ${positionals.length === 0 ? 'none' : positionals.map((p) => JSON.stringify(p)).join(' ')}`,
      );
    threshold = thresholdArg(positionals[0]!, 'the threshold N');
  }
  const roleEdit = action === 'set-role' ? roleArgs(values, positionals) : undefined;
  const { bytes, value: store } = await loadTrustStoreFile(path);
  let doc: TrustStoreDocument;
  let done: string;
  if (action === 'add-key') {
    const files = stringList(values, 'public-key');
    if (files.length !== 1) throw new UsageError(`trust add-key takes one --public-key PEM_FILE, got ${files.length}`);
    const file = files[0]!;
    const id = checkKeyId(optionalString(values, 'id') ?? keyIdFromFile(file));
    const key = await readPublicKeyFile(file, optionalString(values, 'alg'));
    doc = addKey(store, id, key, targetList(optionalString(values, 'targets')));
    done = `added ${id} (${key.alg}, sha256:${key.fingerprint})`;
  } else if (action === 'remove-key') {
    const id = requireString(values, 'id');
    const removed = removeKey(store, id);
    doc = removed.doc;
    done = `removed ${id}${removed.alsoFrom.length === 0 ? '' : ` (also from ${removed.alsoFrom.join(', ')})`}`;
  } else if (roleEdit !== undefined) {
    doc = setRole(store, roleEdit.role, roleEdit.keys, roleEdit);
    done = `${roleEdit.role} role ${store.document[roleEdit.role] === undefined ? 'set' : 'replaced'}: ${roleText(roleEdit)}`;
  } else {
    doc = setThreshold(store, threshold!);
    done = `threshold ${store.threshold} → ${threshold}`;
  }
  if (values['bump-version'] === true) bumpVersion(doc, store);
  const { text, store: next } = checkedStore(doc, `trust ${action}`);
  await replaceFile(path, bytes, text, MAX_STORE_BYTES);
  out.success(`${path}: ${done}; now ${describeStore(next)}`, { path, store: summary(next) });
  return EXIT_OK;
}

interface RoleArgs {
  role: Role;
  keys: string[];
  threshold?: number;
  stopThreshold?: number;
}

/** `set-role ROLE --keys … [--threshold N] [--stop-threshold N]`, checked before the file is read. */
function roleArgs(values: Values, positionals: string[]): RoleArgs {
  if (positionals.length !== 1 || !(ROLES as readonly string[]).includes(positionals[0]!)) {
    const got = positionals.length === 0 ? 'none' : positionals.map((p) => JSON.stringify(p)).join(' ');
    throw new UsageError(`trust set-role takes one role (${ROLES.join(', ')}), got ${got}`);
  }
  const role = positionals[0] as Role;
  const keys = keyList(optionalString(values, 'keys'));
  const thresholdText = optionalString(values, 'threshold');
  const stopText = optionalString(values, 'stop-threshold');
  if (role === 'index') {
    if (stopText !== undefined) throw new UsageError('trust set-role index does not take --stop-threshold');
    if (thresholdText === undefined) throw new UsageError('trust set-role index needs --threshold N (how many of the keys sign a repository index)');
    return { role, keys, threshold: thresholdArg(thresholdText, '--threshold') };
  }
  if (role !== 'fleet') {
    const flag = thresholdText !== undefined ? '--threshold' : stopText !== undefined ? '--stop-threshold' : undefined;
    if (flag !== undefined)
      throw new UsageError(`trust set-role ${role} does not take ${flag} (each ${role === 'agents' ? 'agent' : 'controller'} key signs alone)`);
    return { role, keys };
  }
  if (thresholdText === undefined) throw new UsageError('trust set-role fleet needs --threshold N (how many of the keys sign a rollout or a resume)');
  return {
    role,
    keys,
    threshold: thresholdArg(thresholdText, '--threshold'),
    ...(stopText === undefined ? {} : { stopThreshold: thresholdArg(stopText, '--stop-threshold') }),
  };
}

function roleText(r: RoleArgs): string {
  if (r.role === 'index') return `${r.threshold} of ${r.keys.join(', ')} sign a repository index`;
  if (r.role !== 'fleet') return r.keys.join(', ');
  return `${r.threshold} of ${r.keys.join(', ')} sign a rollout or a resume; ${r.stopThreshold ?? r.threshold} a pause or an abort`;
}

async function show(values: Values, out: Output): Promise<number> {
  const path = requireString(values, 'trust');
  const { value: store } = await loadTrustStoreFile(path);
  out.line(`${path}: version ${store.version}, threshold ${store.threshold} of ${store.keys.size} key(s)`);
  for (const k of store.keys.values()) {
    out.line(`  ${k.keyid}  ${k.key.alg}  sha256:${k.key.fingerprint}${k.targets === undefined ? '' : `  targets ${k.targets.join(',')}`}`);
  }
  store.rules.forEach((r, i) => out.line(`  rules[${i}]: ${r.targets.join(',')} needs ${r.threshold} of ${r.keys.join(', ')}`));
  out.line(`  root: ${store.root.threshold} of ${store.root.keys.join(', ')} sign the next version`);
  if (store.fleet !== undefined) {
    const { keys, threshold, stopThreshold } = store.fleet;
    out.line(`  fleet: ${threshold} of ${keys.join(', ')} sign a rollout or a resume; ${stopThreshold} a pause or an abort`);
  }
  if (store.controllers !== undefined) out.line(`  controllers: ${store.controllers.keys.join(', ')} (each signs the states it writes alone)`);
  if (store.index !== undefined) out.line(`  index: ${store.index.threshold} of ${store.index.keys.join(', ')} sign a repository index`);
  if (store.agents !== undefined) out.line(`  agents: ${store.agents.keys.join(', ')} (each signs its own reports, and nothing else)`);
  if (out.json) out.success(`${path}: ${describeStore(store)}`, { path, store: summary(store) });
  return EXIT_OK;
}

async function readEnvelope(path: string, flag: string): Promise<{ bytes: Uint8Array; envelope: Envelope } | undefined> {
  let bytes: Uint8Array;
  try {
    bytes = await readFileBounded(path, MAX_ENVELOPE_BYTES, { noFollow: false, what: 'trust store envelope' });
  } catch (error) {
    if (error instanceof HotPatchError && error.code === 'NOT_FOUND') return undefined;
    if (error instanceof HotPatchError && error.code !== 'IO') throw new UsageError(`${flag} ${path}: ${error.message}`, error.code, { cause: error });
    throw error;
  }
  let envelope: Envelope;
  try {
    envelope = decodeEnvelope(bytes);
  } catch (error) {
    if (error instanceof HotPatchError) throw new UsageError(`${flag} ${path}: ${error.message}`, error.code, { cause: error });
    throw error;
  }
  if (envelope.payloadType !== TRUST_STORE_PAYLOAD_TYPE) {
    throw new UsageError(`${flag} ${path} carries ${JSON.stringify(envelope.payloadType)}, not a trust store (${TRUST_STORE_PAYLOAD_TYPE})`);
  }
  return { bytes, envelope };
}

async function signNext(values: Values, out: Output): Promise<number> {
  const nextPath = requireString(values, 'trust');
  const envelopePath = requireString(values, 'envelope');
  const key = await signingKeyOf(values);
  const keyid = key.keyid;
  const { bytes: payload, value: next } = await loadTrustStoreFile(nextPath);
  return withSigner(key, out.warn.bind(out), async (signer) => {
    const keyName = key.keyPath === undefined ? signer.name : `--key ${key.keyPath}`;
    const listed = next.keys.get(keyid);
    if (listed !== undefined && listed.key.fingerprint !== signer.publicKey.fingerprint) {
      throw new UsageError(`${keyName} is not the key ${keyid} of ${nextPath} (fingerprints differ): its signature would not count`);
    }
    if (listed === undefined) out.warn(`${keyid} is not a key of ${nextPath}: its signature can count only for the current store's root`);

    const existing = await readEnvelope(envelopePath, '--envelope');
    if (existing !== undefined && Buffer.compare(Buffer.from(existing.envelope.payload), Buffer.from(payload)) !== 0) {
      throw new UsageError(`--envelope ${envelopePath} signs other trust store bytes than ${nextPath}: sign the same file, or start a new envelope`);
    }
    const earlier = existing?.envelope.signatures ?? [];
    const sig = await signer.sign(pae(TRUST_STORE_PAYLOAD_TYPE, payload));
    const signatures = [...earlier.filter((s) => s.keyid !== keyid), { keyid, sig }];
    const text = encodeEnvelope({ payloadType: TRUST_STORE_PAYLOAD_TYPE, payload, signatures });
    if (existing === undefined) await writeFile(envelopePath, text, true);
    else await replaceFile(envelopePath, existing.bytes, text, MAX_ENVELOPE_BYTES);
    const verb = signatures.length === earlier.length ? 're-signed' : 'signed';
    const alg = signer.publicKey.alg;
    out.success(`${verb} trust store version ${next.version} (${nextPath}) as ${keyid} (${alg}) in ${envelopePath}; ${signatures.length} signature(s) now`, {
      envelope: envelopePath,
      version: next.version,
      keyid,
      alg,
      signatures: signatures.map((s) => s.keyid),
    });
    return EXIT_OK;
  });
}

async function rotate(values: Values, out: Output): Promise<number> {
  const currentPath = requireString(values, 'trust');
  const envelopePath = requireString(values, 'envelope');
  const outPath = optionalString(values, 'out');
  const { bytes: currentBytes, value: current } = await loadTrustStoreFile(currentPath);
  const read = await readEnvelope(envelopePath, '--envelope');
  if (read === undefined) throw new UsageError(`--envelope ${envelopePath} does not exist (hotpatch trust sign creates it)`, 'NOT_FOUND');
  // The library's check: higher version, a threshold of the current root keys and of the new ones.
  const next = rotateTrustStore(current, read.bytes);
  const text = new TextDecoder().decode(read.envelope.payload);
  if (outPath === undefined) await replaceFile(currentPath, currentBytes, text, MAX_STORE_BYTES);
  else await writeFile(outPath, text, false);
  const written = outPath ?? currentPath;
  out.success(`rotated ${currentPath}: version ${current.version} → ${next.version}, written to ${written}; now ${describeStore(next)}`, {
    path: written,
    from: current.version,
    to: next.version,
    signatures: read.envelope.signatures.map((s) => s.keyid),
    store: summary(next),
  });
  return EXIT_OK;
}

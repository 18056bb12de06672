import { basename } from 'node:path';
import { HotPatchError } from '../core/index.js';
import { SIGNATURE_ALGORITHMS, importPublicKey, isSignatureAlgorithm, type PublicKey } from '../crypto-agile/index.js';
import { readFileBounded, writeFileAtomic, writeFileExclusive } from '../repo/index.js';
import { parseTrustStore, type TrustStore, type TrustStoreDocument } from '../verification/index.js';
import { UsageError } from './cli-error.js';

/**
 * The edits of `hotpatch trust`: each takes a trust store document and returns a new one,
 * refusing (usage error, exit 2) any edit that would leave a store `parseTrustStore` refuses
 * or that could never be met. Files are written only after the new document has parsed.
 */

const MAX_KEY_FILE = 64 * 1024;
const KEYID = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/;

export type KeyEntry = TrustStoreDocument['keys'][string];

/** Bytes → checked store; a refusal is a usage error naming the file and the edit. */
export function checkedStore(doc: TrustStoreDocument, what: string): { text: string; store: TrustStore } {
  const text = `${JSON.stringify(doc, null, 2)}\n`;
  try {
    return { text, store: parseTrustStore(text) };
  } catch (error) {
    if (error instanceof HotPatchError)
      throw new UsageError(`${what} would leave a trust store that cannot be used: ${error.message}`, error.code, { cause: error });
    throw error;
  }
}

export function checkKeyId(id: string, flag = '--id'): string {
  if (!KEYID.test(id)) throw new UsageError(`${flag} ${JSON.stringify(id)} must be 1-128 of [A-Za-z0-9._:@-], starting with a letter or digit`);
  return id;
}

/** `keys/team-key-1.pub` → `team-key-1` (keygen's naming). */
export function keyIdFromFile(path: string): string {
  return basename(path).replace(/\.(pub|pem)$/, '');
}

/**
 * A public key file (SPKI PEM or base64), bounded. Its algorithm is read from the key (the
 * one of ours that imports it) unless `alg` names it; a key of none of them is refused.
 */
export async function readPublicKeyFile(path: string, alg?: string): Promise<PublicKey> {
  let bytes: Uint8Array;
  try {
    bytes = await readFileBounded(path, MAX_KEY_FILE, { noFollow: false, what: 'public key file' });
  } catch (error) {
    if (error instanceof HotPatchError && error.code !== 'IO') throw new UsageError(`--public-key ${path}: ${error.message}`, error.code, { cause: error });
    throw error;
  }
  const text = new TextDecoder().decode(bytes);
  if (alg !== undefined && !isSignatureAlgorithm(alg))
    throw new UsageError(`--alg must be one of ${SIGNATURE_ALGORITHMS.join(', ')}, got ${JSON.stringify(alg)}`);
  const errors: HotPatchError[] = [];
  for (const candidate of alg === undefined ? SIGNATURE_ALGORITHMS : [alg]) {
    try {
      return importPublicKey(candidate, text);
    } catch (error) {
      if (!(error instanceof HotPatchError)) throw error;
      errors.push(error);
    }
  }
  // "is an rsa-pss-sha256 key but was declared as ed25519" only says which one to try next.
  const why = errors.find((e) => e.detail?.actual === undefined) ?? errors[0]!;
  throw new UsageError(`--public-key ${path}: ${why.message}`, why.code, { cause: why });
}

/** Distinct keys that may count toward the store-wide threshold: the fleet roles' keys never do. */
function distinctKeys(doc: TrustStoreDocument, store: TrustStore): number {
  const roles = [...(doc.agents?.keys ?? []), ...(doc.fleet?.keys ?? []), ...(doc.controllers?.keys ?? []), ...(doc.index?.keys ?? [])];
  const roleKeys = new Set(roles.map((id) => store.keys.get(id)?.key.fingerprint ?? id));
  return new Set(
    Object.keys(doc.keys)
      .map((id) => store.keys.get(id)?.key.fingerprint ?? id)
      .filter((fingerprint) => !roleKeys.has(fingerprint)),
  ).size;
}

/** A store with `keys` and a threshold (default: every key must sign). */
export function newStore(keys: [string, PublicKey][], threshold: number | undefined): TrustStoreDocument {
  const doc: TrustStoreDocument = { version: 1, keys: {}, threshold: threshold ?? keys.length };
  const seen = new Map<string, string>();
  for (const [id, key] of keys) {
    if (Object.prototype.hasOwnProperty.call(doc.keys, id)) throw new UsageError(`key id ${id} is given twice`);
    const twin = seen.get(key.fingerprint);
    if (twin !== undefined) throw new UsageError(`keys ${twin} and ${id} are the same public key (a threshold counts distinct keys)`);
    seen.set(key.fingerprint, id);
    doc.keys[id] = { alg: key.alg, public_key: key.toPem() };
  }
  if (threshold !== undefined && threshold > seen.size) {
    throw new UsageError(`--threshold ${threshold} is above the ${seen.size} key(s) given: it could never be met`);
  }
  return doc;
}

export function addKey(store: TrustStore, id: string, key: PublicKey, targets: string[] | undefined): TrustStoreDocument {
  const doc = structuredClone(store.document);
  if (Object.prototype.hasOwnProperty.call(doc.keys, id)) throw new UsageError(`the trust store already has a key ${id}; remove it first to replace it`);
  const twin = [...store.keys.values()].find((k) => k.key.fingerprint === key.fingerprint);
  if (twin !== undefined) throw new UsageError(`this public key is already in the trust store as ${twin.keyid} (a threshold counts distinct keys)`);
  doc.keys[id] = { alg: key.alg, public_key: key.toPem(), ...(targets === undefined ? {} : { targets }) };
  return doc;
}

/**
 * Removes `id` from the keys and from every rule, the root and the fleet, controllers and
 * agents roles that list it. A role it would leave unusable is named in the refusal (a rule or the root
 * left below its threshold is refused by the parser, naming it, when the result is checked).
 */
export function removeKey(store: TrustStore, id: string): { doc: TrustStoreDocument; alsoFrom: string[] } {
  const doc = structuredClone(store.document);
  if (!Object.prototype.hasOwnProperty.call(doc.keys, id))
    throw new UsageError(`the trust store has no key ${id} (it has ${Object.keys(doc.keys).join(', ')})`);
  delete doc.keys[id];
  if (Object.keys(doc.keys).length === 0) throw new UsageError(`${id} is the only key: a trust store needs at least one`);
  const left = distinctKeys(doc, store);
  if (left < doc.threshold) {
    throw new UsageError(
      `removing ${id} leaves ${left} distinct key(s), below the threshold ${doc.threshold}: it could never be met (lower it first with hotpatch trust set-threshold)`,
    );
  }
  const alsoFrom: string[] = [];
  doc.rules?.forEach((rule, i) => {
    if (!rule.keys.includes(id)) return;
    rule.keys = rule.keys.filter((k) => k !== id);
    alsoFrom.push(`rules[${i}]`);
  });
  if (doc.root?.keys.includes(id) === true) {
    doc.root.keys = doc.root.keys.filter((k) => k !== id);
    alsoFrom.push('root');
  }
  if (doc.fleet?.keys.includes(id) === true) {
    const fleet = { ...doc.fleet, keys: doc.fleet.keys.filter((k) => k !== id) };
    const left = new Set(fleet.keys.map((k) => store.keys.get(k)!.key.fingerprint)).size;
    // stopThreshold is never above threshold (the parser's rule): the threshold is what must stay reachable.
    if (left < fleet.threshold) {
      throw new UsageError(
        `removing ${id} leaves the fleet role ${left} distinct key(s), below its threshold ${fleet.threshold}: no rollout could be signed any more (lower fleet.threshold first, or add another operator's key to the role)`,
      );
    }
    doc.fleet = fleet;
    alsoFrom.push('fleet');
  }
  if (doc.controllers?.keys.includes(id) === true) {
    if (doc.controllers.keys.length === 1) {
      throw new UsageError(
        `${id} is the only key of the controllers role: removing it would leave no controller whose states agents accept (add another controller's key to the role first)`,
      );
    }
    doc.controllers = { ...doc.controllers, keys: doc.controllers.keys.filter((k) => k !== id) };
    alsoFrom.push('controllers');
  }
  if (doc.index?.keys.includes(id) === true) {
    const index = { ...doc.index, keys: doc.index.keys.filter((k) => k !== id) };
    if (new Set(index.keys.map((k) => store.keys.get(k)!.key.fingerprint)).size < index.threshold) {
      throw new UsageError(
        `removing ${id} leaves the index role below its threshold ${index.threshold}: no repository index could be signed, and agents would refuse every repository (add another index key first)`,
      );
    }
    doc.index = index;
    alsoFrom.push('index');
  }
  if (doc.agents?.keys.includes(id) === true) {
    if (doc.agents.keys.length === 1) {
      throw new UsageError(
        `${id} is the only key of the agents role: removing it would turn off the checking of every agent's report (edit the file to drop the role on purpose, or add another agent's key first)`,
      );
    }
    doc.agents = { keys: doc.agents.keys.filter((k) => k !== id) };
    alsoFrom.push('agents');
  }
  return { doc, alsoFrom };
}

export function setThreshold(store: TrustStore, threshold: number): TrustStoreDocument {
  const doc = structuredClone(store.document);
  const distinct = distinctKeys(doc, store);
  if (threshold > distinct) throw new UsageError(`threshold ${threshold} is above the ${distinct} distinct key(s) of the trust store: it could never be met`);
  doc.threshold = threshold;
  return doc;
}

export function bumpVersion(doc: TrustStoreDocument, store: TrustStore): void {
  doc.version = store.version + 1;
}

/** A whole number ≥ 1 from a flag or argument. */
export function thresholdArg(text: string, what: string): number {
  if (!/^[1-9][0-9]{0,8}$/.test(text)) throw new UsageError(`${what} must be a whole number of at least 1, got ${JSON.stringify(text)}`);
  return Number(text);
}

/** `a.*,b.c` → patterns (checked by the store parser when the document is). */
export function targetList(text: string | undefined): string[] | undefined {
  if (text === undefined) return undefined;
  const items = text.split(',').map((t) => t.trim());
  if (items.some((t) => t === '')) throw new UsageError(`--targets takes patterns separated by commas, got ${JSON.stringify(text)}`);
  return items;
}

/**
 * Replaces `path` atomically with `text`, but only if it still holds `expected` (the bytes the
 * edit was made from): two edits at once must not silently lose one of them.
 */
export async function replaceFile(path: string, expected: Uint8Array, text: string, maxBytes: number): Promise<void> {
  const now = await readFileBounded(path, maxBytes, { noFollow: false, what: 'file' });
  if (Buffer.compare(Buffer.from(now), Buffer.from(expected)) !== 0) {
    throw new HotPatchError('IO', `${path} changed while it was being edited; nothing written, run the command again`);
  }
  await writeFile(path, text, false);
}

/** Writes a new file (never replacing one) or replaces one, atomically; a link or a taken name is a usage error. */
export async function writeFile(path: string, text: string, exclusive: boolean): Promise<void> {
  try {
    if (exclusive) await writeFileExclusive(path, text, { mode: 0o644 });
    else await writeFileAtomic(path, text);
  } catch (error) {
    if (error instanceof HotPatchError && error.code === 'INVALID') throw new UsageError(error.message, 'INVALID', { cause: error });
    throw error;
  }
}

/** The roles `hotpatch trust set-role` sets. */
export const ROLES = ['fleet', 'controllers', 'agents', 'index'] as const;
export type Role = (typeof ROLES)[number];

/** `a,b` → key ids: none, an empty item or one given twice is refused. */
export function keyList(text: string | undefined, flag = '--keys'): string[] {
  if (text === undefined || text.trim() === '')
    throw new UsageError(`${flag} names no key: a role needs at least one (a role cannot be emptied with set-role)`);
  const items = text.split(',').map((t) => t.trim());
  if (items.some((t) => t === '')) throw new UsageError(`${flag} takes key ids separated by commas, got ${JSON.stringify(text)}`);
  const twice = items.find((t, i) => items.indexOf(t) !== i);
  if (twice !== undefined) throw new UsageError(`${flag} names ${twice} twice`);
  return items;
}

/**
 * Replaces a role's keys (and, for the fleet role, its thresholds). Every key must be one of
 * the store's; the fleet thresholds must be reachable with the role's distinct keys, and a
 * pause or abort must not need more keys than a rollout. What else a role may not hold (an
 * agent's key in another role, an agent key that is not a valid agent id) is refused by the
 * parser when the result is checked.
 */
export function setRole(store: TrustStore, role: Role, keys: string[], thresholds: { threshold?: number; stopThreshold?: number } = {}): TrustStoreDocument {
  const doc = structuredClone(store.document);
  const unknown = keys.filter((id) => !store.keys.has(id));
  if (unknown.length > 0) {
    throw new UsageError(
      `the trust store has no key ${unknown.join(', ')} (it has ${[...store.keys.keys()].join(', ')}): add it first with hotpatch trust add-key`,
    );
  }
  if (role === 'controllers' || role === 'agents') {
    doc[role] = { keys };
    return doc;
  }
  const { threshold, stopThreshold } = thresholds;
  if (role === 'index') {
    if (threshold === undefined) throw new UsageError('trust set-role index needs --threshold N (how many of the keys sign a repository index)');
    const distinct = new Set(keys.map((id) => store.keys.get(id)!.key.fingerprint)).size;
    if (threshold > distinct)
      throw new UsageError(`--threshold ${threshold} is above the ${distinct} distinct key(s) of the index role: no index could ever be signed`);
    doc.index = { keys, threshold };
    return doc;
  }
  if (threshold === undefined) throw new UsageError('trust set-role fleet needs --threshold N (how many of the keys sign a rollout or a resume)');
  const distinct = new Set(keys.map((id) => store.keys.get(id)!.key.fingerprint)).size;
  if (threshold > distinct)
    throw new UsageError(`--threshold ${threshold} is above the ${distinct} distinct key(s) of the fleet role: no rollout could ever be signed`);
  if (stopThreshold !== undefined && stopThreshold > threshold) {
    throw new UsageError(`--stop-threshold ${stopThreshold} is above --threshold ${threshold}: stopping a rollout would be harder than starting it`);
  }
  doc.fleet = { keys, threshold, ...(stopThreshold === undefined ? {} : { stopThreshold }) };
  return doc;
}

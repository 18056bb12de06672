import { hostname, userInfo } from 'node:os';
import { basename } from 'node:path';
import type { RolloutSigner } from '../../distributed/index.js';
import type { TrustStore } from '../../verification/index.js';
import { optionalString, requireString, stringList } from '../args.js';
import { UsageError } from '../cli-error.js';
import { loadTrustStore } from '../config-files.js';
import { loadPrivateKey } from '../private-key-file.js';

/**
 * The trust store and private keys of `hotpatch fleet`: the operators' keys that sign
 * rollouts and operator states, and a controller's key. Everything here is the operator's own
 * input, read before the store is opened: a wrong file is a usage error (exit 2).
 */

const KEYID = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/;

type Warn = (text: string) => void;

/** The trust store and the operators' keys of a signed write, and who the operator says they are. */
export async function operatorSigning(values: Record<string, unknown>, warn: Warn): Promise<{ trust: TrustStore; signers: RolloutSigner[]; actor: string }> {
  const trustPath = requireString(values, 'trust');
  const keys = stringList(values, 'key');
  if (keys.length === 0) throw new UsageError("--key is required: rollouts are signed by the fleet operators' keys (one --key per operator)");
  const keyid = optionalString(values, 'keyid');
  if (keyid !== undefined && keys.length > 1) throw new UsageError('--keyid names the key of a single --key; with several, write --key KEYID=FILE');
  const trust = await loadTrustStore(trustPath);
  const signers: RolloutSigner[] = [];
  for (const item of keys) {
    const signer = await signerOf(item, keyid, warn);
    if (signers.some((s) => s.keyid === signer.keyid)) throw new UsageError(`--key names key id ${signer.keyid} twice`);
    signers.push(signer);
  }
  return { trust, signers, actor: actorName() };
}

/**
 * A controller's trust store and key. The key must be one of the trust store's `controllers`
 * and be the private half of the key listed there: otherwise every state it signed would be
 * refused by every agent, so it is refused here, before the store is touched (the
 * FleetController checks the same, but only once it has a store).
 */
export async function controllerSigning(values: Record<string, unknown>, warn: Warn): Promise<{ trust: TrustStore; signer: RolloutSigner }> {
  const trustPath = requireString(values, 'trust');
  const keys = stringList(values, 'key');
  if (keys.length !== 1)
    throw new UsageError(`fleet controller takes one --key (the controller's own key, which signs every state it writes), got ${keys.length}`);
  const trust = await loadTrustStore(trustPath);
  const signer = await signerOf(keys[0]!, optionalString(values, 'keyid'), warn);
  const controllers = trust.controllers?.keys ?? [];
  if (!controllers.includes(signer.keyid)) {
    throw new UsageError(
      `--key ${signer.keyid} is not one of the controllers of ${trustPath} (${controllers.length === 0 ? 'it has no controllers role' : controllers.join(', ')}): agents would refuse every state it signs`,
    );
  }
  if (trust.keys.get(signer.keyid)!.key.fingerprint !== signer.privateKey.publicKey().fingerprint) {
    throw new UsageError(`--key ${keys[0]}: this private key is not the key ${signer.keyid} of ${trustPath}`);
  }
  return { trust, signer };
}

/** `FILE` (key id: the file name without .key, or `keyid`) or `KEYID=FILE`. */
async function signerOf(item: string, keyid: string | undefined, warn: Warn): Promise<RolloutSigner> {
  const at = item.indexOf('=');
  const [id, path] = at > 0 ? [item.slice(0, at), item.slice(at + 1)] : [keyid ?? basename(item).replace(/\.key$/, ''), item];
  if (!KEYID.test(id)) throw new UsageError(`key id ${JSON.stringify(id)} of --key ${item} must be 1-128 of [A-Za-z0-9._:@-]; pass --keyid or KEYID=FILE`);
  return { keyid: id, privateKey: await loadPrivateKey(path, warn) };
}

/** `user@host`, as the operator's states record it (a record, never trusted). */
function actorName(): string {
  try {
    return `${userInfo().username}@${hostname()}`.slice(0, 256);
  } catch {
    // No user name (a container's uid without an entry): the actor is only a record anyway.
    return 'unknown';
  }
}

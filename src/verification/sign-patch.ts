import {
  HotPatchError,
  MANIFEST_PAYLOAD_TYPE,
  decodeEnvelope,
  encodeEnvelope,
  pae,
  parseManifest,
  parsePatchId,
  type Manifest,
  type PatchId,
} from '../core/index.js';
import { PrivateKey, verifySignature, type SignatureAlgorithm } from '../crypto-agile/index.js';
import { keyProviderOf, type KeyProvider } from '../keys/index.js';
import { FileSystemRepository } from '../repo/index.js';
import { checkPayloadStream } from './payload-check.js';

/** A signature's key id: what a trust store names the key by. */
const KEYID = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/;

export interface SignPatchOptions {
  /** The key id the signature is stored under: the trust store's name for the key. */
  keyid: string;
  /** Replace a signature under `keyid` that another key made (default: INVALID, nothing written). */
  replaceOtherKey?: boolean;
  signal?: AbortSignal;
}

export interface SignedPatch {
  id: PatchId;
  keyid: string;
  alg: SignatureAlgorithm;
  /** Key ids of every signature the envelope now carries, in order. */
  signatures: string[];
  /** Whether an earlier signature by the same key id was replaced. */
  replaced: boolean;
  /**
   * False when the manifest names its `signers` and this key id is not among them: the
   * signature is stored but will not count.
   */
  counts: boolean;
  manifest: Manifest;
}

/**
 * Adds a signature to a packed patch (what `hotpatch sign` does): checks that `<id>.bin`
 * still matches the manifest's size and hash (a signature vouches for the payload too),
 * signs the DSSE PAE of the manifest with the key (its algorithm is the key's), and adds the
 * signature under `keyid`, replacing an earlier one by the same key id. The envelope is
 * replaced atomically.
 *
 * Errors: `INVALID` (a bad id, key id or key, an envelope that is not a hot-patch manifest,
 * a manifest id that does not match), `NOT_FOUND` (no such patch), `SIZE_MISMATCH` /
 * `HASH_MISMATCH` (the payload drifted: nothing is signed), `IO`.
 */
export async function signPatch(
  repository: string | FileSystemRepository,
  id: string,
  privateKey: PrivateKey | KeyProvider,
  options: SignPatchOptions,
): Promise<SignedPatch> {
  const patchId = parsePatchId(id);
  if (!(privateKey instanceof PrivateKey) && typeof (privateKey as Partial<KeyProvider> | undefined)?.sign !== 'function') {
    throw new HotPatchError('INVALID', 'privateKey must be a PrivateKey (importPrivateKey, generateKeyPair) or a KeyProvider');
  }
  const signer = keyProviderOf(privateKey);
  const keyid = options?.keyid;
  if (typeof keyid !== 'string' || !KEYID.test(keyid)) {
    throw new HotPatchError('INVALID', `key id ${JSON.stringify(keyid)} must be 1-128 of [A-Za-z0-9._:@-], starting with a letter or digit`);
  }
  const signal = options.signal;
  const repo = typeof repository === 'string' ? new FileSystemRepository(repository) : repository;
  if (!(repo instanceof FileSystemRepository)) throw new HotPatchError('INVALID', 'repository must be a directory or a FileSystemRepository');

  const envelope = decodeEnvelope(await repo.fetchEnvelope(patchId, signal));
  if (envelope.payloadType !== MANIFEST_PAYLOAD_TYPE) {
    throw new HotPatchError('INVALID', `envelope payloadType is ${JSON.stringify(envelope.payloadType)}, not a hot-patch manifest`);
  }
  const { manifest, facts } = parseManifest(envelope.payload);
  if (manifest.id !== patchId) throw new HotPatchError('INVALID', `manifest id ${manifest.id} does not match the patch id ${patchId}`);
  // A signature vouches for the payload too: never sign a manifest whose payload drifted.
  await checkPayloadStream(manifest, facts, repo.openPayload(patchId, manifest.payload_size + 1, signal));

  // A key id names one key: a signature under it that this key did not make (another key given
  // the same --keyid by mistake) is not replaced unless asked, or a valid signature would be lost.
  const message = pae(envelope.payloadType, envelope.payload);
  const other = envelope.signatures.find((s) => s.keyid === keyid && !verifySignature(signer.publicKey, message, s.sig));
  if (other !== undefined && options.replaceOtherKey !== true) {
    throw new HotPatchError(
      'INVALID',
      `${patchId} already carries a signature by ${keyid} that this ${signer.publicKey.alg} key did not make: a key id names one key (pass this key's own id, or replace the other key's signature on purpose)`,
      { detail: { option: 'keyid' } },
    );
  }
  // A key on a token or in a KMS signs there: the private key never passes through here.
  const sig = await signer.sign(message);
  const signatures = envelope.signatures.filter((s) => s.keyid !== keyid);
  const replaced = signatures.length !== envelope.signatures.length;
  signatures.push({ keyid, sig });
  await repo.writeEnvelope(patchId, encodeEnvelope({ ...envelope, signatures }), signal);
  return {
    id: patchId,
    keyid,
    alg: signer.publicKey.alg,
    signatures: signatures.map((s) => s.keyid),
    replaced,
    counts: manifest.signers.length === 0 || manifest.signers.includes(keyid),
    manifest,
  };
}

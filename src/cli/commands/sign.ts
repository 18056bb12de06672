import { basename } from 'node:path';
import { isPatchId } from '../../core/index.js';
import { FileKeyProvider, Pkcs11KeyProvider } from '../../keys/index.js';
import { signPatch } from '../../verification/index.js';
import { optionalString, parseCommandArgs, requireString } from '../args.js';
import { EXIT_OK, UsageError } from '../cli-error.js';
import { printHelp, type Command } from '../command.js';
import { PKCS11_FLAGS, PKCS11_USAGE, pkcs11Options } from '../pkcs11-flags.js';
import { loadPrivateKey } from '../private-key-file.js';

const KEYID = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/;

export const signCommand: Command = {
  name: 'sign',
  summary: 'add a signature to a packed patch',
  usage: `hotpatch sign --repo DIR --id ID --key DIR/KEYID.key [--keyid KEYID] [--json]
hotpatch sign --repo DIR --id ID ${PKCS11_USAGE} --keyid KEYID [--json]

Checks that DIR/ID.bin still matches the manifest's size and hash, then signs the
DSSE PAE of the manifest with the key and adds (or replaces) the signature for
KEYID (default: the key file's name without .key). With --pkcs11-module the key is
the key pair labelled --key-label on the PKCS#11 token --token: the token signs,
the private key never leaves it.`,
  async run(argv, out) {
    const { values, help } = parseCommandArgs(argv, {
      repo: { type: 'string' },
      id: { type: 'string' },
      key: { type: 'string' },
      keyid: { type: 'string' },
      ...PKCS11_FLAGS,
    });
    if (help) return printHelp(out, this.usage);
    const repoDir = requireString(values, 'repo');
    const id = requireString(values, 'id');
    if (!isPatchId(id)) throw new UsageError(`--id ${JSON.stringify(id)} is not a valid patch id`);
    const token = await pkcs11Options(values);
    if (token !== undefined && values.key !== undefined) throw new UsageError('give --key or a PKCS#11 key, not both');
    const keyPath = token === undefined ? requireString(values, 'key') : undefined;
    const keyid = optionalString(values, 'keyid') ?? (keyPath === undefined ? undefined : basename(keyPath).replace(/\.key$/, ''));
    if (keyid === undefined) throw new UsageError("a PKCS#11 key needs --keyid: the trust store's name for it");
    if (!KEYID.test(keyid)) throw new UsageError(`key id ${JSON.stringify(keyid)} must be 1-128 of [A-Za-z0-9._:@-]; pass --keyid`);
    const signer = token === undefined ? new FileKeyProvider(await loadPrivateKey(keyPath!, (text) => out.warn(text))) : Pkcs11KeyProvider.open(token);
    let signed;
    try {
      signed = await signPatch(repoDir, id, signer, { keyid });
    } finally {
      if (signer instanceof Pkcs11KeyProvider) signer.close();
    }
    if (!signed.counts) {
      out.warn(`${keyid} is not among the manifest's signers (${signed.manifest.signers.join(', ')}); its signature will not count`);
    }
    const { replaced, signatures } = signed;

    // One line for people, the same text as the --json object's message.
    out.success(`${replaced ? 're-signed' : 'signed'} ${signed.id} as ${keyid} (${signed.alg}); ${signatures.length} signature(s) now`, {
      id: signed.id,
      keyid,
      alg: signed.alg,
      signatures,
      replaced,
    });
    return EXIT_OK;
  },
};

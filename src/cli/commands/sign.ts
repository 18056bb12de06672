import { isPatchId } from '../../core/index.js';
import { signPatch } from '../../verification/index.js';
import { parseCommandArgs, requireString } from '../args.js';
import { EXIT_OK, UsageError, asFlagError } from '../cli-error.js';
import { printHelp, type Command } from '../command.js';
import { PKCS11_FLAGS, PKCS11_USAGE } from '../pkcs11-flags.js';
import { signingKeyOf, withSigner } from '../signing-key.js';

export const signCommand: Command = {
  name: 'sign',
  summary: 'add a signature to a packed patch',
  usage: `hotpatch sign --repo DIR --id ID --key DIR/KEYID.key [--keyid KEYID] [--replace-other-key] [--json]
hotpatch sign --repo DIR --id ID ${PKCS11_USAGE} --keyid KEYID [--replace-other-key] [--json]

Checks that DIR/ID.bin still matches the manifest's size and hash, then signs the
DSSE PAE of the manifest with the key and adds (or replaces) the signature for
KEYID (default: the key file's name without .key). A signature under KEYID that
another key made is kept (exit 2) unless --replace-other-key: a key id names one key.
With --pkcs11-module the key is
the key pair labelled --key-label on the PKCS#11 token --token: the token signs,
the private key never leaves it.`,
  async run(argv, out) {
    const { values, help } = parseCommandArgs(argv, {
      repo: { type: 'string' },
      id: { type: 'string' },
      key: { type: 'string' },
      keyid: { type: 'string' },
      'replace-other-key': { type: 'boolean' },
      ...PKCS11_FLAGS,
    });
    if (help) return printHelp(out, this.usage);
    const repoDir = requireString(values, 'repo');
    const id = requireString(values, 'id');
    if (!isPatchId(id)) throw new UsageError(`--id ${JSON.stringify(id)} is not a valid patch id`);
    const key = await signingKeyOf(values);
    const { keyid } = key;
    const signed = await withSigner(
      key,
      (text) => out.warn(text),
      (signer) => signPatch(repoDir, id, signer, { keyid, replaceOtherKey: values['replace-other-key'] === true }),
    ).catch((error: unknown) => {
      // Another key's signature under --keyid: the flag is wrong, nothing was written (exit 2).
      throw asFlagError(error, () => `--keyid ${keyid}: `);
    });
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

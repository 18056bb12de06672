import { signRepositoryIndex } from '../../verification/index.js';
import { integerFlag, optionalString, parseCommandArgs, requireString } from '../args.js';
import { EXIT_OK, UsageError, asFlagError } from '../cli-error.js';
import { printHelp, type Command } from '../command.js';
import { PKCS11_FLAGS, PKCS11_USAGE } from '../pkcs11-flags.js';
import { signingKeyOf, withSigner } from '../signing-key.js';

export const indexCommand: Command = {
  name: 'index',
  summary: "write and sign a repository directory's index (index.json)",
  usage: `hotpatch index --repo DIR --key KEYID.key [--keyid KEYID] [--expires ISO] [--version N] [--json]
hotpatch index --repo DIR --key KEYID.key [--keyid KEYID] --add-signature [--json]

Writes DIR/index.json: every patch of DIR (each manifest checked against its payload)
with its target, version, manifest hash, payload hash and size, under the next index
version (or --version N, above the current one), expiring at --expires (default 7
days), signed by the key (a key of the trust store's index role). With --add-signature
the key signs the index already there instead (an index threshold above 1). Run it
after every pack/sign and before the index expires: agents refuse an expired index.
With ${PKCS11_USAGE} (and --keyid) instead of --key, the index key on a PKCS#11
token signs.`,
  async run(argv, out) {
    const { values, help } = parseCommandArgs(argv, {
      repo: { type: 'string' },
      key: { type: 'string' },
      keyid: { type: 'string' },
      expires: { type: 'string' },
      version: { type: 'string' },
      'add-signature': { type: 'boolean' },
      ...PKCS11_FLAGS,
    });
    if (help) return printHelp(out, this.usage);
    const repoDir = requireString(values, 'repo');
    const key = await signingKeyOf(values);
    const { keyid } = key;
    const addSignature = values['add-signature'] === true;
    const expires = optionalString(values, 'expires');
    const version = values.version === undefined ? undefined : integerFlag(values, 'version', 1);
    if (addSignature && (expires !== undefined || version !== undefined))
      throw new UsageError('--add-signature signs the index as it is: drop --expires and --version');
    const signed = await withSigner(
      key,
      (text) => out.warn(text),
      (signer) =>
        signRepositoryIndex(repoDir, signer, {
          keyid,
          addSignature,
          ...(expires === undefined ? {} : { expires }),
          ...(version === undefined ? {} : { version }),
        }),
    ).catch((error: unknown) => {
      // A --version or --expires the index refuses is a bad flag (exit 2), not a refused index.
      throw asFlagError(error, (option) => `--${option}: `);
    });
    out.success(
      `${addSignature ? 'signed' : 'wrote'} index version ${signed.version} of ${repoDir} (${signed.patches} patch${signed.patches === 1 ? '' : 'es'}, expires ${signed.expires}); signatures: ${signed.signatures.join(', ')}`,
      { ...signed },
    );
    return EXIT_OK;
  },
};

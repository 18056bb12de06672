import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { HotPatchError } from '../../core/index.js';
import {
  RECIPIENT_ALGORITHMS,
  SIGNATURE_ALGORITHMS,
  generateKeyPair,
  generateRecipientKey,
  isSignatureAlgorithm,
  type RecipientAlgorithm,
  type SignatureAlgorithm,
} from '../../crypto-agile/index.js';
import { writeFileExclusive } from '../../repo/index.js';
import { parseCommandArgs, requireString } from '../args.js';
import { EXIT_OK, UsageError } from '../cli-error.js';
import { printHelp, type Command } from '../command.js';

const KEYID = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/;

export const keygenCommand: Command = {
  name: 'keygen',
  summary: 'create a signing or recipient key pair (KEYID.key 0600 PKCS#8, KEYID.pub SPKI)',
  usage: `hotpatch keygen --alg ${[...SIGNATURE_ALGORITHMS, ...RECIPIENT_ALGORITHMS].join('|')} --out DIR --name KEYID [--json]

Writes DIR/KEYID.key (PKCS#8 PEM, mode 0600) and DIR/KEYID.pub (SPKI PEM).
Refuses to overwrite existing files. The private key is never printed; the
public key (and for a signing key its trust-store entry) is. ${RECIPIENT_ALGORITHMS.join(', ')}
make a recipient key: payloads are encrypted to its .pub (hotpatch pack --encrypt-to)
and an agent decrypts with its .key.`,
  async run(argv, out) {
    const { values, help } = parseCommandArgs(argv, {
      alg: { type: 'string' },
      out: { type: 'string' },
      name: { type: 'string' },
    });
    if (help) return printHelp(out, this.usage);
    const alg = requireString(values, 'alg');
    const recipient = (RECIPIENT_ALGORITHMS as readonly string[]).includes(alg);
    if (!isSignatureAlgorithm(alg) && !recipient) {
      throw new UsageError(`--alg must be one of ${[...SIGNATURE_ALGORITHMS, ...RECIPIENT_ALGORITHMS].join(', ')}, got ${JSON.stringify(alg)}`);
    }
    const dir = requireString(values, 'out');
    const keyid = requireString(values, 'name');
    if (!KEYID.test(keyid)) throw new UsageError(`--name ${JSON.stringify(keyid)} must be 1-128 of [A-Za-z0-9._:@-], starting with a letter or digit`);

    const { privateKey, publicKey } = recipient ? generateRecipientKey(alg as RecipientAlgorithm) : generateKeyPair(alg as SignatureAlgorithm);
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 });
    } catch (cause) {
      throw new HotPatchError('IO', `cannot create ${dir}: ${(cause as Error).message}`, { cause });
    }
    const keyPath = join(dir, `${keyid}.key`);
    const pubPath = join(dir, `${keyid}.pub`);
    try {
      await writeFileExclusive(keyPath, privateKey.toPem(), { mode: 0o600 });
      try {
        await writeFileExclusive(pubPath, publicKey.toPem(), { mode: 0o644 });
      } catch (error) {
        // Never leave half a key pair behind: the private key we just wrote goes too.
        await rm(keyPath, { force: true });
        throw error;
      }
    } catch (error) {
      // An existing key is never replaced: the operator named a taken name (exit 2).
      if (error instanceof HotPatchError && error.code === 'INVALID') throw new UsageError(error.message, 'INVALID', { cause: error });
      throw error;
    }
    out.line(`private key: ${keyPath} (mode 0600)`);
    out.line(`public key:  ${pubPath}`);
    out.line(`fingerprint: sha256:${publicKey.fingerprint}`);
    out.success(`created ${alg} key ${keyid}`, {
      keyid,
      alg,
      private_key_path: keyPath,
      public_key_path: pubPath,
      fingerprint: `sha256:${publicKey.fingerprint}`,
      ...(recipient ? {} : { trust_entry: { [keyid]: { alg, public_key: publicKey.toPem() } } }),
    });
    return EXIT_OK;
  },
};

import { mkdir, rm, stat } from 'node:fs/promises';
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
import { optionalString, parseCommandArgs, requireString } from '../args.js';
import { EXIT_OK, UsageError } from '../cli-error.js';
import { printHelp, type Command } from '../command.js';
import type { Output } from '../output.js';
import { PKCS11_FLAGS, PKCS11_USAGE, pkcs11Options } from '../pkcs11-flags.js';
import { Pkcs11KeyProvider, Pkcs11RecipientKey, type Pkcs11KeyOptions } from '../../keys/index.js';

const KEYID = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/;

export const keygenCommand: Command = {
  name: 'keygen',
  summary: 'create a signing or recipient key pair (KEYID.key 0600 PKCS#8, KEYID.pub SPKI)',
  usage: `hotpatch keygen --alg ALG --out DIR --name KEYID [--json]
hotpatch keygen --alg ALG ${PKCS11_USAGE} [--name KEYID] [--out DIR] [--json]

Writes DIR/KEYID.key (PKCS#8 PEM, mode 0600) and DIR/KEYID.pub (SPKI PEM).
Refuses to overwrite existing files. The private key is never printed; the
public key (and for a signing key its trust-store entry) is. ALG is a signing
algorithm (${SIGNATURE_ALGORITHMS.join(', ')}) or a recipient one
(${RECIPIENT_ALGORITHMS.join(', ')}): payloads are encrypted to a recipient's .pub
(hotpatch pack --encrypt-to) and an agent decrypts with its .key. With
--pkcs11-module the key pair is made on the PKCS#11 token (signing: ecdsa-p256-sha256,
rsa-pss-sha256 or ed25519; recipient: rsa-oaep-sha256, for decryption only; the
private key sensitive, never extractable) and its public key (and a signing key's
trust-store entry, under --name, default the key label) printed; with --out, the public
key is also written to DIR/KEYID.pub (for trust add-key, or pack --encrypt-to).`,
  async run(argv, out) {
    const { values, help } = parseCommandArgs(argv, {
      alg: { type: 'string' },
      out: { type: 'string' },
      name: { type: 'string' },
      ...PKCS11_FLAGS,
    });
    if (help) return printHelp(out, this.usage);
    const token = await pkcs11Options(values);
    if (token !== undefined)
      return onToken(token, requireString(values, 'alg'), optionalString(values, 'name') ?? token.keyLabel, optionalString(values, 'out'), out);
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

/**
 * `keygen --pkcs11-…`: the key pair made on the token; its public key (and a signing key's trust
 * entry) printed, and with --out written to DIR/KEYID.pub (the private key stays on the token).
 */
async function onToken(token: Pkcs11KeyOptions, alg: string, keyid: string, dir: string | undefined, out: Output): Promise<number> {
  if (!KEYID.test(keyid)) throw new UsageError(`--name ${JSON.stringify(keyid)} must be 1-128 of [A-Za-z0-9._:@-]`);
  const recipient = alg === 'rsa-oaep-sha256';
  if (!recipient && (!isSignatureAlgorithm(alg) || alg === 'ml-dsa-65'))
    throw new UsageError(`a token key is ecdsa-p256-sha256, rsa-pss-sha256 or ed25519 (signing), or rsa-oaep-sha256 (recipient), got ${JSON.stringify(alg)}`);
  const pubPath = dir === undefined ? undefined : join(dir, `${keyid}.pub`);
  // Checked before the key is made: a taken name must not leave a key on the token and no file.
  if (
    pubPath !== undefined &&
    (await stat(pubPath).then(
      () => true,
      () => false,
    ))
  )
    throw new UsageError(`${pubPath} already exists: choose another --name`);
  let pem: string;
  let fingerprint: string;
  try {
    if (recipient) {
      const key = Pkcs11RecipientKey.generate(token, alg);
      [pem, fingerprint] = [key.recipientKey.toPem(), key.recipientKey.fingerprint];
      key.close();
    } else {
      const provider = Pkcs11KeyProvider.generate(token, alg as SignatureAlgorithm);
      [pem, fingerprint] = [provider.publicKey.toPem(), provider.publicKey.fingerprint];
      provider.close();
    }
  } catch (error) {
    // A label already taken on the token is the operator's choice of name (exit 2).
    if (error instanceof HotPatchError && error.code === 'INVALID') throw new UsageError(error.message, 'INVALID', { cause: error });
    throw error;
  }
  if (dir !== undefined && pubPath !== undefined) {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await writeFileExclusive(pubPath, pem, { mode: 0o644 });
  }
  const trustEntry = recipient ? undefined : { [keyid]: { alg, public_key: pem } };
  out.line(`created on token ${token.token}: key pair ${token.keyLabel} (${alg}); the private key never leaves the token`);
  if (pubPath !== undefined) out.line(`public key:  ${pubPath}`);
  out.line(`fingerprint: sha256:${fingerprint}`);
  out.line(pem.trimEnd());
  if (trustEntry !== undefined) out.line(`trust entry (for the trust store's "keys"): ${JSON.stringify(trustEntry)}`);
  out.success(`created ${alg} key ${token.keyLabel} on token ${token.token}`, {
    keyid,
    alg,
    token: token.token,
    key_label: token.keyLabel,
    fingerprint: `sha256:${fingerprint}`,
    public_key: pem,
    ...(pubPath === undefined ? {} : { public_key_path: pubPath }),
    ...(trustEntry === undefined ? {} : { trust_entry: trustEntry }),
  });
  return EXIT_OK;
}

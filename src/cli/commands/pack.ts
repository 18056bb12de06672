import { HotPatchError, PAYLOAD_TYPES, isPatchId, type ManifestConstraints, type PayloadType } from '../../core/index.js';
import { basename } from 'node:path';
import { HASH_ALGORITHMS, importRecipientPublicKey, isHashAlgorithm, type HashAlgorithm, type PayloadRecipient } from '../../crypto-agile/index.js';
import { DEFAULT_PATCH_LIFETIME_MS, packPatch, readFileBounded, type PackedPatch } from '../../repo/index.js';
import { integerFlag, keyValuePairs, optionalString, parseCommandArgs, requireString, stringList } from '../args.js';
import { EXIT_OK, UsageError, asFlagError } from '../cli-error.js';
import { printHelp, type Command } from '../command.js';

const DEFAULT_LIFETIME_DAYS = DEFAULT_PATCH_LIFETIME_MS / 86_400_000;

export const packCommand: Command = {
  name: 'pack',
  summary: 'put a payload and its unsigned manifest into a repository',
  usage: `hotpatch pack --repo DIR --id ID --target T --version V --type ${PAYLOAD_TYPES.join('|')} --payload FILE
                [--expires ISO] [--signer KEYID]... [--meta key=value]...
                [--hash ${HASH_ALGORITHMS.join('|')}] [--created-at ISO]
                [--platform OS-ARCH]... [--node RANGE] [--requires COMPONENT=RANGE]...
                [--encrypt-to [KID=]PUBFILE]... [--chunk-size BYTES] [--force] [--json]

Copies FILE to DIR/ID.bin and writes DIR/ID.json: a DSSE envelope with no signatures yet,
whose manifest records the payload's size and hash. --expires defaults to ${DEFAULT_LIFETIME_DAYS} days after
--created-at (default: now). --signer names the key ids whose signatures may count. Refuses
to replace an existing patch unless --force. --encrypt-to encrypts the payload (AES-256-GCM in
chunks, a fresh data key wrapped to each recipient: an X25519, RSA or ML-KEM-768 public key
made by hotpatch keygen; KID defaults to the file's name without .pub): ID.bin is then the
ciphertext, which payload_hash covers, and the manifest's encryption field names the
recipients and the plaintext's hash and size.`,
  async run(argv, out) {
    const { values, help } = parseCommandArgs(argv, {
      repo: { type: 'string' },
      id: { type: 'string' },
      target: { type: 'string' },
      version: { type: 'string' },
      type: { type: 'string' },
      payload: { type: 'string' },
      expires: { type: 'string' },
      signer: { type: 'string', multiple: true },
      meta: { type: 'string', multiple: true },
      hash: { type: 'string' },
      'created-at': { type: 'string' },
      platform: { type: 'string', multiple: true },
      node: { type: 'string' },
      requires: { type: 'string', multiple: true },
      force: { type: 'boolean' },
      'encrypt-to': { type: 'string', multiple: true },
      'chunk-size': { type: 'string' },
    });
    if (help) return printHelp(out, this.usage);
    const repoDir = requireString(values, 'repo');
    const id = requireString(values, 'id');
    if (!isPatchId(id))
      throw new UsageError(`--id ${JSON.stringify(id)} is not a valid patch id (1-128 of [A-Za-z0-9._-], starting with a letter or digit, no "..")`);
    const payloadPath = requireString(values, 'payload');
    const hashAlg: HashAlgorithm = (() => {
      const h = optionalString(values, 'hash') ?? 'sha256';
      if (!isHashAlgorithm(h)) throw new UsageError(`--hash must be one of ${HASH_ALGORITHMS.join(', ')}, got ${JSON.stringify(h)}`);
      return h;
    })();

    const constraints: ManifestConstraints = {};
    const platforms = stringList(values, 'platform');
    if (platforms.length > 0) constraints.platforms = platforms;
    const node = optionalString(values, 'node');
    if (node !== undefined) constraints.node = node;
    const requires = keyValuePairs(values, 'requires');
    if (Object.keys(requires).length > 0) constraints.requires = requires;
    const meta = keyValuePairs(values, 'meta');
    const createdAt = optionalString(values, 'created-at');
    const expires = optionalString(values, 'expires');

    const encryptTo = await recipientsOf(stringList(values, 'encrypt-to'));
    const chunkSize = values['chunk-size'] === undefined ? undefined : integerFlag(values, 'chunk-size', 1024);
    if (chunkSize !== undefined && chunkSize > 16 * 1024 * 1024) throw new UsageError(`--chunk-size must be at most ${16 * 1024 * 1024}, got ${chunkSize}`);
    if (chunkSize !== undefined && encryptTo.length === 0) throw new UsageError('--chunk-size is for an encrypted payload: add --encrypt-to');

    let packed: PackedPatch;
    try {
      packed = await packPatch(repoDir, {
        id,
        target: requireString(values, 'target'),
        version: requireString(values, 'version'),
        type: requireString(values, 'type') as PayloadType, // checked by the manifest parser
        payload: { fromFile: payloadPath },
        hash: hashAlg,
        ...(createdAt === undefined ? {} : { createdAt }),
        ...(expires === undefined ? {} : { expires }),
        signers: stringList(values, 'signer'),
        ...(Object.keys(constraints).length > 0 ? { constraints } : {}),
        ...(Object.keys(meta).length > 0 ? { metadata: meta } : {}),
        force: values.force === true,
        ...(encryptTo.length === 0 ? {} : { encryptTo }),
        ...(chunkSize === undefined ? {} : { chunkSize }),
      });
    } catch (error) {
      // A value the flags gave that packPatch refuses (it names it: detail.option — the
      // manifest's fields, --encrypt-to's kids and count) is a usage error, not a rejected patch.
      if (error instanceof HotPatchError && error.code === 'INVALID' && error.detail?.option === 'force') {
        throw new UsageError(`${error.message}; pass --force to replace it`, 'INVALID', { cause: error });
      }
      throw asFlagError(error);
    }
    const { manifest } = packed;
    const size = manifest.payload_size;

    // One headline, then the figures; with --json the object alone (the headline is its message).
    const headline = `packed ${manifest.id} into ${repoDir}: ${manifest.target} ${manifest.version} (${manifest.payload_type}, ${size} bytes), unsigned: run hotpatch sign`;
    out.line(headline);
    out.line(`payload_hash: ${manifest.payload_hash}`);
    out.line(`expires:      ${manifest.expires ?? 'never'}`);
    if (manifest.encryption !== undefined) out.line(`encrypted to: ${manifest.encryption.recipients.map((r) => `${r.kid} (${r.alg})`).join(', ')}`);
    if (out.json) {
      out.success(headline, {
        id: manifest.id,
        target: manifest.target,
        version: manifest.version,
        payload_hash: manifest.payload_hash,
        payload_size: size,
        expires: manifest.expires,
        ...(manifest.encryption === undefined ? {} : { encrypted_to: manifest.encryption.recipients.map((r) => r.kid) }),
      });
    }
    return EXIT_OK;
  },
};

/** `--encrypt-to [KID=]PUBFILE` values → recipients (an unreadable or unusable key is a usage error). */
async function recipientsOf(values: readonly string[]): Promise<PayloadRecipient[]> {
  const recipients: PayloadRecipient[] = [];
  for (const value of values) {
    const eq = value.indexOf('=');
    const file = eq === -1 ? value : value.slice(eq + 1);
    const kid = eq === -1 ? basename(file).replace(/\.pub$/, '') : value.slice(0, eq);
    try {
      const key = importRecipientPublicKey(new TextDecoder().decode(await readFileBounded(file, 64 * 1024, { noFollow: false, what: 'recipient public key' })));
      recipients.push({ kid, key });
    } catch (error) {
      if (error instanceof HotPatchError && error.code !== 'IO') throw new UsageError(`--encrypt-to ${value}: ${error.message}`, error.code, { cause: error });
      throw error;
    }
  }
  return recipients;
}

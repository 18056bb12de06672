import { HotPatchError, PAYLOAD_TYPES, isPatchId, type ManifestConstraints, type PayloadType } from '../../core/index.js';
import { HASH_ALGORITHMS, isHashAlgorithm, type HashAlgorithm } from '../../crypto-agile/index.js';
import { DEFAULT_PATCH_LIFETIME_MS, packPatch, type PackedPatch } from '../../repo/index.js';
import { keyValuePairs, optionalString, parseCommandArgs, requireString, stringList } from '../args.js';
import { EXIT_OK, UsageError } from '../cli-error.js';
import { printHelp, type Command } from '../command.js';

const DEFAULT_LIFETIME_DAYS = DEFAULT_PATCH_LIFETIME_MS / 86_400_000;

export const packCommand: Command = {
  name: 'pack',
  summary: 'put a payload and its unsigned manifest into a repository',
  usage: `hotpatch pack --repo DIR --id ID --target T --version V --type ${PAYLOAD_TYPES.join('|')} --payload FILE
                [--expires ISO] [--signer KEYID]... [--meta key=value]...
                [--hash ${HASH_ALGORITHMS.join('|')}] [--created-at ISO]
                [--platform OS-ARCH]... [--node RANGE] [--requires COMPONENT=RANGE]...
                [--force] [--json]

Copies FILE to DIR/ID.bin and writes DIR/ID.json: a DSSE envelope with no signatures yet,
whose manifest records the payload's size and hash. --expires defaults to ${DEFAULT_LIFETIME_DAYS} days after
--created-at (default: now). --signer names the key ids whose signatures may count. Refuses
to replace an existing patch unless --force.`,
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
      });
    } catch (error) {
      // Every field came from a flag: a bad one is a usage error, not a rejected patch.
      const option = error instanceof HotPatchError && error.code === 'INVALID' ? error.detail?.option : undefined;
      if (option === 'force') throw new UsageError(`${(error as HotPatchError).message}; pass --force to replace it`, 'INVALID', { cause: error });
      if (typeof option === 'string') throw new UsageError((error as HotPatchError).message, 'INVALID', { cause: error });
      throw error;
    }
    const { manifest } = packed;
    const size = manifest.payload_size;

    // One headline, then the figures; with --json the object alone (the headline is its message).
    const headline = `packed ${manifest.id} into ${repoDir}: ${manifest.target} ${manifest.version} (${manifest.payload_type}, ${size} bytes), unsigned: run hotpatch sign`;
    out.line(headline);
    out.line(`payload_hash: ${manifest.payload_hash}`);
    out.line(`expires:      ${manifest.expires ?? 'never'}`);
    if (out.json) {
      out.success(headline, {
        id: manifest.id,
        target: manifest.target,
        version: manifest.version,
        payload_hash: manifest.payload_hash,
        payload_size: size,
        expires: manifest.expires,
      });
    }
    return EXIT_OK;
  },
};

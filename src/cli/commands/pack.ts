import { createReadStream } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import {
  HotPatchError,
  MANIFEST_PAYLOAD_TYPE,
  PAYLOAD_TYPES,
  encodeEnvelope,
  isPatchId,
  parseManifest,
  type Manifest,
} from '../../core/index.js';
import { HASH_ALGORITHMS, hashProvider, isHashAlgorithm, type HashAlgorithm } from '../../crypto-agile/index.js';
import { FileSystemRepository } from '../../repo/index.js';
import { keyValuePairs, optionalString, parseCommandArgs, requireString, stringList } from '../args.js';
import { EXIT_OK, UsageError } from '../cli-error.js';
import { printHelp, type Command } from '../command.js';

const DEFAULT_LIFETIME_DAYS = 90;

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
    if (!isPatchId(id)) throw new UsageError(`--id ${JSON.stringify(id)} is not a valid patch id (1-128 of [A-Za-z0-9._-], starting with a letter or digit, no "..")`);
    const payloadPath = requireString(values, 'payload');
    const hashAlg: HashAlgorithm = (() => {
      const h = optionalString(values, 'hash') ?? 'sha256';
      if (!isHashAlgorithm(h)) throw new UsageError(`--hash must be one of ${HASH_ALGORITHMS.join(', ')}, got ${JSON.stringify(h)}`);
      return h;
    })();

    const createdAtText = optionalString(values, 'created-at');
    const createdAt = createdAtText ?? new Date(Math.floor(Date.now() / 1000) * 1000).toISOString().replace('.000Z', 'Z');
    const createdMs = Date.parse(createdAt);
    const expires =
      optionalString(values, 'expires') ??
      (Number.isNaN(createdMs) ? undefined : new Date(createdMs + DEFAULT_LIFETIME_DAYS * 86_400_000).toISOString().replace('.000Z', 'Z'));

    // Size and hash first, from the source file; every field is then checked by the same
    // strict parser the verifier uses, before anything is written to the repository.
    const { size, digestHex } = await hashFile(payloadPath, hashAlg);
    const draft: Record<string, unknown> = {
      id,
      target: requireString(values, 'target'),
      version: requireString(values, 'version'),
      created_at: createdAt,
      expires,
      signers: stringList(values, 'signer'),
      payload_hash: `${hashAlg}:${digestHex}`,
      payload_size: size,
      payload_type: requireString(values, 'type'),
    };
    const constraints: Record<string, unknown> = {};
    const platforms = stringList(values, 'platform');
    if (platforms.length > 0) constraints.platforms = platforms;
    const node = optionalString(values, 'node');
    if (node !== undefined) constraints.node = node;
    const requires = keyValuePairs(values, 'requires');
    if (Object.keys(requires).length > 0) constraints.requires = requires;
    if (Object.keys(constraints).length > 0) draft.constraints = constraints;
    const meta = keyValuePairs(values, 'meta');
    if (Object.keys(meta).length > 0) draft.metadata = meta;

    let manifest: Manifest;
    try {
      manifest = parseManifest(draft).manifest;
    } catch (error) {
      // Every field came from a flag: a bad one is a usage error, not a rejected patch.
      if (error instanceof HotPatchError && error.code === 'INVALID') throw new UsageError(error.message);
      throw error;
    }

    try {
      await mkdir(repoDir, { recursive: true });
    } catch (cause) {
      throw new HotPatchError('IO', `cannot create repository directory ${repoDir}: ${(cause as Error).message}`, { cause });
    }
    const repo = new FileSystemRepository(repoDir);
    if (values.force !== true && (await repo.list()).includes(manifest.id)) {
      throw new UsageError(`patch ${manifest.id} already exists in ${repoDir}; pass --force to replace it (its signatures are lost)`);
    }
    const body = new TextEncoder().encode(JSON.stringify(manifest));
    const envelopeJson = encodeEnvelope({ payloadType: MANIFEST_PAYLOAD_TYPE, payload: body, signatures: [] });
    // The copy is checked against what was hashed before it is renamed into place, so a
    // source file that changes meanwhile leaves the repository untouched.
    await repo.publish(manifest.id, envelopeJson, { fromFile: payloadPath }, {
      expectedSize: size,
      ...(hashAlg === 'sha256' ? { expectedSha256: digestHex } : {}),
    });

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

async function hashFile(path: string, alg: HashAlgorithm): Promise<{ size: number; digestHex: string }> {
  let info;
  try {
    info = await stat(path);
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new HotPatchError('NOT_FOUND', `payload file ${path} does not exist`, { cause });
    throw new HotPatchError('IO', `cannot read payload file ${path}: ${(cause as Error).message}`, { cause });
  }
  if (!info.isFile()) throw new UsageError(`--payload ${path} is not a regular file`);
  const hasher = hashProvider(alg).create();
  let size = 0;
  try {
    for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
      const bytes = chunk as Buffer;
      size += bytes.byteLength;
      hasher.update(bytes);
    }
  } catch (cause) {
    throw new HotPatchError('IO', `cannot read payload file ${path}: ${(cause as Error).message}`, { cause });
  }
  return { size, digestHex: Buffer.from(hasher.digest()).toString('hex') };
}

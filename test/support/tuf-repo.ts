/*
 * A real TUF repository for tests, made with the TUF tooling on npm (@tufjs/models): root,
 * targets, snapshot and timestamp metadata, each signed by its own Ed25519 key, written into a
 * metadata directory, with the targets in another. Versions and expiries are the test's to set,
 * so a frozen, rolled-back or rotated repository is one call away.
 */
import { createHash, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Key, MetaFile, Metadata, Root, Signature, Snapshot, TargetFile, Targets, Timestamp } from '@tufjs/models';

export interface TufKey {
  key: Key;
  privateKey: KeyObject;
}

export function tufKey(): TufKey {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url').toString('hex');
  const keyID = createHash('sha256').update(raw).digest('hex');
  return { key: new Key({ keyID, keyType: 'ed25519', scheme: 'ed25519', keyVal: { public: raw } }), privateKey };
}

const signer =
  (k: TufKey) =>
  (data: Buffer): Signature =>
    new Signature({ keyID: k.key.keyID, sig: sign(null, data, k.privateKey).toString('hex') });

export interface TufRoles {
  root: TufKey;
  targets: TufKey;
  snapshot: TufKey;
  timestamp: TufKey;
}

export function tufRoles(): TufRoles {
  return { root: tufKey(), targets: tufKey(), snapshot: tufKey(), timestamp: tufKey() };
}

const inDays = (days: number): string => new Date(Date.now() + days * 86_400_000).toISOString().replace(/\.\d+Z$/, 'Z');

/** Root metadata `version` naming `roles`' keys, signed by each of `signedBy` (default: its own root key). */
export function rootMetadata(roles: TufRoles, version: number, signedBy: readonly TufKey[] = [roles.root]): Buffer {
  const root = new Root({ version, specVersion: '1.0.31', expires: inDays(365), consistentSnapshot: false });
  for (const [role, k] of Object.entries(roles) as [keyof TufRoles, TufKey][]) root.addKey(k.key, role);
  const md = new Metadata(root);
  for (const k of signedBy) md.sign(signer(k), true);
  return Buffer.from(JSON.stringify(md.toJSON()));
}

export interface PublishTufOptions {
  /** The targets' files: name → bytes. */
  files: Record<string, Uint8Array>;
  /** One version for targets, snapshot and timestamp (default 1). */
  version?: number;
  /** Days until the timestamp expires (negative: expired; default 1). */
  timestampDays?: number;
}

/** Writes targets.json, snapshot.json and timestamp.json (and the target files) for `files`. */
export async function publishTuf(metadataDir: string, targetsDir: string, roles: TufRoles, options: PublishTufOptions): Promise<void> {
  const version = options.version ?? 1;
  await mkdir(metadataDir, { recursive: true });
  await mkdir(targetsDir, { recursive: true });
  const targets = new Targets({ version, specVersion: '1.0.31', expires: inDays(30) });
  for (const [name, bytes] of Object.entries(options.files)) {
    await writeFile(join(targetsDir, name), bytes);
    targets.targets[name] = new TargetFile({ path: name, length: bytes.length, hashes: { sha256: createHash('sha256').update(bytes).digest('hex') } });
  }
  const targetsMd = new Metadata(targets);
  targetsMd.sign(signer(roles.targets));
  const targetsBytes = Buffer.from(JSON.stringify(targetsMd.toJSON()));
  const snapshot = new Metadata(new Snapshot({ version, specVersion: '1.0.31', expires: inDays(7), meta: { 'targets.json': new MetaFile({ version }) } }));
  snapshot.sign(signer(roles.snapshot));
  const snapshotBytes = Buffer.from(JSON.stringify(snapshot.toJSON()));
  const timestamp = new Metadata(
    new Timestamp({
      version,
      specVersion: '1.0.31',
      expires: new Date(Date.now() + (options.timestampDays ?? 1) * 86_400_000).toISOString().replace(/\.\d+Z$/, 'Z'),
      snapshotMeta: new MetaFile({ version }),
    }),
  );
  timestamp.sign(signer(roles.timestamp));
  await writeFile(join(metadataDir, 'targets.json'), targetsBytes);
  await writeFile(join(metadataDir, 'snapshot.json'), snapshotBytes);
  await writeFile(join(metadataDir, 'timestamp.json'), Buffer.from(JSON.stringify(timestamp.toJSON())));
}

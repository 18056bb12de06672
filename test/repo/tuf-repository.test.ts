/*
 * TUF interoperability: a repository behind real TUF metadata (root, targets, snapshot,
 * timestamp made with @tufjs/models, served on loopback) read through tuf-js. A patch published
 * as TUF targets verifies; a frozen timestamp, a rolled-back one, a target that does not match
 * its hashes and an endless metadata file are refused with their codes; a root rotation is
 * followed.
 */
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { TufRepository, openRepository } from '../../src/repo/index.js';
import { verifyPatch } from '../../src/verification/index.js';
import { isCode } from '../support/assertions.js';
import { ciVerifier, publishPatch } from '../support/patches.js';
import { withTempDir } from '../support/temp-dir.js';
import { close, listen, requestedName, staticFiles } from '../support/static-server.js';
import { publishTuf, rootMetadata, tufKey, tufRoles } from '../support/tuf-repo.js';

const ID = 'tuf-fix-1';

/** A TUF repository of one patch, served: metadata and targets each by a loopback server. */
async function served(root: string) {
  const roles = tufRoles();
  const patchDir = join(root, 'patch');
  const { mkdir } = await import('node:fs/promises');
  await mkdir(patchDir);
  await publishPatch(patchDir, ID, 'xps.demo.f', '1.0.1', 'export const api = { f: () => 1 };');
  const files = { [`${ID}.json`]: await readFile(join(patchDir, `${ID}.json`)), [`${ID}.bin`]: await readFile(join(patchDir, `${ID}.bin`)) };
  const metadataDir = join(root, 'metadata');
  const targetsDir = join(root, 'targets');
  await publishTuf(metadataDir, targetsDir, roles, { files });
  const trustedRoot = rootMetadata(roles, 1);
  await writeFile(join(metadataDir, '1.root.json'), trustedRoot);
  const metadata = await listen(staticFiles(metadataDir));
  const targets = await listen(staticFiles(targetsDir));
  const repository = (cache = 'cache') => new TufRepository({ metadataUrl: metadata.url, targetsUrl: targets.url, trustedRoot, cacheDir: join(root, cache) });
  return { roles, files, metadataDir, targetsDir, metadata, targets, repository, close: () => Promise.all([close(metadata.server), close(targets.server)]) };
}

const withRoot = (body: (root: string) => Promise<void>): Promise<void> => withTempDir('hotpatch-tuf-', body);

test('a patch published as TUF targets is listed, fetched through tuf-js and verified', async () => {
  await withRoot(async (root) => {
    const s = await served(root);
    try {
      const repo = s.repository();
      // One caller's signal is its own: aborting it after its call never fails a later one.
      const first = new AbortController();
      assert.deepEqual(await repo.list(first.signal), [ID]);
      first.abort();
      const verified = await verifyPatch(repo, ciVerifier, ID);
      assert.equal(verified.manifest.version, '1.0.1');
      await assert.rejects(repo.fetchEnvelope(ID.replace('1', '9') as never), isCode('NOT_FOUND', /not a target of the TUF repository/));
      // As configuration names it (the agent's defaults.repository): the trusted root is a file.
      await writeFile(join(root, 'tuf-root.json'), rootMetadata(s.roles, 1));
      const configured = openRepository([
        { tuf: { metadataUrl: s.metadata.url, targetsUrl: s.targets.url, trustedRoot: join(root, 'tuf-root.json'), cacheDir: join(root, 'configured') } },
      ]);
      assert.equal((await verifyPatch(configured, ciVerifier, ID)).manifest.id, ID);
    } finally {
      await s.close();
    }
  });
});

test('freeze: an expired timestamp is EXPIRED; rollback: an older timestamp after a newer one is DOWNGRADE', async () => {
  await withRoot(async (root) => {
    const s = await served(root);
    try {
      const repo = s.repository();
      await publishTuf(s.metadataDir, s.targetsDir, s.roles, { files: s.files, version: 2 });
      await repo.refresh();
      // The repository goes back to version 1 (a replay).
      await publishTuf(s.metadataDir, s.targetsDir, s.roles, { files: s.files, version: 1 });
      await assert.rejects(repo.refresh(), isCode('DOWNGRADE', /TUF: the metadata: (Bad|Equal)VersionError/));
      // A frozen mirror: the timestamp has expired.
      await publishTuf(s.metadataDir, s.targetsDir, s.roles, { files: s.files, version: 3, timestampDays: -1 });
      await assert.rejects(s.repository('fresh-cache').refresh(), isCode('EXPIRED', /ExpiredMetadataError/));
    } finally {
      await s.close();
    }
  });
});

test('a target that does not match its TUF hashes is HASH_MISMATCH and never reaches the verifier; an endless timestamp is TOO_LARGE', async () => {
  await withRoot(async (root) => {
    const s = await served(root);
    try {
      await writeFile(join(s.targetsDir, `${ID}.bin`), 'export const api = { f: () => 2 };');
      await assert.rejects(verifyPatch(s.repository(), ciVerifier, ID), isCode('HASH_MISMATCH', /LengthOrHashMismatchError|hash/i));
      const endless = await listen((req, res) => {
        if (requestedName(req) !== 'timestamp.json') return staticFiles(s.metadataDir)(req, res);
        res.writeHead(200);
        const pump = (): void => {
          while (res.write(Buffer.alloc(16 * 1024, 0x20)));
          res.once('drain', pump);
        };
        pump();
        res.on('close', () => res.removeAllListeners('drain'));
      });
      try {
        const repo = new TufRepository({
          metadataUrl: endless.url,
          targetsUrl: s.targets.url,
          trustedRoot: rootMetadata(s.roles, 1),
          cacheDir: join(root, 'endless'),
        });
        await assert.rejects(repo.refresh(), isCode('TOO_LARGE', /DownloadLengthMismatchError/));
      } finally {
        await close(endless.server);
      }
    } finally {
      await s.close();
    }
  });
});

test('a root rotation (2.root.json signed by the old and the new root key) is followed; a new timestamp key then signs', async () => {
  await withRoot(async (root) => {
    const s = await served(root);
    try {
      const repo = s.repository();
      await repo.refresh();
      const next = { ...s.roles, root: tufKey(), timestamp: tufKey() };
      await writeFile(join(s.metadataDir, '2.root.json'), rootMetadata(next, 2, [s.roles.root, next.root]));
      await publishTuf(s.metadataDir, s.targetsDir, next, { files: s.files, version: 2 });
      assert.deepEqual(await repo.list(), [ID]);
      assert.equal(JSON.parse(await readFile(join(root, 'cache', 'metadata', 'root.json'), 'utf8')).signed.version, 2);
      // A rotation signed by the new key alone is refused.
      const rogue = { ...next, root: tufKey() };
      await writeFile(join(s.metadataDir, '3.root.json'), rootMetadata(rogue, 3, [rogue.root]));
      await assert.rejects(s.repository('cache').refresh(), isCode('BAD_SIGNATURE', /UnsignedMetadataError/));
    } finally {
      await s.close();
    }
  });
});

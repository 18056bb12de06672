/*
 * `hotpatch keygen` makes recipient keys and `hotpatch pack --encrypt-to` encrypts a payload
 * to them: the repository holds ciphertext that `hotpatch verify` accepts (its hash is the
 * ciphertext's), and an installer holding one of the keys stages exactly the original bytes.
 */
import assert from 'node:assert/strict';
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseManifest, decodeEnvelope } from '../../src/core/index.js';
import { importRecipientPrivateKey } from '../../src/crypto-agile/index.js';
import { DynamicInstaller } from '../../src/installer/index.js';
import { FileSystemRepository } from '../../src/repo/index.js';
import { signPatch } from '../../src/verification/index.js';
import { CI_TRUST, ciKey } from '../support/patches.js';
import { withTempDir } from '../support/temp-dir.js';
import { hotpatch } from './run-cli.js';

test('keygen makes X25519 and ML-KEM-768 recipient keys; pack --encrypt-to stores ciphertext that verifies and stages back to the plaintext', async () => {
  await withTempDir('hotpatch-pack-enc-', async (dir) => {
    for (const [name, alg] of [
      ['edge-1', 'x25519-hkdf-sha256'],
      ['edge-pq', 'ml-kem-768'],
    ]) {
      const r = hotpatch(['keygen', '--alg', alg!, '--out', join(dir, 'keys'), '--name', name!, '--json']);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.json?.trust_entry, undefined, 'a recipient key is no signer');
    }
    const plaintext = 'export const api = { f: () => "the fix" };\n'.repeat(200);
    await writeFile(join(dir, 'fix.mjs'), plaintext);
    const repo = join(dir, 'repo');
    const packed = hotpatch([
      'pack',
      '--repo',
      repo,
      '--id',
      'enc-cli-1',
      '--target',
      'xps.demo.f',
      '--version',
      '1.0.1',
      '--type',
      'esm',
      '--payload',
      join(dir, 'fix.mjs'),
      '--encrypt-to',
      join(dir, 'keys', 'edge-1.pub'),
      '--encrypt-to',
      `pq=${join(dir, 'keys', 'edge-pq.pub')}`,
      '--chunk-size',
      '1024',
      '--json',
    ]);
    assert.equal(packed.status, 0, packed.stderr);
    assert.deepEqual(packed.json?.encrypted_to, ['edge-1', 'pq']);
    const bin = await readFile(join(repo, 'enc-cli-1.bin'));
    assert.ok(!bin.includes(Buffer.from('the fix')), 'ciphertext only');
    await signPatch(repo, 'enc-cli-1', ciKey.privateKey, { keyid: 'ci' });
    await writeFile(join(dir, 'trust.json'), JSON.stringify(CI_TRUST));
    const verified = hotpatch(['verify', '--repo', repo, '--id', 'enc-cli-1', '--trust', join(dir, 'trust.json'), '--json']);
    assert.equal(verified.status, 0, verified.stdout);

    const { manifest, facts } = parseManifest(decodeEnvelope(await readFile(join(repo, 'enc-cli-1.json'))).payload);
    const key = importRecipientPrivateKey(await readFile(join(dir, 'keys', 'edge-pq.key'), 'utf8'));
    // A staging directory left readable by an older version is tightened before plaintext goes in.
    await mkdir(join(dir, 'state', 'staging'), { recursive: true, mode: 0o755 });
    await chmod(join(dir, 'state', 'staging'), 0o755);
    // Plaintext a staging process left when it died mid-write (its pid no longer runs) is removed.
    const { spawnSync } = await import('node:child_process');
    const deadPid = spawnSync(process.execPath, ['-e', '0']).pid;
    const leftover = join(dir, 'state', 'staging', `.stage-${deadPid}-${'ab'.repeat(12)}.tmp`);
    await writeFile(leftover, 'half a plaintext');
    const installer = new DynamicInstaller(join(dir, 'state'), { decryptionKeys: [key] });
    const staged = await installer.stage(manifest, facts, new FileSystemRepository(repo).openPayload(manifest.id, manifest.payload_size + 1));
    assert.equal(await readFile(staged.path, 'utf8'), plaintext);
    assert.equal((await stat(join(dir, 'state', 'staging'))).mode & 0o777, 0o700);
    await assert.rejects(stat(leftover), { code: 'ENOENT' });

    const bad = hotpatch([
      'pack',
      '--repo',
      repo,
      '--id',
      'enc-cli-2',
      '--target',
      'xps.demo.f',
      '--version',
      '1.0.2',
      '--type',
      'esm',
      '--payload',
      join(dir, 'fix.mjs'),
      '--encrypt-to',
      join(dir, 'keys', 'edge-1.key'),
      '--json',
    ]);
    assert.equal(bad.status, 2);
    assert.match(String(bad.json?.message), /--encrypt-to .*edge-1\.key: a recipient public key is a "PUBLIC KEY" PEM block/);
    // Kids the manifest refuses (a space, empty, twice) are bad flags too: exit 2, nothing written.
    const pub = join(dir, 'keys', 'edge-1.pub');
    for (const recipients of [[`a b=${pub}`], [`=${pub}`], [`k=${pub}`, `k=${pub}`]]) {
      const args = ['pack', '--repo', repo, '--id', 'enc-cli-3', '--target', 'xps.demo.f', '--version', '1.0.3', '--type', 'esm'];
      const r = hotpatch([...args, '--payload', join(dir, 'fix.mjs'), ...recipients.flatMap((x) => ['--encrypt-to', x]), '--json']);
      assert.equal(r.status, 2, `${recipients.join(' ')}: ${r.stdout}`);
      assert.equal(r.json?.code, 'INVALID');
    }
    await assert.rejects(stat(join(repo, 'enc-cli-3.json')), { code: 'ENOENT' });
  });
});

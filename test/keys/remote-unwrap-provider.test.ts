/*
 * The remote-KMS unwrap adapter against a KMS on loopback that holds an RSA recipient key and
 * answers RSA-OAEP-SHA256 decryptions (what AWS KMS, GCP KMS or Vault transit do for theirs):
 * an installer holding only the adapter stages an encrypted payload back to its plaintext; a
 * KMS answering with a wrong secret or none is DECRYPT_FAILED and nothing is staged, one that
 * refuses the token UNAUTHENTICATED — the token never in a message.
 */
import assert from 'node:assert/strict';
import { constants, privateDecrypt } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { decodeEnvelope, parseManifest } from '../../src/core/index.js';
import { generateRecipientKey, type RecipientPrivateKey } from '../../src/crypto-agile/index.js';
import { DynamicInstaller } from '../../src/installer/index.js';
import { RemoteUnwrapProvider } from '../../src/keys/index.js';
import { FileSystemRepository, packPatch } from '../../src/repo/index.js';
import { isCode } from '../support/assertions.js';
import { withTempDir } from '../support/temp-dir.js';

const held = generateRecipientKey('rsa-oaep-sha256');
const TOKEN = 'kms-bearer-secret-2';

async function kms(behaviour: 'good' | 'wrong-secret' | 'no-secret'): Promise<{ url: string; calls: () => number; close: () => Promise<void> }> {
  let calls = 0;
  const pem = (held.privateKey as RecipientPrivateKey).toPem();
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      calls += 1;
      if (req.headers.authorization !== `Bearer ${TOKEN}`) return void res.writeHead(401).end();
      const { encapsulation, alg } = JSON.parse(Buffer.concat(chunks).toString()) as { encapsulation: string; alg: string };
      assert.equal(alg, 'rsa-oaep-sha256');
      const secret = privateDecrypt({ key: pem, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, Buffer.from(encapsulation, 'base64'));
      if (behaviour === 'wrong-secret') secret[0]! ^= 1;
      const body = behaviour === 'no-secret' ? { plaintext: 'x' } : { secret: secret.toString('base64') };
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/unwrap`,
    calls: () => calls,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function packed(dir: string) {
  const repo = join(dir, 'repo');
  const plaintext = 'export const api = { f: () => "decrypted through the KMS" };\n';
  await packPatch(repo, {
    id: 'kms-enc-1',
    target: 'xps.demo.f',
    version: '1.0.1',
    type: 'esm',
    payload: new TextEncoder().encode(plaintext),
    encryptTo: [{ kid: 'kms-edge', key: held.publicKey }],
  });
  const { manifest, facts } = parseManifest(decodeEnvelope(await readFile(join(repo, 'kms-enc-1.json'))).payload);
  return { repo, manifest, facts, plaintext };
}

test('an installer whose recipient key is in a remote KMS stages an encrypted payload back to its plaintext', async () => {
  await withTempDir('hotpatch-kms-unwrap-', async (dir) => {
    const service = await kms('good');
    try {
      const { repo, manifest, facts, plaintext } = await packed(dir);
      const provider = new RemoteUnwrapProvider({ url: service.url, token: TOKEN, recipientKey: held.publicKey });
      const installer = new DynamicInstaller(join(dir, 'state'), { decryptionKeys: [provider] });
      const staged = await installer.stage(manifest, facts, new FileSystemRepository(repo).openPayload(manifest.id, manifest.payload_size + 1));
      assert.equal(await readFile(staged.path, 'utf8'), plaintext);
      assert.equal(service.calls(), 1, 'one unwrap per staging');
    } finally {
      await service.close();
    }
  });
});

test('a KMS answering a wrong secret or none is DECRYPT_FAILED, one refusing the token UNAUTHENTICATED, and nothing is staged', async () => {
  await withTempDir('hotpatch-kms-unwrap-', async (dir) => {
    const { repo, manifest, facts } = await packed(dir);
    const stageWith = async (behaviour: 'good' | 'wrong-secret' | 'no-secret', token: string) => {
      const service = await kms(behaviour);
      try {
        const state = join(dir, `state-${behaviour}-${token.length}`);
        const installer = new DynamicInstaller(state, {
          decryptionKeys: [new RemoteUnwrapProvider({ url: service.url, token, recipientKey: held.publicKey })],
        });
        const error = await installer.stage(manifest, facts, new FileSystemRepository(repo).openPayload(manifest.id, manifest.payload_size + 1)).then(
          () => undefined,
          (e: unknown) => e,
        );
        assert.deepEqual(await readdir(join(state, 'staging')), [], 'nothing staged');
        return error as Error;
      } finally {
        await service.close();
      }
    };
    assert.ok(isCode('DECRYPT_FAILED')(await stageWith('wrong-secret', TOKEN)));
    assert.ok(isCode('DECRYPT_FAILED', /answered without a secret/)(await stageWith('no-secret', TOKEN)));
    const refused = await stageWith('good', 'not-the-token');
    assert.ok(isCode('UNAUTHENTICATED')(refused), String(refused));
    assert.ok(!refused.message.includes('not-the-token'));
    // The secret comes back in the answer: plain http only on loopback, with a token or without.
    for (const token of [TOKEN, undefined]) {
      assert.throws(
        () => new RemoteUnwrapProvider({ url: 'http://kms.example.com/unwrap', ...(token === undefined ? {} : { token }), recipientKey: held.publicKey }),
        isCode('INVALID', /https only/),
      );
    }
  });
});

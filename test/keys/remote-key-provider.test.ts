/*
 * The remote-signer adapter against a signer on loopback (standing in for a KMS): a patch
 * signed through it verifies; a signer that answers with another key's signature or garbage
 * is BAD_SIGNATURE, one that refuses the token UNAUTHENTICATED, one that never answers IO at
 * the deadline — the token never in a message.
 */
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { generateKeyPair, sign } from '../../src/crypto-agile/index.js';
import { RemoteKeyProvider } from '../../src/keys/index.js';
import { DefaultVerifier, parseTrustStore, signPatch, verifyPatch } from '../../src/verification/index.js';
import { FileSystemRepository } from '../../src/repo/index.js';
import { isCode } from '../support/assertions.js';
import { publishPatch } from '../support/patches.js';
import { withTempDir } from '../support/temp-dir.js';

const kms = generateKeyPair('ecdsa-p256-sha256');
const other = generateKeyPair('ecdsa-p256-sha256');
const TOKEN = 'kms-bearer-secret-1';

async function signer(behaviour: 'good' | 'other-key' | 'garbage' | 'silent'): Promise<{ url: string; close: () => Promise<void> }> {
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.headers.authorization !== `Bearer ${TOKEN}`) return void res.writeHead(401).end();
      if (behaviour === 'silent') return; // never answers
      const { message } = JSON.parse(Buffer.concat(chunks).toString()) as { message: string };
      const bytes = Buffer.from(message, 'base64');
      const signature =
        behaviour === 'garbage' ? Buffer.from('not a signature') : Buffer.from(sign(behaviour === 'good' ? kms.privateKey : other.privateKey, bytes));
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ signature: signature.toString('base64') }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/sign`,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

test('a patch signed through the remote signer verifies against the KMS key in the trust store', async () => {
  await withTempDir('hotpatch-kms-', async (dir) => {
    const s = await signer('good');
    try {
      const repo = join(dir, 'repo');
      await mkdir(repo);
      await publishPatch(repo, 'kms-1', 'xps.demo.f', '1.0.1', 'export const api = { f: () => 1 };', { manifest: { signers: [] }, signers: [] });
      const provider = new RemoteKeyProvider({ url: s.url, publicKey: kms.publicKey, token: TOKEN });
      await signPatch(repo, 'kms-1', provider, { keyid: 'kms-release' });
      const trust = parseTrustStore({ keys: { 'kms-release': { alg: 'ecdsa-p256-sha256', public_key: kms.publicKey.toPem() } }, threshold: 1 });
      assert.deepEqual((await verifyPatch(new FileSystemRepository(repo), new DefaultVerifier(trust), 'kms-1')).signers, ['kms-release']);
    } finally {
      await s.close();
    }
  });
});

test('a signer answering with another key or garbage is BAD_SIGNATURE; a wrong token UNAUTHENTICATED; silence IO at the deadline; the token never in a message', async () => {
  const message = Buffer.from('DSSEv1 …');
  for (const [behaviour, code, pattern] of [
    ['other-key', 'BAD_SIGNATURE', /does not verify with its public key/],
    ['garbage', 'BAD_SIGNATURE', /does not verify|without a signature/],
  ] as const) {
    const s = await signer(behaviour);
    try {
      await assert.rejects(new RemoteKeyProvider({ url: s.url, publicKey: kms.publicKey, token: TOKEN }).sign(message), isCode(code, pattern), behaviour);
    } finally {
      await s.close();
    }
  }
  assert.throws(() => new RemoteKeyProvider({ url: 'http://kms.example/sign', publicKey: kms.publicKey, token: TOKEN }), isCode('INVALID', /over https only/));
  const s = await signer('silent');
  try {
    await assert.rejects(new RemoteKeyProvider({ url: s.url, publicKey: kms.publicKey, token: 'wrong-token-2' }).sign(message), (error: unknown) => {
      assert.ok(isCode('UNAUTHENTICATED', /refused this client \(HTTP 401\)/)(error));
      assert.doesNotMatch((error as Error).message, /wrong-token-2/);
      return true;
    });
    await assert.rejects(
      new RemoteKeyProvider({ url: s.url, publicKey: kms.publicKey, token: TOKEN, timeoutMs: 300 }).sign(message),
      isCode('IO', /no answer within 300 ms/),
    );
  } finally {
    await s.close();
  }
});

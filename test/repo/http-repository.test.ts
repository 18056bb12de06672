/*
 * The HTTP(S) repository against real servers on loopback: a good mirror, and hostile ones
 * (down, 404, 5xx, a drip of one byte then silence, an endless body, redirect loops, a
 * downgrade to http, a certificate from another CA). Each is the right error code, bounded in
 * bytes and time, with no credentials in any message.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { parsePatchId } from '../../src/core/index.js';
import { HttpRepository } from '../../src/repo/http-repository.js';
import { verifyPatch } from '../../src/verification/index.js';
import { isCode } from '../support/assertions.js';
import { ciVerifier, publishPatch } from '../support/patches.js';
import { close, listen, staticFiles } from '../support/static-server.js';

const run = promisify(execFile);
const id = (text: string) => parsePatchId(text);
async function repoDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'hotpatch-http-repo-'));
  await publishPatch(dir, 'http-good-1', 'xps.crypto.hash.sha256', '1.0.1', 'export const api = { digest: (s) => s };');
  const { writeFile } = await import('node:fs/promises');
  await writeFile(join(dir, 'index.json'), JSON.stringify({ patches: { 'http-good-1': {}, 'not a patch id!': {} } }));
  return dir;
}

test('a patch is listed, fetched and verified over HTTP from a static server', async () => {
  const dir = await repoDir();
  const { server, url } = await listen(staticFiles(dir));
  try {
    const repo = new HttpRepository(url);
    assert.deepEqual(await repo.list(), ['http-good-1']);
    const verified = await verifyPatch(repo, ciVerifier, 'http-good-1');
    assert.equal(verified.manifest.version, '1.0.1');
    // A payload is read to at most what was asked.
    const chunks = [];
    for await (const c of repo.openPayload(id('http-good-1'), 5)) chunks.push(c);
    assert.equal(Buffer.concat(chunks).length, 5);
  } finally {
    await close(server);
    await rm(dir, { recursive: true, force: true });
  }
});

test('hostile mirrors: 404 is NOT_FOUND; 5xx, a closed port, a stall and redirect loops are IO; an endless manifest is TOO_LARGE', async () => {
  let port = 0;
  const { server, url } = await listen((req, res) => {
    const path = req.url ?? '';
    if (path.includes('five')) return void res.writeHead(503).end('busy');
    if (path.includes('drip')) {
      res.writeHead(200);
      res.write('{');
      return; // then silence
    }
    if (path.includes('endless')) {
      res.writeHead(200);
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      const pump = (): void => {
        while (res.write(chunk)) {
          /* until the socket pushes back */
        }
        res.once('drain', pump);
      };
      pump();
      res.on('close', () => res.removeAllListeners('drain'));
      return;
    }
    if (path.includes('loop')) return void res.writeHead(302, { location: `/repo/loop-${Math.random()}.json` }).end();
    res.writeHead(404).end();
  });
  port = (server.address() as AddressInfo).port;
  try {
    const repo = new HttpRepository(url, { stallTimeoutMs: 300, totalTimeoutMs: 5_000 });
    await assert.rejects(repo.fetchEnvelope(id('absent-1')), isCode('NOT_FOUND', /answered 404/));
    await assert.rejects(repo.fetchEnvelope(id('five-1')), isCode('IO', /answered 503/));
    await assert.rejects(repo.fetchEnvelope(id('drip-1')), isCode('IO', /no byte for 300 ms/));
    await assert.rejects(
      new HttpRepository(url, { maxManifestBytes: 1024 * 1024 }).fetchEnvelope(id('endless-1')),
      isCode('TOO_LARGE', /more than 1048576 bytes/),
    );
    await assert.rejects(repo.fetchEnvelope(id('loop-1')), isCode('IO', /more than 3 redirects/));
    // An endless payload is read only to what the verifier asks for.
    let got = 0;
    for await (const c of repo.openPayload(id('endless-2'), 100_000)) got += c.length;
    assert.equal(got, 100_000);
  } finally {
    await close(server);
  }
  await assert.rejects(new HttpRepository(`http://127.0.0.1:${port}/repo/`).fetchEnvelope(id('x-1')), isCode('IO', /fetching .* failed/));
});

test('credentials and queries in the repository URL never reach a message', async () => {
  const { server } = await listen((_req, res) => void res.writeHead(500).end());
  const port = (server.address() as AddressInfo).port;
  try {
    const repo = new HttpRepository(`http://alice:s3cret-pass@127.0.0.1:${port}/repo/?token=abcdef123456`);
    await assert.rejects(repo.fetchEnvelope(id('p-1')), (error: unknown) => {
      const text = `${(error as Error).message} ${JSON.stringify(error)}`;
      return isCode('IO')(error) && !text.includes('s3cret') && !text.includes('alice') && !text.includes('abcdef123456');
    });
  } finally {
    await close(server);
  }
});

test('TLS: a server certificate from the configured CA is accepted; from another CA, or without the CA, refused (IO); https never redirects to http', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'hotpatch-http-tls-'));
  try {
    const ssl = async (...args: string[]): Promise<void> => void (await run('openssl', args, { cwd: dir }));
    for (const ca of ['ca', 'other']) {
      await ssl(
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-keyout',
        `${ca}.key`,
        '-out',
        `${ca}.pem`,
        '-days',
        '1',
        '-subj',
        `/CN=test ${ca}`,
      );
    }
    await ssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1');
    await import('node:fs/promises').then((fs) => fs.writeFile(join(dir, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1\n'));
    await ssl(
      'x509',
      '-req',
      '-in',
      'server.csr',
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      'server.pem',
      '-days',
      '1',
      '-extfile',
      'ext.cnf',
    );
    const [key, cert, ca, other] = await Promise.all(['server.key', 'server.pem', 'ca.pem', 'other.pem'].map((f) => readFile(join(dir, f))));
    const server = createTlsServer({ key, cert }, (req, res) => {
      if ((req.url ?? '').includes('down')) return void res.writeHead(302, { location: 'http://127.0.0.1:1/repo/x.json' }).end();
      res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/repo/`;
    try {
      await assert.rejects(new HttpRepository(url, { ca: ca! }).fetchEnvelope(id('tls-1')), isCode('NOT_FOUND'), 'the TLS handshake passed');
      await assert.rejects(new HttpRepository(url, { ca: other! }).fetchEnvelope(id('tls-1')), isCode('IO', /certificate|self.signed|verify/i));
      await assert.rejects(new HttpRepository(url).fetchEnvelope(id('tls-1')), isCode('IO', /certificate|self.signed|verify/i));
      await assert.rejects(new HttpRepository(url, { ca: ca! }).fetchEnvelope(id('down-1')), isCode('IO', /non-https URL, refused/));
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

/*
 * A real RFC 3161 time-stamping authority for tests: a CA and a TSA certificate (extended key
 * usage timeStamping, critical) made with openssl in a temporary directory, and `openssl ts
 * -reply` answering queries — directly, or behind a loopback HTTP server speaking RFC 3161
 * over HTTP. Replies carry the real current time.
 */
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface Tsa {
  dir: string;
  /** The CA's certificate (PEM): what a trust store's timestamping.certificates lists. */
  caPem: string;
  /** The TSA's own certificate (PEM). */
  tsaPem: string;
  /** `openssl ts -reply` to a DER query → the DER reply. */
  reply(query: Uint8Array): Promise<Uint8Array>;
}

/** A CA and a TSA under `dir` (`name` prefixes the files, so two TSAs may share a directory). `eku: false`: a TSA certificate without timeStamping. */
export async function makeTsa(dir: string, name = 'tsa', options: { eku?: boolean } = {}): Promise<Tsa> {
  const ssl = async (...args: string[]): Promise<void> => void (await run('openssl', args, { cwd: dir }));
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  await ssl('req', '-x509', ...ec, '-keyout', `${name}-ca.key`, '-out', `${name}-ca.pem`, '-days', '2', '-subj', `/CN=${name} test CA`);
  await ssl('req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name} test TSA`);
  const ext = options.eku === false ? 'keyUsage=critical,digitalSignature\n' : 'extendedKeyUsage=critical,timeStamping\nkeyUsage=critical,digitalSignature\n';
  await writeFile(join(dir, `${name}.ext`), ext);
  await ssl(
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    `${name}-ca.pem`,
    '-CAkey',
    `${name}-ca.key`,
    '-CAcreateserial',
    '-out',
    `${name}.pem`,
    '-days',
    '2',
    '-extfile',
    `${name}.ext`,
  );
  await writeFile(join(dir, `${name}.serial`), '01\n');
  await writeFile(
    join(dir, `${name}.cnf`),
    [
      '[ tsa ]',
      'default_tsa = tsa_config',
      '[ tsa_config ]',
      `serial = ${join(dir, `${name}.serial`)}`,
      'crypto_device = builtin',
      `signer_cert = ${join(dir, `${name}.pem`)}`,
      `certs = ${join(dir, `${name}-ca.pem`)}`,
      `signer_key = ${join(dir, `${name}.key`)}`,
      'signer_digest = sha256',
      'default_policy = 1.2.3.4.1',
      'digests = sha256, sha384, sha512',
      'accuracy = secs:1',
      'ordering = yes',
      'tsa_name = no',
      'ess_cert_id_chain = no',
      'ess_cert_id_alg = sha256',
      '',
    ].join('\n'),
  );
  let n = 0;
  return {
    dir,
    caPem: await readFile(join(dir, `${name}-ca.pem`), 'utf8'),
    tsaPem: await readFile(join(dir, `${name}.pem`), 'utf8'),
    async reply(query) {
      n += 1;
      const q = join(dir, `${name}-${n}.tsq`);
      const r = join(dir, `${name}-${n}.tsr`);
      await writeFile(q, query);
      await ssl('ts', '-reply', '-config', join(dir, `${name}.cnf`), '-queryfile', q, '-out', r);
      return new Uint8Array(await readFile(r));
    },
  };
}

/** The TSA behind a loopback HTTP server (RFC 3161 over HTTP: POST a query, get a reply). */
export async function serveTsa(tsa: Tsa): Promise<{ server: Server; url: string; requests: () => number }> {
  let requests = 0;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      requests += 1;
      if (req.method !== 'POST' || req.headers['content-type'] !== 'application/timestamp-query') return void res.writeHead(400).end();
      tsa.reply(Buffer.concat(chunks)).then(
        (reply) => res.writeHead(200, { 'content-type': 'application/timestamp-reply', 'content-length': reply.length }).end(reply),
        () => res.writeHead(500).end(),
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/tsa`, requests: () => requests };
}

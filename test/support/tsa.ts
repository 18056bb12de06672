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
  /** The intermediate CA between them, when made with `intermediate` (PEM). */
  intermediatePem?: string;
  /** `openssl ts -reply` to a DER query → the DER reply. */
  reply(query: Uint8Array): Promise<Uint8Array>;
}

export interface TsaOptions {
  /** The TSA certificate's extensions (openssl x509 -extfile) instead of RFC 3161's: then only openssl cms signs with it. */
  ext?: string;
  /** A CA between the root CA and the TSA. */
  intermediate?: boolean;
}

const RFC3161_EXT = 'extendedKeyUsage=critical,timeStamping\nkeyUsage=critical,digitalSignature\n';

/** A CA and a TSA under `dir` (`name` prefixes the files, so several TSAs share a directory). */
export async function makeTsa(dir: string, name = 'tsa', options: TsaOptions = {}): Promise<Tsa> {
  const ssl = async (...args: string[]): Promise<void> => void (await run('openssl', args, { cwd: dir }));
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  /** A key and a certificate `out` issued by `issuer` with the extensions `ext`. */
  const issue = async (out: string, subject: string, issuer: string, ext: string): Promise<void> => {
    await ssl('req', ...ec, '-keyout', `${out}.key`, '-out', `${out}.csr`, '-subj', subject);
    await writeFile(join(dir, `${out}.ext`), ext);
    await ssl(
      'x509',
      '-req',
      '-in',
      `${out}.csr`,
      '-CA',
      `${issuer}.pem`,
      '-CAkey',
      `${issuer}.key`,
      '-CAcreateserial',
      '-out',
      `${out}.pem`,
      '-days',
      '2',
      '-extfile',
      `${out}.ext`,
    );
  };
  await ssl('req', '-x509', ...ec, '-keyout', `${name}-ca.key`, '-out', `${name}-ca.pem`, '-days', '2', '-subj', `/CN=${name} test CA`);
  const deep = options.intermediate === true;
  if (deep) await issue(`${name}-sub`, `/CN=${name} test sub-CA`, `${name}-ca`, 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign\n');
  await issue(name, `/CN=${name} test TSA`, deep ? `${name}-sub` : `${name}-ca`, options.ext ?? RFC3161_EXT);
  const chain = join(dir, `${name}-chain.pem`);
  await writeFile(chain, (deep ? await readFile(join(dir, `${name}-sub.pem`), 'utf8') : '') + (await readFile(join(dir, `${name}-ca.pem`), 'utf8')));
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
      `certs = ${chain}`,
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
    ...(deep ? { intermediatePem: await readFile(join(dir, `${name}-sub.pem`), 'utf8') } : {}),
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

/**
 * A TimeStampToken over `tstInfo` (DER) signed as plain CMS by `name`'s key and certificate
 * with openssl cms — which, unlike openssl ts, signs with any certificate: a forged timestamp.
 */
export async function cmsSignedToken(tsa: Tsa, name: string, tstInfo: Uint8Array): Promise<Uint8Array> {
  const input = join(tsa.dir, `${name}-tst.der`);
  const output = join(tsa.dir, `${name}-forged.der`);
  await writeFile(input, tstInfo);
  await run(
    'openssl',
    ['cms', '-sign', '-binary', '-nodetach', '-econtent_type', '1.2.840.113549.1.9.16.1.4', '-in', input, '-md', 'sha256', '-outform', 'DER'].concat([
      '-signer',
      join(tsa.dir, `${name}.pem`),
      '-inkey',
      join(tsa.dir, `${name}.key`),
      '-out',
      output,
    ]),
  );
  return new Uint8Array(await readFile(output));
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

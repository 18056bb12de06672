import { constants, createReadStream, promises as fsp } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { HotPatchError, isPatchId, messageOf } from '../../core/index.js';
import { FileSystemRepository, readFileBounded } from '../../repo/index.js';
import { parseCommandArgs, requireString } from '../args.js';
import { EXIT_OK, UsageError } from '../cli-error.js';
import { printHelp, type Command } from '../command.js';
import { interruption } from './fleet-watch.js';

const FILE = /^([A-Za-z0-9][A-Za-z0-9._-]{0,127})\.(json|bin)$/;

export const serveCommand: Command = {
  name: 'serve',
  summary: 'publish a repository directory over HTTP(S) (<id>.json, <id>.bin, index.json)',
  usage: `hotpatch serve --repo DIR [--listen HOST:PORT] [--tls-cert FILE --tls-key FILE] [--json]

Serves DIR read-only as a repository agents fetch from with --repo/repository
https://HOST:PORT/ (or http:// without TLS): GET or HEAD of /<id>.json, /<id>.bin and
/index.json (DIR/index.json if present, else { "patches": { id: {} } } listing DIR).
Nothing else is served; links and non-regular files are never followed. --listen
defaults to 127.0.0.1:8080 (port 0: any free port, printed). Runs until SIGINT or
SIGTERM. Any static server publishing the same files works as well.`,
  async run(argv, out) {
    const { values, help } = parseCommandArgs(argv, {
      repo: { type: 'string' },
      listen: { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
    });
    if (help) return printHelp(out, this.usage);
    const dir = requireString(values, 'repo');
    const listen = (values.listen as string | undefined) ?? '127.0.0.1:8080';
    const m = /^(.+):(\d{1,5})$/.exec(listen);
    if (m === null || Number(m[2]) > 65535) throw new UsageError(`--listen must be HOST:PORT, got ${JSON.stringify(listen)}`);
    const certFile = values['tls-cert'] as string | undefined;
    const keyFile = values['tls-key'] as string | undefined;
    if ((certFile === undefined) !== (keyFile === undefined)) throw new UsageError('--tls-cert and --tls-key go together');
    const repo = new FileSystemRepository(dir);
    await repo.list(); // the directory must exist and be readable: fail now, not at the first request
    const handler = (req: IncomingMessage, res: ServerResponse): void => {
      serveFile(dir, repo, req, res).catch((error: unknown) => {
        if (!res.headersSent) res.writeHead(error instanceof HotPatchError && error.code === 'NOT_FOUND' ? 404 : 500);
        res.end();
      });
    };
    let server: Server;
    if (certFile !== undefined && keyFile !== undefined) {
      const [cert, key] = await Promise.all([
        readFileBounded(certFile, 1024 * 1024, { noFollow: false, what: 'TLS certificate' }),
        readFileBounded(keyFile, 1024 * 1024, { noFollow: false, what: 'TLS key' }),
      ]);
      server = createHttpsServer({ cert: Buffer.from(cert), key: Buffer.from(key) }, handler);
    } else server = createHttpServer(handler);
    server.headersTimeout = 10_000;
    server.requestTimeout = 10 * 60_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', (error) => reject(new HotPatchError('IO', `cannot listen on ${listen}: ${messageOf(error)}`, { cause: error })));
      server.listen(Number(m[2]), m[1]!.replace(/^\[|\]$/g, ''), resolve);
    });
    const address = server.address() as AddressInfo;
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    const url = `${certFile === undefined ? 'http' : 'https'}://${host}:${address.port}/`;
    if (out.json) out.raw(`${JSON.stringify({ event: 'listening', url, repo: dir })}\n`);
    else out.line(`serving ${dir} at ${url} (SIGINT or SIGTERM stops)`);
    const stop = interruption(out);
    try {
      await new Promise<void>((resolve) => {
        if (stop.signal.aborted) resolve();
        stop.signal.addEventListener('abort', () => resolve(), { once: true });
      });
    } finally {
      stop.dispose();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    out.success(`stopped serving ${dir}`, { event: 'stopped', url });
    return EXIT_OK;
  },
};

/**
 * The file a request target names: its path without the leading slash and the query, %-decoded;
 * undefined (404) for anything that is not one such path ("//", an absolute URL, a bad escape).
 */
function fileNameOf(target: string | undefined): string | undefined {
  const path = (target ?? '/').split('?', 1)[0]!;
  if (!path.startsWith('/') || path.startsWith('//')) return undefined;
  try {
    return decodeURIComponent(path.slice(1));
  } catch {
    return undefined; // a malformed %-escape names no file
  }
}

async function serveFile(dir: string, repo: FileSystemRepository, req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD' }).end();
    return;
  }
  const name = fileNameOf(req.url);
  if (name === 'index.json') {
    let body: Buffer;
    try {
      body = Buffer.from(await readFileBounded(join(dir, 'index.json'), 8 * 1024 * 1024, { noFollow: true, what: 'repository index' }));
    } catch (error) {
      if (!(error instanceof HotPatchError && error.code === 'NOT_FOUND')) throw error;
      const ids = await repo.list();
      body = Buffer.from(JSON.stringify({ patches: Object.fromEntries(ids.map((id) => [id, {}])) }));
    }
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
    res.end(req.method === 'HEAD' ? undefined : body);
    return;
  }
  const m = name === undefined ? null : FILE.exec(name);
  if (m === null || !isPatchId(m[1]!)) {
    res.writeHead(404).end();
    return;
  }
  // O_NOFOLLOW, and a regular file only: a link planted in the directory is never served.
  const handle = await fsp.open(join(dir, m[0]), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK).catch(() => undefined);
  if (handle === undefined) {
    res.writeHead(404).end();
    return;
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': m[2] === 'json' ? 'application/json' : 'application/octet-stream', 'content-length': stat.size });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    const stream = createReadStream('', { fd: handle.fd, autoClose: false, highWaterMark: 1024 * 1024 });
    await new Promise<void>((resolve, reject) => {
      stream.on('error', reject);
      res.on('close', resolve);
      stream.pipe(res);
    });
  } finally {
    await handle.close();
  }
}

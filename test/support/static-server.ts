/*
 * Loopback HTTP servers for repository tests: a static server of a directory under /repo/,
 * or any handler (a hostile mirror). Port 0: the system picks a free one; the test closes it.
 */
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

export type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/** A server of `handler` on 127.0.0.1 and its repository URL (`…/repo/`). */
export async function listen(handler: Handler): Promise<{ server: Server; url: string }> {
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/repo/` };
}

export async function close(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/** The name a request under /repo/ asks for (undefined: not a plain file name). */
export function requestedName(req: IncomingMessage): string | undefined {
  const name = (req.url ?? '').replace(/^\/repo\//, '').replace(/\?.*$/, '');
  return /^[\w.-]+$/.test(name) ? name : undefined;
}

/** A static server of `dir` under /repo/. */
export function staticFiles(dir: string): Handler {
  return (req, res) => {
    const name = requestedName(req);
    if (name === undefined) return void res.writeHead(404).end();
    readFile(join(dir, name)).then(
      (bytes) => res.writeHead(200, { 'content-length': bytes.length }).end(bytes),
      () => res.writeHead(404).end(),
    );
  };
}

import { createHash } from 'node:crypto';
import { Agent as HttpAgent, createServer, request, type Server } from 'node:http';
import type { Target } from '../../zero-downtime/index.js';

export interface HashApi {
  digest(data: string): string;
}

/** A real HTTP service on loopback whose /hash endpoint calls the hot-swappable target. */
export async function startHashService(target: Target<HashApi>): Promise<{ port: number; close: () => Promise<void> }> {
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://demo');
    if (url.pathname !== '/hash') {
      res.writeHead(404).end();
      return;
    }
    try {
      const digest = target.api.digest(url.searchParams.get('data') ?? '');
      res.writeHead(200, { 'content-type': 'text/plain' }).end(digest);
    } catch (error) {
      res.writeHead(500, { 'content-type': 'text/plain' }).end((error as Error).message);
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  return {
    port,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((e) => (e === undefined ? resolve() : reject(e)));
        server.closeAllConnections();
      }),
  };
}

export interface LoadStats {
  served: number;
  failed: number;
  /** Responses whose digest was not SHA-256 of the input (counted in `failed` too). */
  wrong: number;
  firstFailure: string | undefined;
}

/**
 * Steady load: `concurrency` keep-alive clients request /hash in a loop and check every
 * answer against node's own SHA-256, so a wrong digest that reached a client is counted.
 */
export function driveLoad(port: number, concurrency: number): { stats: LoadStats; stop: () => Promise<void> } {
  const stats: LoadStats = { served: 0, failed: 0, wrong: 0, firstFailure: undefined };
  const agent = new HttpAgent({ keepAlive: true, maxSockets: concurrency });
  let running = true;
  let n = 0;
  const fail = (why: string): void => {
    stats.failed += 1;
    stats.firstFailure ??= why;
  };
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      const data = `request-${n++}-${Math.random().toString(36).slice(2)}`;
      const req = request({ host: '127.0.0.1', port, path: `/hash?data=${encodeURIComponent(data)}`, agent }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => {
          if (res.statusCode !== 200) fail(`HTTP ${res.statusCode}: ${body}`);
          else if (body !== createHash('sha256').update(data, 'utf8').digest('hex')) {
            stats.wrong += 1;
            fail(`wrong digest for ${data}`);
          } else stats.served += 1;
          resolve();
        });
      });
      req.on('error', (e) => {
        fail(e.message);
        resolve();
      });
      req.end();
    });
  const loops = Array.from({ length: concurrency }, async () => {
    while (running) await one();
  });
  return {
    stats,
    stop: async () => {
      running = false;
      await Promise.all(loops);
      agent.destroy();
    },
  };
}

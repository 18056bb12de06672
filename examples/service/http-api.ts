/*
 * The example service's public HTTP API. Every quote is computed by the hot-swappable target
 * (`pricing.api.quote`), so a patch changes the answers without a restart; inputs are checked
 * here first, so the target only ever sees a known SKU and a sane quantity.
 *
 *   GET /quote?sku=widget&quantity=10  → 200 the Quote (its `engine` says which version computed it)
 *   GET /version                       → 200 {target, version, patchId, canary}: what serves now
 *   GET /metrics                       → 200 Prometheus text: hotpatch_* metrics (calls, versions, rollbacks)
 *   GET /healthz                       → 200 ok
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { HotPatchMetrics } from 'xps-hotpatch/observability';
import type { Target } from 'xps-hotpatch/runtime';
import type { PricingApi, PricingConfig } from './pricing.js';

/** Largest quantity quoted: bounds the arithmetic well inside safe integers. */
const MAX_QUANTITY = 1_000_000;

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(`${JSON.stringify(body)}\n`);
}

export function createApiServer(pricing: Target<PricingApi>, config: PricingConfig, metrics: HotPatchMetrics): Server {
  const routes: Record<string, (url: URL, res: ServerResponse) => Promise<void> | void> = {
    '/quote': (url, res) => {
      const sku = url.searchParams.get('sku') ?? '';
      const quantityText = url.searchParams.get('quantity') ?? '1';
      const quantity = /^\d{1,7}$/.test(quantityText) ? Number(quantityText) : Number.NaN;
      if (!Object.hasOwn(config.prices, sku)) return json(res, 404, { error: `unknown sku ${JSON.stringify(sku)}` });
      if (!(quantity >= 1 && quantity <= MAX_QUANTITY)) return json(res, 400, { error: `quantity must be a whole number from 1 to ${MAX_QUANTITY}` });
      json(res, 200, pricing.api.quote(sku, quantity));
    },
    '/version': (_url, res) => {
      const { version, patchId } = pricing.active;
      json(res, 200, { target: pricing.name, version, patchId, canary: pricing.canary !== null });
    },
    // Served on the API port (not only on the agent's token-protected admin endpoint) so a
    // Prometheus that scrapes the service finds the hot-patch figures beside its own.
    '/metrics': async (_url, res) => {
      const text = await metrics.metrics();
      res.writeHead(200, { 'content-type': metrics.contentType }).end(text);
    },
    '/healthz': (_url, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    },
  };

  return createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://service.invalid');
    const route = Object.hasOwn(routes, url.pathname) ? routes[url.pathname] : undefined;
    if (route === undefined) return json(res, 404, { error: 'not found' });
    if (req.method !== 'GET') return json(res, 405, { error: 'only GET' });
    Promise.resolve()
      .then(() => route(url, res))
      .catch((error: unknown) => {
        // A version that throws is counted by the canary; the client gets a 500, never a hang.
        if (!res.headersSent) json(res, 500, { error: error instanceof Error ? error.message : String(error) });
        else res.destroy();
      });
  });
}

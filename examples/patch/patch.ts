/*
 * The example patch: version 1.0.1 of `example.pricing.quote`. It fixes the built-in's
 * off-by-one (a volume discount applies *from* its minQuantity, not above it) and reads
 * prices, currency and discounts from the host's target config (ctx.config), so it carries
 * no settings of its own and never reads process.env.
 *
 * A payload is one ES module, imported from the service's staging directory: it may import
 * `node:` built-ins only. The imports below are type-only and vanish when it is built
 * (`node examples/patch/build.mjs`), leaving a self-contained file.
 */
import type { PatchInitContext, PatchModule } from 'xps-hotpatch';
import type { PricingApi, PricingConfig, Quote } from '../service/pricing.js';

type Context = PatchInitContext<PricingConfig>;

/** Set by init before any call reaches this version (the runtime guarantees that order). */
let config: Context['config'] | undefined;
let engine = 'not initialised';

export const api: PricingApi = {
  quote(sku: string, quantity: number): Quote {
    if (config === undefined) throw new Error('pricing patch used before init(ctx)');
    const unitCents = config.prices[sku] ?? 0;
    const discountPercent = config.discounts.filter((d) => quantity >= d.minQuantity).reduce((best, d) => Math.max(best, d.percent), 0);
    return {
      sku,
      quantity,
      unitCents,
      discountPercent,
      totalCents: Math.round((unitCents * quantity * (100 - discountPercent)) / 100),
      currency: config.currency,
      engine,
    };
  },
};

export function init(ctx: Context): void {
  // A host that declares no config (or another shape) is refused at load, before any call.
  if (ctx.config === undefined || typeof ctx.config.prices !== 'object' || !Array.isArray(ctx.config.discounts)) {
    throw new Error(`${ctx.target} declares no pricing config (prices, discounts, currency)`);
  }
  config = ctx.config;
  engine = ctx.version;
}

/** Known-answer test of the fix, run before any live call: the boundary quantity gets its discount. */
export function selfTest(): void {
  if (config === undefined) throw new Error('selfTest before init');
  const [sku] = Object.keys(config.prices);
  const first = config.discounts[0];
  if (sku === undefined || first === undefined) return;
  const q = api.quote(sku, first.minQuantity);
  if (q.discountPercent < first.percent) {
    throw new Error(`quote(${sku}, ${first.minQuantity}) got ${q.discountPercent}% off, expected at least ${first.percent}%`);
  }
}

// Compile-time check of the exports above against what the installer accepts.
({ api, init, selfTest }) satisfies PatchModule<PricingApi, PricingConfig>;

/*
 * The example's hot-swappable target: price quotes. This file is shared by the service (which
 * runs the built-in implementation) and the patch (which imports only its types, erased when
 * built, so the payload stays self-contained).
 */

/** The target's name: what a patch's manifest names (`hotpatch pack --target`). */
export const PRICING_TARGET = 'example.pricing.quote';

/** One computed quote. `engine` is the version of the implementation that computed it. */
export interface Quote {
  sku: string;
  quantity: number;
  unitCents: number;
  discountPercent: number;
  totalCents: number;
  currency: string;
  engine: string;
}

/** The target's interface: the service calls it, and a patch must export an `api` providing it. */
export interface PricingApi {
  /** `sku` is known and `quantity` a whole number from 1 (the HTTP layer checks both first). */
  quote(sku: string, quantity: number): Quote;
}

/**
 * Host-provided settings, declared with the target and handed to every patch's init(ctx) as
 * ctx.config (deep-frozen). A `type` rather than an `interface`: only type aliases are
 * assignable to the runtime's `TargetConfig` (JSON data) type.
 */
export type PricingConfig = {
  currency: string;
  /** Unit price in cents per SKU. */
  prices: { [sku: string]: number };
  /** Volume discounts: `percent` off from `minQuantity` units on (the highest that applies). */
  discounts: { minQuantity: number; percent: number }[];
};

export const PRICING_CONFIG: PricingConfig = {
  currency: 'EUR',
  prices: { widget: 250, gadget: 1999 },
  discounts: [
    { minQuantity: 10, percent: 10 },
    { minQuantity: 100, percent: 25 },
  ],
};

/** The version of the built-in implementation below (semver; patches must be higher). */
export const BUILTIN_VERSION = '1.0.0';

/**
 * The built-in implementation, with the bug the example patch fixes: a discount applies only
 * *above* its `minQuantity`, so exactly 10 widgets get no discount.
 */
export function builtinPricing(config: PricingConfig): PricingApi {
  return {
    quote(sku, quantity) {
      const unitCents = config.prices[sku] ?? 0;
      const discount = config.discounts.filter((d) => quantity > d.minQuantity).reduce((best, d) => Math.max(best, d.percent), 0);
      return {
        sku,
        quantity,
        unitCents,
        discountPercent: discount,
        totalCents: Math.round((unitCents * quantity * (100 - discount)) / 100),
        currency: config.currency,
        engine: BUILTIN_VERSION,
      };
    },
  };
}

/**
 * The host's known-answer test, run against every candidate before it takes a live call:
 * one unit of a known SKU costs its list price, in the configured currency.
 */
export function pricingSelfTest(config: PricingConfig): (api: PricingApi) => void {
  return (api) => {
    const [sku, cents] = Object.entries(config.prices)[0] ?? ['', 0];
    const q = api.quote(sku, 1);
    if (q.totalCents !== cents || q.currency !== config.currency) {
      throw new Error(`quote(${sku}, 1) is ${q.totalCents} ${q.currency}, expected ${cents} ${config.currency}`);
    }
  };
}

/**
 * Checks a candidate's output during the canary (the target is not `deterministic`: a fix
 * changes answers on purpose, so outputs are not compared with the running version's).
 */
export function isSaneQuote(config: PricingConfig): (output: unknown) => boolean {
  return (output) => {
    if (typeof output !== 'object' || output === null) return false;
    const q = output as Partial<Quote>;
    return (
      q.currency === config.currency &&
      typeof q.totalCents === 'number' &&
      Number.isSafeInteger(q.totalCents) &&
      q.totalCents >= 0 &&
      typeof q.unitCents === 'number' &&
      typeof q.quantity === 'number' &&
      q.totalCents <= q.unitCents * q.quantity
    );
  };
}

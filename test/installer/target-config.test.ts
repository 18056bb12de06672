/*
 * A target's host-provided `config`: checked and deep-frozen when the target is declared, and
 * handed to every version's init(ctx) as ctx.config — on apply and again on restore.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { EventBus, HotPatchError } from '../../src/core/index.js';
import { DynamicInstaller, MAX_TARGET_CONFIG_BYTES, MAX_TARGET_CONFIG_DEPTH, checkTargetConfig, type TargetConfig } from '../../src/installer/index.js';
import { HotPatchRuntime, twoPhaseApply, type Target } from '../../src/zero-downtime/index.js';
import { FAST, drive, signedPatch, world, type World } from '../zero-downtime/fixtures.js';
import { throwsCode } from '../support/assertions.js';

const T = 'xps.pricing.quote';

interface Pricing {
  quote(cents: number): string;
  /** What the version's init(ctx) saw, as JSON (the built-in saw nothing). */
  context(): string;
}

const builtin: Pricing = { quote: (cents) => `${cents} EUR`, context: () => '{}' };

/**
 * A payload whose init reads its rate and currency from ctx.config, tries to change the
 * config (every attempt must throw: module code is strict), and reports what it saw.
 */
function pricingPatch(tag: string): string {
  return `// ${tag}
let rate = 0;
let currency = '?';
let seen = {};
export const api = {
  quote: (cents) => Math.round(cents * rate) + ' ' + currency,
  context: () => JSON.stringify(seen),
};
function deepFrozen(v) {
  return typeof v !== 'object' || v === null || (Object.isFrozen(v) && Object.values(v).every(deepFrozen));
}
export function init(ctx) {
  if (typeof ctx.config?.rate !== 'number') throw new Error('ctx.config.rate is missing');
  rate = ctx.config.rate;
  currency = ctx.config.currency;
  const refused = [];
  for (const change of [() => { ctx.config.rate = 99; }, () => { ctx.config.tiers[0].min = 99; }, () => ctx.config.tiers.push({ min: 1 })]) {
    try { change(); } catch (e) { refused.push(e.constructor.name); }
  }
  seen = { target: ctx.target, version: ctx.version, patchId: ctx.patchId, restored: ctx.restored ?? false, deepFrozen: deepFrozen(ctx.config), refused };
}
`;
}

/** Applies a pricing patch to `target` under steady calls; resolves once promoted. */
async function applyPatch(w: World, target: Target<Pricing>, id: string, version: string): Promise<void> {
  const { verified, payload } = signedPatch(id, T, version, pricingPatch(`${id} ${version}`));
  const apply = twoPhaseApply(w.installer, verified, payload, { ...FAST, steps: [1], minCalls: 0, probationMs: 0, runtime: w.runtime });
  await drive((i) => target.api.quote(i), apply);
  assert.equal((await apply).outcome, 'promoted');
}

describe('a target config reaches every version through init(ctx)', () => {
  test('a patch reads the host config in init(ctx) when applied, and the config the host declares after a restart when restored', async () => {
    const w = await world();
    try {
      const target = w.runtime.target(T, { version: '1.0.0', impl: builtin, config: { rate: 1.1, currency: 'EUR', tiers: [{ min: 0 }] } });
      await applyPatch(w, target, 'pricing-110', '1.1.0');
      assert.equal(target.api.quote(100), '110 EUR');
      assert.deepEqual(JSON.parse(target.api.context()), {
        target: T,
        version: '1.1.0',
        patchId: 'pricing-110',
        restored: false,
        deepFrozen: true,
        refused: ['TypeError', 'TypeError', 'TypeError'],
      });

      // A restart: the host now declares other settings; the restored version gets those.
      const runtime = new HotPatchRuntime({ stateDir: w.dir, bus: new EventBus(), installer: new DynamicInstaller(w.dir), durationProbeMs: 0 });
      const again = runtime.target(T, { version: '1.0.0', impl: builtin, config: { rate: 2, currency: 'CHF', tiers: [{ min: 0 }] } });
      try {
        await runtime.restore();
        assert.equal(again.active.patchId, 'pricing-110');
        assert.equal(again.api.quote(100), '200 CHF');
        assert.equal((JSON.parse(again.api.context()) as { restored: unknown }).restored, true);
      } finally {
        runtime.close();
      }
    } finally {
      await w.close();
    }
  });

  test('the config init(ctx) receives is a deep-frozen copy: neither a patch nor the host after declaring changes what the next version gets', async () => {
    const w = await world();
    try {
      const declared = { rate: 1.5, currency: 'EUR', tiers: [{ min: 0 }, { min: 10 }] };
      const target = w.runtime.target(T, { version: '1.0.0', impl: builtin, config: declared });
      assert.notEqual(target.config, declared);
      await applyPatch(w, target, 'pricing-a', '1.1.0');
      // The host changes its own object afterwards: the declared copy does not follow.
      declared.rate = 7;
      declared.tiers[0]!.min = 7;
      await applyPatch(w, target, 'pricing-b', '1.2.0');
      assert.equal(target.api.quote(100), '150 EUR');
      const seen = JSON.parse(target.api.context()) as { patchId: string; deepFrozen: boolean; refused: string[] };
      assert.equal(seen.patchId, 'pricing-b');
      assert.equal(seen.deepFrozen, true);
      assert.deepEqual(seen.refused, ['TypeError', 'TypeError', 'TypeError']);
      assert.deepEqual(target.config, { rate: 1.5, currency: 'EUR', tiers: [{ min: 0 }, { min: 10 }] });
    } finally {
      await w.close();
    }
  });

  test('a target declared without config gives init(ctx) an undefined config, and a patch that needs one is refused with LOAD_FAILED', async () => {
    const w = await world();
    try {
      const target = w.runtime.target(T, { version: '1.0.0', impl: builtin });
      assert.equal(target.config, undefined);
      const { verified, payload } = signedPatch('needs-config', T, '1.1.0', pricingPatch('needs-config'));
      await assert.rejects(twoPhaseApply(w.installer, verified, payload, { ...FAST, steps: [1], runtime: w.runtime }), (error: unknown) => {
        assert.ok(error instanceof HotPatchError);
        assert.equal(error.code, 'LOAD_FAILED');
        assert.match(error.message, /ctx\.config\.rate is missing/);
        return true;
      });
      assert.equal(target.active.patchId, null);
    } finally {
      await w.close();
    }
  });
});

describe('a target config that is not plain JSON data is refused when the target is declared', () => {
  class Money {
    constructor(readonly cents: number) {}
  }
  const cyclic: Record<string, unknown> = { name: 'loop' };
  cyclic.self = cyclic;
  const sparse: unknown[] = [1];
  sparse[2] = 3;
  const cases: [string, unknown, RegExp][] = [
    ['a function', { round: () => 1 }, /config\.round is a function/],
    ['an undefined field', { currency: undefined }, /config\.currency is undefined/],
    ['NaN', { rate: Number.NaN }, /config\.rate must be a finite number, got NaN/],
    ['Infinity in an array', { limits: [1, Number.POSITIVE_INFINITY] }, /config\.limits\[1\] must be a finite number/],
    ['a bigint', { big: 10n }, /config\.big is a bigint/],
    ['a Date', { since: new Date(0) }, /config\.since is a Date/],
    ['a Map', { table: new Map() }, /config\.table is a Map/],
    ['a class instance', { price: new Money(5) }, /config\.price is a Money/],
    ['a cycle', cyclic, /config\.self refers back to an enclosing object/],
    ['a sparse array', { tiers: sparse }, /config\.tiers must be a dense array/],
    [
      'a getter',
      {
        get rate() {
          return 1;
        },
      },
      /config\.rate is an accessor/,
    ],
    ['a symbol key', { [Symbol('k')]: 1 }, /symbol key/],
    ['a Proxy', { nested: new Proxy({}, {}) }, /config\.nested is a Proxy/],
    ['an odd key, named exactly', { 'a b': { c: () => 0 } }, /config\["a b"\]\.c is a function/],
    ['an array at the top', [1, 2], /config must be a JSON object, got an array/],
    ['null at the top', null, /config must be a JSON object, got null/],
    ['a string at the top', 'rate=1', /config must be a JSON object, got "rate=1"/],
  ];
  for (const [what, config, message] of cases) {
    test(`${what} is refused with INVALID naming where it is`, () => {
      const runtime = new HotPatchRuntime({ bus: new EventBus(), durationProbeMs: 0 });
      throwsCode(() => runtime.target(T, { version: '1.0.0', impl: builtin, config: config as TargetConfig }), 'INVALID', message);
      assert.deepEqual(runtime.list(), [], 'a refused declaration declares nothing');
      runtime.close();
    });
  }
});

describe('a target config is bounded', () => {
  // {"s":"xxx…"} is 8 bytes of JSON around the string's characters.
  const ofBytes = (bytes: number): TargetConfig => ({ s: 'x'.repeat(bytes - 8) });
  const nested = (levels: number): TargetConfig => {
    let value: TargetConfig = { leaf: true };
    for (let i = 1; i < levels; i++) value = { next: value };
    return value;
  };

  test('a config of exactly 64 KiB as JSON is taken; one byte more is refused with TOO_LARGE', () => {
    assert.equal(Buffer.byteLength(JSON.stringify(ofBytes(MAX_TARGET_CONFIG_BYTES))), MAX_TARGET_CONFIG_BYTES);
    assert.equal(checkTargetConfig(ofBytes(MAX_TARGET_CONFIG_BYTES)).s, 'x'.repeat(MAX_TARGET_CONFIG_BYTES - 8));
    throwsCode(() => checkTargetConfig(ofBytes(MAX_TARGET_CONFIG_BYTES + 1)), 'TOO_LARGE', /config is larger than 65536 bytes as JSON/);
    // Multi-byte characters count as the UTF-8 bytes they take, not as characters.
    throwsCode(() => checkTargetConfig({ s: 'é'.repeat(MAX_TARGET_CONFIG_BYTES / 2) }), 'TOO_LARGE', /larger than/);
    // An array's length alone can tell: it is refused before its 4 billion slots are listed.
    throwsCode(() => checkTargetConfig({ slots: new Array<number>(2 ** 32 - 1) }), 'TOO_LARGE', /reached at config\.slots/);
  });

  test('a config nested deeper than 32 levels is refused with TOO_LARGE when the target is declared', () => {
    assert.doesNotThrow(() => checkTargetConfig(nested(MAX_TARGET_CONFIG_DEPTH)));
    const runtime = new HotPatchRuntime({ bus: new EventBus(), durationProbeMs: 0 });
    throwsCode(
      () => runtime.target(T, { version: '1.0.0', impl: builtin, config: nested(MAX_TARGET_CONFIG_DEPTH + 1) }),
      'TOO_LARGE',
      /nests deeper than 32 levels/,
    );
    runtime.close();
  });

  test('the copy keeps exactly what JSON.parse would give: a "__proto__" key stays data, null-prototype objects become plain', () => {
    const parsed = JSON.parse('{"__proto__":{"polluted":true},"list":[1,"two",null,false,{"n":-0.5}]}') as TargetConfig;
    const copy = checkTargetConfig(parsed);
    assert.equal(Object.getPrototypeOf(copy), Object.prototype);
    assert.deepEqual(Object.keys(copy), ['__proto__', 'list']);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    assert.equal(JSON.stringify(copy), JSON.stringify(parsed));
    const bare = Object.assign(Object.create(null) as Record<string, unknown>, { a: 1 });
    assert.equal(Object.getPrototypeOf(checkTargetConfig(bare)), Object.prototype);
  });
});

import assert from 'node:assert/strict';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { test } from 'node:test';
import { HotPatchError } from '../../src/core/index.js';
import { DynamicInstaller, NATIVE_REFUSAL, type LoadOptions, type StagedPayload, type WasmAdapter } from '../../src/installer/index.js';
import { ADD_WASM, manifestFor, rejectsWith, utf8, withTempDir } from './helpers.js';

const TARGET = 'xps.math.add';

function options(extra: Partial<LoadOptions> = {}): LoadOptions {
  return { target: TARGET, version: '1.0.0', patchId: 'fix-1', requiredFunctions: ['add'], ...extra };
}

/** Stages `source` as an esm payload of `installer`. */
async function stageEsm(installer: DynamicInstaller, source: string): Promise<StagedPayload> {
  const bytes = utf8(source);
  const { manifest, facts } = manifestFor(bytes);
  return installer.stage(manifest, facts, bytes);
}

const GOOD_MODULE = `
let seen;
let disposed = 0;
export const api = { add: (a, b) => a + b, seenContext: () => seen, disposed: () => disposed };
export function init(ctx) { seen = ctx; }
export function selfTest() { if (api.add(2, 3) !== 5) throw new Error('add is broken'); return 'ok'; }
export function dispose() { disposed += 1; }
export function exportState() { return { n: 1 }; }
export function importState(state) { return state; }
`;

const wasmAdapter: WasmAdapter = {
  toApi(exports) {
    const add = exports.add as (a: number, b: number) => number;
    return { add: (a: number, b: number) => add(a, b) };
  },
};

async function stageWasm(installer: DynamicInstaller, bytes: Uint8Array = ADD_WASM): Promise<StagedPayload> {
  const { manifest, facts } = manifestFor(bytes, { type: 'wasm' });
  return installer.stage(manifest, facts, bytes);
}

test('load imports a staged ES module: its api works, init got the context, its hooks are exposed', async () => {
  await withTempDir(async (dir) => {
    const installer = new DynamicInstaller(dir);
    const staged = await stageEsm(installer, GOOD_MODULE);
    const ctx = { logger: 'test-logger' };
    const loaded = await installer.load(staged, options({ initContext: ctx }));
    const api = loaded.api as { add(a: number, b: number): number; seenContext(): unknown; disposed(): number };
    assert.equal(api.add(2, 3), 5);
    assert.equal(api.seenContext(), ctx);
    assert.equal(await loaded.selfTest?.(), 'ok');
    await loaded.dispose?.();
    assert.equal(api.disposed(), 1);
    assert.deepEqual(loaded.exportState?.(), { n: 1 });
    assert.equal(loaded.importState?.('s'), 's');
    assert.equal(installer.liveVersions(TARGET), 1);
  });
});

test('load passes an empty context to init when none is given, and omits hooks the module lacks', async () => {
  await withTempDir(async (dir) => {
    const installer = new DynamicInstaller(dir);
    const staged = await stageEsm(installer, 'let c; export const api = { add: (a, b) => a + b, ctx: () => c };\nexport const init = (ctx) => { c = ctx; };\n');
    const loaded = await installer.load(staged, options());
    assert.deepEqual((loaded.api as { ctx(): unknown }).ctx(), {});
    assert.deepEqual(Object.keys(loaded), ['api']);
  });
});

test('loading the same staged module again returns the cached module and does not add a live version', async () => {
  await withTempDir(async (dir) => {
    const installer = new DynamicInstaller(dir);
    const staged = await stageEsm(installer, GOOD_MODULE);
    const first = await installer.load(staged, options());
    const second = await installer.load(staged, options({ version: '1.0.0', patchId: 'fix-1-again' }));
    assert.notEqual(second, first, 'each load returns a fresh LoadedModule');
    assert.equal(second.api, first.api, 'the module itself is the cached one');
    assert.equal(installer.liveVersions(TARGET), 1);
  });
});

test('load refuses a module whose import throws, and the live count does not grow', async () => {
  await withTempDir(async (dir) => {
    const installer = new DynamicInstaller(dir);
    const staged = await stageEsm(installer, 'throw new Error("top-level failure");\nexport const api = {};\n');
    const error = await rejectsWith(installer.load(staged, options()), 'LOAD_FAILED', /top-level failure/);
    assert.ok(error.cause instanceof Error);
    assert.equal(installer.liveVersions(TARGET), 0);
    // Node caches the failed module: a second attempt fails the same way without counting.
    await rejectsWith(installer.load(staged, options()), 'LOAD_FAILED', /top-level failure/);
    assert.equal(installer.liveVersions(TARGET), 0);
  });
});

test('load refuses a module with a syntax error', async () => {
  await withTempDir(async (dir) => {
    const installer = new DynamicInstaller(dir);
    const staged = await stageEsm(installer, 'export const api = { add: (a, b) => a + };\n');
    const error = await rejectsWith(installer.load(staged, options()), 'LOAD_FAILED', /importing/);
    assert.ok(error.cause instanceof SyntaxError);
    assert.equal(installer.liveVersions(TARGET), 0);
  });
});

test('load refuses a module whose init throws, naming the cause', async () => {
  await withTempDir(async (dir) => {
    const installer = new DynamicInstaller(dir);
    const staged = await stageEsm(
      installer,
      'export const api = { add: (a, b) => a + b };\nexport async function init() { throw new Error("no key material"); }\n',
    );
    const error = await rejectsWith(installer.load(staged, options()), 'LOAD_FAILED', /init\(ctx\) threw: no key material/);
    assert.equal((error.cause as Error).message, 'no key material');
    assert.equal(error.detail?.target, TARGET);
    // The module did run and cannot be unloaded, so it keeps counting.
    assert.equal(installer.liveVersions(TARGET), 1);
  });
});

test('load refuses an api that lacks a required function, naming the missing ones', async () => {
  await withTempDir(async (dir) => {
    const installer = new DynamicInstaller(dir);
    const staged = await stageEsm(installer, 'export const api = { add: (a, b) => a + b, sub: 42 };\n');
    const error = await rejectsWith(
      installer.load(staged, options({ requiredFunctions: ['add', 'sub', 'mul', 'toString'] })),
      'LOAD_FAILED',
      /lacks 3 of the 4 functions of xps\.math\.add's interface: sub, mul, toString/,
    );
    assert.deepEqual(error.detail?.missing, ['sub', 'mul', 'toString']);
  });
});

test('load refuses a module without an api export or with a hook that is not a function', async () => {
  await withTempDir(async (dir) => {
    const installer = new DynamicInstaller(dir);
    const noApi = await stageEsm(installer, 'export const add = (a, b) => a + b;\n');
    await rejectsWith(installer.load(noApi, options()), 'LOAD_FAILED', /does not export `api` \(it exports: add\)/);
    const nullApi = await stageEsm(installer, 'export const api = null;\n');
    await rejectsWith(installer.load(nullApi, options()), 'LOAD_FAILED', /must be an object/);
    const badHook = await stageEsm(installer, 'export const api = { add: (a, b) => a + b };\nexport const selfTest = true;\n');
    await rejectsWith(installer.load(badHook, options()), 'LOAD_FAILED', /`selfTest` but not as a function/);
  });
});

test('load refuses a staged file that was modified on disk afterwards with HASH_MISMATCH', async () => {
  await withTempDir(async (dir) => {
    const installer = new DynamicInstaller(dir);
    const staged = await stageEsm(installer, 'export const api = { add: (a, b) => a + b };\n');
    await chmod(staged.path, 0o644);
    const bytes = await readFile(staged.path);
    bytes[bytes.indexOf('+'.charCodeAt(0))] = '-'.charCodeAt(0);
    await writeFile(staged.path, bytes);
    await rejectsWith(installer.load(staged, options()), 'HASH_MISMATCH');
    assert.equal(installer.liveVersions(TARGET), 0);
  });
});

test("load refuses a staged record that does not point into this installer's staging directory", async () => {
  await withTempDir(async (dir) => {
    const installer = new DynamicInstaller(dir);
    const staged = await stageEsm(installer, 'export const api = { add: (a, b) => a + b };\n');
    await rejectsWith(installer.load({ ...staged, path: '/tmp/elsewhere.mjs' }, options()), 'INVALID', /staged\.path/);
    await rejectsWith(installer.load(staged, options({ target: 'not a target' })), 'INVALID', /options\.target/);
    await rejectsWith(installer.load(staged, options({ requiredFunctions: 'add' as unknown as string[] })), 'INVALID', /requiredFunctions/);
  });
});

test('load refuses native payloads', async () => {
  await withTempDir(async (dir) => {
    const installer = new DynamicInstaller(dir);
    const bytes = utf8('\x7fELF pretend');
    const { manifest, facts } = manifestFor(bytes, { type: 'native' });
    const staged = await installer.stage(manifest, facts, bytes);
    const error = await rejectsWith(installer.load(staged, options()), 'LOAD_FAILED');
    assert.ok(error.message.includes(NATIVE_REFUSAL), error.message);
    assert.equal(installer.liveVersions(TARGET), 0);
  });
});

test('the live-version cap refuses a new distinct module but not one already loaded', async () => {
  await withTempDir(async (dir) => {
    const installer = new DynamicInstaller(dir, { maxLiveVersionsPerTarget: 2 });
    const v1 = await stageEsm(installer, 'export const api = { add: (a, b) => a + b }; // v1\n');
    const v2 = await stageEsm(installer, 'export const api = { add: (a, b) => a + b }; // v2\n');
    const v3 = await stageEsm(installer, 'globalThis.__xpsInstallerV3Imported = true;\nexport const api = { add: (a, b) => a + b }; // v3\n');
    await installer.load(v1, options());
    await installer.load(v2, options({ version: '1.0.1' }));
    const error = await rejectsWith(installer.load(v3, options({ version: '1.0.2' })), 'LOAD_FAILED', /cap is 2.*restart/);
    assert.deepEqual({ live: error.detail?.live, cap: error.detail?.cap }, { live: 2, cap: 2 });
    assert.equal((globalThis as Record<string, unknown>).__xpsInstallerV3Imported, undefined, 'the cap is checked before importing');
    assert.equal(installer.liveVersions(TARGET), 2);
    // Going back to a version that is already live costs nothing and is allowed.
    await installer.load(v1, options());
    assert.equal(installer.liveVersions(TARGET), 2);
    // The cap is per target.
    await installer.load(v3, options({ target: 'xps.math.other' }));
    assert.equal(installer.liveVersions('xps.math.other'), 1);
    // Releasing an esm version changes nothing: it can never be unloaded.
    installer.release(TARGET, v1.sha256);
    assert.equal(installer.liveVersions(TARGET), 2);
  });
});

test('concurrent loads of distinct modules cannot both take the last slot', async () => {
  await withTempDir(async (dir) => {
    const installer = new DynamicInstaller(dir, { maxLiveVersionsPerTarget: 1 });
    const a = await stageEsm(installer, 'export const api = { add: (a, b) => a + b }; // a\n');
    const b = await stageEsm(installer, 'export const api = { add: (a, b) => a + b }; // b\n');
    const results = await Promise.allSettled([installer.load(a, options()), installer.load(b, options())]);
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
    const rejected = results.find((r) => r.status === 'rejected');
    assert.ok(rejected?.status === 'rejected' && rejected.reason instanceof HotPatchError && rejected.reason.code === 'LOAD_FAILED');
    assert.equal(installer.liveVersions(TARGET), 1);
  });
});

test('load instantiates a real wasm module through the target adapter', async () => {
  await withTempDir(async (dir) => {
    const installer = new DynamicInstaller(dir);
    const staged = await stageWasm(installer);
    assert.ok(staged.path.endsWith('.wasm'));
    let seenInstance: unknown;
    const loaded = await installer.load(
      staged,
      options({
        adapter: {
          toApi(exports, instance) {
            seenInstance = instance;
            return wasmAdapter.toApi(exports, instance);
          },
        },
      }),
    );
    assert.equal((loaded.api as { add(a: number, b: number): number }).add(2, 3), 5);
    assert.ok(seenInstance !== undefined && typeof (seenInstance as { exports?: unknown }).exports === 'object');
    assert.equal(installer.liveVersions(TARGET), 1);
  });
});

test('load refuses a wasm payload without an adapter', async () => {
  await withTempDir(async (dir) => {
    const installer = new DynamicInstaller(dir);
    const staged = await stageWasm(installer);
    await rejectsWith(installer.load(staged, options()), 'LOAD_FAILED', /wasm payloads need the target's adapter/);
    assert.equal(installer.liveVersions(TARGET), 0);
  });
});

test('load refuses bytes that are not WebAssembly, an adapter that throws, and an api the adapter left incomplete', async () => {
  await withTempDir(async (dir) => {
    const installer = new DynamicInstaller(dir);
    const notWasm = await stageWasm(installer, utf8('definitely not wasm'));
    await rejectsWith(installer.load(notWasm, options({ adapter: wasmAdapter })), 'LOAD_FAILED', /not a valid WebAssembly module/);
    const staged = await stageWasm(installer);
    const throwing: WasmAdapter = {
      toApi() {
        throw new Error('export missing');
      },
    };
    await rejectsWith(installer.load(staged, options({ adapter: throwing })), 'LOAD_FAILED', /adapter threw in toApi: export missing/);
    const incomplete: WasmAdapter = { toApi: () => ({}) };
    await rejectsWith(installer.load(staged, options({ adapter: incomplete })), 'LOAD_FAILED', /lacks 1 of the 1 functions.*: add/);
    // None of the failed instances counts.
    assert.equal(installer.liveVersions(TARGET), 0);
  });
});

test('load reports a wasm module whose imports are not satisfied as LOAD_FAILED', async () => {
  await withTempDir(async (dir) => {
    const installer = new DynamicInstaller(dir);
    // (module (import "env" "f" (func)))
    const importing = new Uint8Array([
      0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x04, 0x01, 0x60, 0x00, 0x00, 0x02, 0x09, 0x01, 0x03, 0x65, 0x6e, 0x76, 0x01, 0x66, 0x00, 0x00,
    ]);
    const staged = await stageWasm(installer, importing);
    await rejectsWith(installer.load(staged, options({ adapter: wasmAdapter })), 'LOAD_FAILED', /instantiating/);
    const loaded = await installer.load(
      staged,
      options({
        requiredFunctions: [],
        adapter: { imports: { env: { f: () => undefined } }, toApi: () => ({}) },
      }),
    );
    assert.deepEqual(loaded.api, {});
  });
});

test('wasm instances count until released', async () => {
  await withTempDir(async (dir) => {
    const installer = new DynamicInstaller(dir, { maxLiveVersionsPerTarget: 1 });
    const staged = await stageWasm(installer);
    await installer.load(staged, options({ adapter: wasmAdapter }));
    await installer.load(staged, options({ adapter: wasmAdapter }));
    assert.equal(installer.liveVersions(TARGET), 1, 'two instances of one version are one live version');
    const other = await stageEsm(installer, 'export const api = { add: (a, b) => a + b };\n');
    await rejectsWith(installer.load(other, options()), 'LOAD_FAILED', /cap is 1/);
    installer.release(TARGET, staged.sha256);
    assert.equal(installer.liveVersions(TARGET), 1, 'one instance is still live');
    installer.release(TARGET, staged.sha256);
    assert.equal(installer.liveVersions(TARGET), 0);
    installer.release(TARGET, staged.sha256);
    assert.equal(installer.liveVersions(TARGET), 0, 'releasing again is harmless');
    await installer.load(other, options());
    assert.equal(installer.liveVersions(TARGET), 1);
  });
});

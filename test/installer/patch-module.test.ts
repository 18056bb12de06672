/*
 * PatchModule, the type patch authors check their payload against, matches what the
 * installer accepts: a module written against it loads, and what it rejects at compile time
 * (the `@ts-expect-error` lines, checked by the build) the installer would refuse at load.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { DynamicInstaller, checkTargetConfig, type PatchInitContext, type PatchModule } from '../../src/installer/index.js';
import { esmLoadedModule } from '../../src/installer/loaders.js';
import * as typed from './fixtures/typed-patch.js';
import { manifestFor, rejectsWith, withTempDir } from './helpers.js';

const subject = { target: 'xps.greeting', version: '1.1.0', patchId: 'greet-1', sha256: '0'.repeat(64) };

function context(config: Record<string, unknown>): PatchInitContext<typed.GreeterConfig> {
  return { target: subject.target, version: subject.version, patchId: subject.patchId, config: checkTargetConfig(config) as typed.GreeterConfig };
}

test('a module typed with PatchModule passes the installer export checks, and its init reads ctx.config', async () => {
  // The namespace object itself is a PatchModule: every export has the type the runtime calls.
  const asModule: PatchModule<typed.Greeter, typed.GreeterConfig, typed.GreeterState> = typed;
  const { loaded, init } = esmLoadedModule(asModule as unknown as Record<string, unknown>, ['greet'], subject);
  assert.deepEqual(Object.keys(loaded).sort(), ['api', 'dispose', 'exportState', 'importState', 'selfTest']);
  await init?.({ ...context({ greeting: 'hi', punctuation: '!' }) });
  assert.equal((loaded.api as unknown as typed.Greeter).greet('Ada'), 'hi, Ada!');
  await loaded.selfTest?.();
  await loaded.importState?.({ greeted: 40 });
  assert.deepEqual(await loaded.exportState?.(), { greeted: 40 });
});

test('the compiled typed module is a self-contained payload: staged and loaded by the installer with a PatchInitContext', async () => {
  const bytes = new Uint8Array(await readFile(new URL('./fixtures/typed-patch.js', import.meta.url)));
  assert.doesNotMatch(Buffer.from(bytes).toString('utf8'), /^\s*import\s/m, 'the type import is erased');
  await withTempDir(async (dir) => {
    const installer = new DynamicInstaller(dir);
    const { manifest, facts } = manifestFor(bytes, { target: subject.target, version: subject.version, id: subject.patchId });
    const staged = await installer.stage(manifest, facts, bytes);
    const options = { target: subject.target, version: subject.version, patchId: subject.patchId, requiredFunctions: ['greet'] };
    const loaded = await installer.load(staged, { ...options, initContext: { ...context({ greeting: 'salut' }) } });
    assert.equal((loaded.api as unknown as typed.Greeter).greet('Grace'), 'salut, Grace');
    // The same module without the config its init reads: refused at load, as the runtime would.
    await rejectsWith(installer.load(staged, { ...options, initContext: {} }), 'LOAD_FAILED', /init\(ctx\) threw/);
  });
});

test('PatchModule refuses at compile time what the installer would refuse at load (each line below is a type error)', () => {
  const greeter: typed.Greeter = { greet: (name) => name };
  const shapes: unknown[] = [
    // @ts-expect-error api lacks the interface's method (the installer: LOAD_FAILED "lacks … greet")
    { api: { hello: () => '' } } satisfies PatchModule<typed.Greeter>,
    // @ts-expect-error a hook must be a function (the installer: "exports `dispose` but not as a function")
    { api: greeter, dispose: true } satisfies PatchModule<typed.Greeter>,
    // @ts-expect-error a misspelt hook is never called by the installer
    { api: greeter, selftest: () => undefined } satisfies PatchModule<typed.Greeter>,
    // @ts-expect-error init takes the context the runtime gives, not another shape
    { api: greeter, init: (ctx: { port: number }) => void ctx } satisfies PatchModule<typed.Greeter>,
    // @ts-expect-error the config a patch expects must match what init declares
    { api: greeter, init: typed.init } satisfies PatchModule<typed.Greeter, { greeting: number }>,
  ];
  const mutate = (ctx: PatchInitContext<typed.GreeterConfig>): void => {
    // @ts-expect-error ctx.config is read-only (and frozen at run time)
    ctx.config.greeting = 'changed';
  };
  assert.equal(shapes.length, 5);
  assert.throws(() => mutate(context({ greeting: 'hi' })), TypeError);
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { HotPatchError, isPatchId, type PatchId } from '../../src/core/index.js';
import { FileSystemRepository } from '../../src/repo/index.js';
import { envelopeJson } from './helpers.js';

// Any file-system access under this root fails with NOT_FOUND (or IO), never INVALID; so an
// INVALID answer proves the id was refused before anything was touched.
const MISSING_ROOT = '/nonexistent-xps-hotpatch-root/repo';

const notPatchId = fc
  .oneof(
    fc.string({ maxLength: 200 }),
    fc.string({ unit: 'grapheme', maxLength: 40 }),
    fc.string({ unit: 'binary', maxLength: 40 }),
    fc.constantFrom('', '.', '..', '../x', 'a/b', 'a\0b', '.a', '-a', '_a', 'a..b', 'x'.repeat(129)),
    fc
      .tuple(fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,20}$/), fc.constantFrom('/', '\\', '\0', ' ', '..', '\u00e9', '\n'), fc.string({ maxLength: 5 }))
      .map(([a, b, c]) => a + b + c),
  )
  .filter((s) => !isPatchId(s));

async function codeOf(run: () => Promise<unknown>): Promise<string> {
  try {
    await run();
  } catch (error) {
    return error instanceof HotPatchError ? error.code : `non-HotPatchError: ${String(error)}`;
  }
  return 'no error';
}

test('any string that is not a valid patch id is refused with INVALID before any file access', async () => {
  const repo = new FileSystemRepository(MISSING_ROOT);
  await fc.assert(
    fc.asyncProperty(notPatchId, async (raw) => {
      const id = raw as PatchId;
      assert.equal(await codeOf(() => repo.fetchEnvelope(id)), 'INVALID');
      assert.equal(await codeOf(async () => repo.openPayload(id, 10)), 'INVALID');
      assert.equal(await codeOf(() => repo.readPayload(id, 10)), 'INVALID');
      assert.equal(await codeOf(() => repo.publish(id, envelopeJson(), new Uint8Array([1]))), 'INVALID');
      assert.equal(await codeOf(() => repo.writeEnvelope(id, envelopeJson())), 'INVALID');
    }),
    { numRuns: 300 },
  );
});

test('any valid patch id reaches the file system (control for the property above)', async () => {
  const repo = new FileSystemRepository(MISSING_ROOT);
  await fc.assert(
    fc.asyncProperty(fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/).filter(isPatchId), async (raw) => {
      assert.equal(await codeOf(() => repo.fetchEnvelope(raw)), 'NOT_FOUND');
    }),
    { numRuns: 100 },
  );
});

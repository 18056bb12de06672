import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { RollbackIndex, StateStore, emptyTargetState, parseStateFile } from '../../src/rollback/index.js';
import { isCode } from '../support/assertions.js';

const T = 'xps.crypto.hash.sha256';
const enc = (v: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(v));
test('concurrent updates are serialised and each sees the previous one, and the file is always whole', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'hotpatch-state-'));
  try {
    const store = new StateStore(dir);
    await Promise.all(
      Array.from({ length: 25 }, (_, i) =>
        store.update((s) => {
          const t = (s.targets[T] ??= emptyTargetState());
          t.failed.push(`p${i}`);
        }),
      ),
    );
    const onDisk = parseStateFile(await readFile(join(dir, 'state.json')), 'state.json');
    assert.equal(onDisk.targets[T]?.failed.length, 25);
    assert.deepEqual(
      (await readdir(dir)).filter((n) => n.endsWith('.tmp')),
      [],
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('the RollbackIndex keeps the last good version per target in state.json', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'hotpatch-state-'));
  try {
    const index = new RollbackIndex(new StateStore(dir));
    await index.setLastGood(T, { id: 'fix-1', version: '1.0.1', sha256: 'a'.repeat(64), type: 'esm' });
    const again = new RollbackIndex(new StateStore(dir));
    assert.deepEqual(await again.getLastGood(T), { id: 'fix-1', version: '1.0.1', sha256: 'a'.repeat(64), type: 'esm' });
    assert.equal(await again.getLastGood('xps.other'), undefined);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a state file that does not parse is reported, never silently reset', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'hotpatch-state-'));
  try {
    await writeFile(join(dir, 'state.json'), '{"format":1,"targets":{');
    await assert.rejects(new StateStore(dir).load(), isCode('PARSE'));
    assert.equal(await readFile(join(dir, 'state.json'), 'utf8'), '{"format":1,"targets":{');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('the state file parser is strict about formats, fields and records', () => {
  const ok = { format: 1, targets: { [T]: { active: null, previous: null, last_good: null, failed: [] } } };
  parseStateFile(enc(ok), 's');
  assert.throws(() => parseStateFile(enc({ ...ok, format: 2 }), 's'), isCode('INVALID'));
  assert.throws(() => parseStateFile(enc({ ...ok, extra: 1 }), 's'), isCode('INVALID'));
  assert.throws(() => parseStateFile(enc({ format: 1, targets: { [T]: { active: { id: 'p', version: '1.0.0' } } } }), 's'), isCode('INVALID'));
  assert.throws(() => parseStateFile(enc({ format: 1, targets: { [T]: { highest_version: 2 } } }), 's'), isCode('INVALID'));
  assert.throws(
    () => parseStateFile(enc({ format: 1, targets: { [T]: { active: { id: 'p', version: '1.0.0', sha256: 'XYZ', type: 'esm' } } } }), 's'),
    isCode('INVALID'),
  );
});

test('the failed list of a target is bounded by the writer: the newest 1,000 ids are kept', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'hotpatch-state-'));
  try {
    const store = new StateStore(dir);
    await store.update((s) => {
      const t = (s.targets[T] ??= emptyTargetState());
      for (let i = 0; i < 1500; i++) t.failed.push(`p${i}`);
    });
    const onDisk = parseStateFile(await readFile(join(dir, 'state.json')), 'state.json');
    assert.equal(onDisk.targets[T]?.failed.length, 1000);
    assert.equal(onDisk.targets[T]?.failed[0], 'p500');
    assert.equal(onDisk.targets[T]?.failed.at(-1), 'p1499');
    assert.deepEqual(await store.read(), onDisk);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

/*
 * packPatch and signPatch, the library calls behind `hotpatch pack` and `hotpatch sign`:
 * what they write verifies with verifyPatch, and what they refuse leaves the repository as it
 * was. Imported from the package root, as a user would.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  DefaultVerifier,
  FileSystemRepository,
  HotPatchError,
  decodeEnvelope,
  generateKeyPair,
  packPatch,
  parseTrustStore,
  signPatch,
  verifyPatch,
  type PrivateKey,
} from '../../src/index.js';

const TARGET = 'xps.demo.greet';
const SOURCE = 'export const api = { greet: (name) => `hello ${name}` };\n';

let root: string;
const keys = {
  ed: generateKeyPair('ed25519'),
  ec: generateKeyPair('ecdsa-p256-sha256'),
  pq: generateKeyPair('ml-dsa-65'),
};

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'hotpatch-api-pack-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

function verifier(threshold: number): DefaultVerifier {
  const trust = parseTrustStore({
    keys: Object.fromEntries(Object.entries(keys).map(([id, k]) => [id, { alg: k.publicKey.alg, public_key: k.publicKey.toPem() }])),
    threshold,
  });
  return new DefaultVerifier(trust);
}

async function rejectsWith(promise: Promise<unknown>, code: string, pattern?: RegExp): Promise<HotPatchError> {
  let caught: unknown;
  await promise.then(
    () => assert.fail(`expected ${code}, but it resolved`),
    (e: unknown) => (caught = e),
  );
  assert.ok(caught instanceof HotPatchError, `expected a HotPatchError, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  if (pattern !== undefined) assert.match(caught.message, pattern);
  return caught;
}

test('a patch packed from bytes and signed by two keys verifies with verifyPatch (threshold 2)', async () => {
  const dir = join(root, 'bytes', 'repo'); // created by packPatch
  const packed = await packPatch(dir, {
    id: 'greet-1',
    target: TARGET,
    version: '1.0.1',
    type: 'esm',
    payload: new TextEncoder().encode(SOURCE),
    metadata: { ticket: 'T-1' },
  });
  assert.equal(packed.repository, dir);
  assert.equal(packed.replaced, false);
  assert.equal(packed.manifest.payload_size, Buffer.byteLength(SOURCE));
  assert.match(packed.manifest.payload_hash, /^sha256:[0-9a-f]{64}$/);
  // Default expiry: 90 days after created_at.
  assert.equal(packed.facts.expiresMs! - packed.facts.createdAtMs, 90 * 86_400_000);

  const repo = new FileSystemRepository(dir);
  await rejectsWith(verifyPatch(repo, verifier(2), 'greet-1'), 'THRESHOLD_NOT_MET');

  const first = await signPatch(dir, 'greet-1', keys.ed.privateKey, { keyid: 'ed' });
  assert.deepEqual(
    { signatures: first.signatures, replaced: first.replaced, counts: first.counts, alg: first.alg },
    { signatures: ['ed'], replaced: false, counts: true, alg: 'ed25519' },
  );
  await rejectsWith(verifyPatch(repo, verifier(2), 'greet-1'), 'THRESHOLD_NOT_MET');
  const second = await signPatch(repo, 'greet-1', keys.pq.privateKey, { keyid: 'pq' });
  assert.deepEqual(second.signatures, ['ed', 'pq']);

  const verified = await verifyPatch(repo, verifier(2), 'greet-1');
  assert.deepEqual([...verified.signers].sort(), ['ed', 'pq']);
  assert.equal(verified.manifest.metadata?.ticket, 'T-1');
  assert.equal(new TextDecoder().decode(await repo.readPayload(verified.manifest.id, verified.manifest.payload_size)), SOURCE);
});

test('a patch packed from a file, with every manifest option, verifies; re-signing replaces the signature', async () => {
  const dir = join(root, 'file');
  await mkdir(dir);
  const file = join(dir, 'greet.mjs');
  await writeFile(file, SOURCE);
  const repoDir = join(dir, 'repo');
  const packed = await packPatch(repoDir, {
    id: 'greet-2',
    target: TARGET,
    version: '2.0.0',
    type: 'esm',
    payload: { fromFile: file },
    hash: 'sha3-256',
    createdAt: '2025-01-01T00:00:00Z',
    expires: '2099-01-01T00:00:00Z',
    signers: ['ec', 'ed'],
    constraints: { node: '>=20', platforms: [`${process.platform}-${process.arch}`], requires: { 'xps.core': '^1.0.0' } },
  });
  assert.match(packed.manifest.payload_hash, /^sha3-256:[0-9a-f]{64}$/);
  assert.deepEqual(packed.manifest.signers, ['ec', 'ed']);
  assert.equal(packed.manifest.constraints?.node, '>=20');

  await signPatch(repoDir, 'greet-2', keys.ec.privateKey, { keyid: 'ec' });
  const again = await signPatch(repoDir, 'greet-2', keys.ec.privateKey, { keyid: 'ec' });
  assert.equal(again.replaced, true);
  assert.deepEqual(again.signatures, ['ec']);
  // A key the manifest does not list: stored, but it does not count.
  const outsider = await signPatch(repoDir, 'greet-2', keys.pq.privateKey, { keyid: 'pq' });
  assert.equal(outsider.counts, false);
  await rejectsWith(verifyPatch(new FileSystemRepository(repoDir), verifier(2), 'greet-2'), 'THRESHOLD_NOT_MET');
  await signPatch(repoDir, 'greet-2', keys.ed.privateKey, { keyid: 'ed' });
  const verified = await verifyPatch(new FileSystemRepository(repoDir), verifier(2), 'greet-2');
  assert.deepEqual([...verified.signers].sort(), ['ec', 'ed']);
});

test('expires: null packs a manifest without expiry', async () => {
  const dir = join(root, 'no-expiry');
  const { manifest } = await packPatch(dir, { id: 'p', target: TARGET, version: '1.0.0', type: 'esm', payload: new Uint8Array([1]), expires: null });
  assert.equal(manifest.expires, undefined);
});

test('bad options are INVALID naming the option, and nothing is written — not even the repository directory', async () => {
  const dir = join(root, 'refused');
  const base = { id: 'p', target: TARGET, version: '1.0.0', type: 'esm' as const, payload: new Uint8Array([1]) };
  const e1 = await rejectsWith(packPatch(dir, { ...base, version: '1.2' }), 'INVALID', /version/);
  assert.equal(e1.detail?.option, 'manifest');
  const e2 = await rejectsWith(packPatch(dir, { ...base, hash: 'md5' as never }), 'INVALID', /hash must be one of/);
  assert.equal(e2.detail?.option, 'hash');
  const e3 = await rejectsWith(packPatch(dir, { ...base, payload: { fromFile: root } }), 'INVALID', /not a regular file/);
  assert.equal(e3.detail?.option, 'payload');
  await rejectsWith(packPatch(dir, { ...base, payload: { fromFile: join(root, 'missing.mjs') } }), 'NOT_FOUND');
  await rejectsWith(packPatch(dir, { ...base, expires: '2000-01-01T00:00:00Z', createdAt: '2001-01-01T00:00:00Z' }), 'INVALID', /expires/);
  await assert.rejects(readdir(dir), { code: 'ENOENT' });
});

test('an existing patch is replaced only with force, and its signatures are gone', async () => {
  const dir = join(root, 'force');
  const base = { id: 'p', target: TARGET, version: '1.0.0', type: 'esm' as const, payload: new TextEncoder().encode(SOURCE) };
  await packPatch(dir, base);
  await signPatch(dir, 'p', keys.ed.privateKey, { keyid: 'ed' });
  const before = await readFile(join(dir, 'p.json'), 'utf8');
  const e = await rejectsWith(packPatch(dir, { ...base, version: '1.0.1' }), 'INVALID', /already exists/);
  assert.equal(e.detail?.option, 'force');
  assert.equal(await readFile(join(dir, 'p.json'), 'utf8'), before);
  const replaced = await packPatch(dir, { ...base, version: '1.0.1', force: true });
  assert.equal(replaced.replaced, true);
  const envelope = decodeEnvelope(await readFile(join(dir, 'p.json')));
  assert.deepEqual(envelope.signatures, []);
});

test('signPatch refuses a payload that drifted from its manifest, and signs nothing', async () => {
  const dir = join(root, 'drift');
  await packPatch(dir, { id: 'p', target: TARGET, version: '1.0.0', type: 'esm', payload: new TextEncoder().encode(SOURCE) });
  await writeFile(join(dir, 'p.bin'), SOURCE.replace('hello', 'HELLO'));
  const before = await readFile(join(dir, 'p.json'), 'utf8');
  await rejectsWith(signPatch(dir, 'p', keys.ed.privateKey, { keyid: 'ed' }), 'HASH_MISMATCH');
  assert.equal(await readFile(join(dir, 'p.json'), 'utf8'), before);
});

test('signPatch checks its arguments before touching the repository', async () => {
  const dir = join(root, 'sign-args');
  await packPatch(dir, { id: 'p', target: TARGET, version: '1.0.0', type: 'esm', payload: new Uint8Array([1]) });
  await rejectsWith(signPatch(dir, '../p', keys.ed.privateKey, { keyid: 'ed' }), 'INVALID');
  await rejectsWith(signPatch(dir, 'p', keys.ed.privateKey, { keyid: '../ed' }), 'INVALID', /key id/);
  await rejectsWith(signPatch(dir, 'p', keys.ed.publicKey as unknown as PrivateKey, { keyid: 'ed' }), 'INVALID', /PrivateKey/);
  await rejectsWith(signPatch(dir, 'absent', keys.ed.privateKey, { keyid: 'ed' }), 'NOT_FOUND');
});

import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { hotpatch } from './run-cli.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hotpatch-cli-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('hotpatch --help lists every command and each command has its own --help', () => {
  const top = hotpatch(['--help']);
  assert.equal(top.status, 0);
  for (const name of ['keygen', 'pack', 'sign', 'verify', 'demo']) {
    assert.match(top.stdout, new RegExp(`\\b${name}\\b`));
    const own = hotpatch([name, '--help']);
    assert.equal(own.status, 0, name);
    assert.match(own.stdout, new RegExp(`hotpatch ${name}`));
  }
});

test('no command, an unknown command or an unknown flag is a usage error (exit 2) with a JSON last line', () => {
  assert.equal(hotpatch([]).status, 2);
  const unknown = hotpatch(['frobnicate', '--json']);
  assert.equal(unknown.status, 2);
  assert.equal(unknown.json?.ok, false);
  assert.equal(unknown.json?.code, 'INVALID');
  assert.equal(hotpatch(['verify', '--bogus']).status, 2);
});

test('keygen writes a 0600 PKCS#8 private key and an SPKI public key, and never prints the private key', async () => {
  const r = hotpatch(['keygen', '--alg', 'ecdsa-p256-sha256', '--out', join(dir, 'keys'), '--name', 'ops-1', '--json']);
  assert.equal(r.status, 0, r.stderr);
  const key = join(dir, 'keys', 'ops-1.key');
  assert.equal((await stat(key)).mode & 0o777, 0o600);
  const pem = await readFile(key, 'utf8');
  assert.match(pem, /^-----BEGIN PRIVATE KEY-----/);
  assert.match(await readFile(join(dir, 'keys', 'ops-1.pub'), 'utf8'), /^-----BEGIN PUBLIC KEY-----/);
  const body = pem.split('\n')[1]!;
  assert.equal(r.stdout.includes(body), false);
  assert.equal(r.json?.ok, true);
});

test('keygen refuses to overwrite an existing key', () => {
  hotpatch(['keygen', '--alg', 'ed25519', '--out', join(dir, 'keys2'), '--name', 'k']);
  const again = hotpatch(['keygen', '--alg', 'ed25519', '--out', join(dir, 'keys2'), '--name', 'k', '--json']);
  assert.equal(again.status, 2);
  assert.equal(again.json?.code, 'INVALID');
});

test('keygen, pack, sign and verify work end to end for every algorithm, with a JSON last line', async () => {
  const keys = join(dir, 'e2e-keys');
  const repo = join(dir, 'e2e-repo');
  const payload = join(dir, 'payload.mjs');
  await writeFile(payload, 'export const api = { f: () => 42 };\n');
  const algs = ['ed25519', 'ecdsa-p256-sha256', 'rsa-pss-sha256', 'ml-dsa-65'];
  const trust: Record<string, unknown> = {};
  for (const alg of algs) {
    assert.equal(hotpatch(['keygen', '--alg', alg, '--out', keys, '--name', alg]).status, 0);
    trust[alg] = { alg, public_key: await readFile(join(keys, `${alg}.pub`), 'utf8') };
  }
  await writeFile(join(dir, 'trust.json'), JSON.stringify({ keys: trust, threshold: 4 }));
  const packed = hotpatch([
    'pack',
    '--repo',
    repo,
    '--id',
    'p1',
    '--target',
    'xps.demo.f',
    '--version',
    '2.0.0',
    '--type',
    'esm',
    '--payload',
    payload,
    '--meta',
    'ticket=SEC-1',
    '--json',
  ]);
  assert.equal(packed.status, 0, packed.stderr);
  for (const alg of algs) assert.equal(hotpatch(['sign', '--repo', repo, '--id', 'p1', '--key', join(keys, `${alg}.key`)]).status, 0, alg);
  const v = hotpatch(['verify', '--repo', repo, '--id', 'p1', '--trust', join(dir, 'trust.json'), '--json']);
  assert.equal(v.status, 0, v.stderr);
  assert.equal(v.json?.ok, true);
  assert.deepEqual(v.json?.signers, algs);
  assert.deepEqual((await readdir(repo)).sort(), ['p1.bin', 'p1.json']);
});

test('a rejected patch exits 1, a missing repository exits 3', async () => {
  const keys = join(dir, 'r-keys');
  const repo = join(dir, 'r-repo');
  const payload = join(dir, 'r.mjs');
  await writeFile(payload, 'export const api = {};\n');
  hotpatch(['keygen', '--alg', 'ed25519', '--out', keys, '--name', 'a']);
  hotpatch(['keygen', '--alg', 'ed25519', '--out', keys, '--name', 'b']);
  const trust = {
    keys: {
      a: { alg: 'ed25519', public_key: await readFile(join(keys, 'a.pub'), 'utf8') },
      b: { alg: 'ed25519', public_key: await readFile(join(keys, 'b.pub'), 'utf8') },
    },
    threshold: 2,
  };
  await writeFile(join(dir, 'r-trust.json'), JSON.stringify(trust));
  hotpatch(['pack', '--repo', repo, '--id', 'p', '--target', 't.x', '--version', '1.0.0', '--type', 'esm', '--payload', payload]);
  hotpatch(['sign', '--repo', repo, '--id', 'p', '--key', join(keys, 'a.key')]);
  const rejected = hotpatch(['verify', '--repo', repo, '--id', 'p', '--trust', join(dir, 'r-trust.json'), '--json']);
  assert.equal(rejected.status, 1);
  assert.equal(rejected.json?.code, 'THRESHOLD_NOT_MET');
  assert.match(String(rejected.json?.message), /signed by 1 of 2 required keys/);
  const missing = hotpatch(['verify', '--repo', join(dir, 'nowhere'), '--id', 'p', '--trust', join(dir, 'r-trust.json'), '--json']);
  assert.equal(missing.status, 3);
  assert.equal(missing.json?.code, 'NOT_FOUND');
});

test('the demo patches a live service under load with zero failed requests and exits 0', () => {
  const r = hotpatch(['demo', '--json']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.json?.ok, true);
  assert.equal(r.json?.failed, 0);
  assert.ok(Number(r.json?.served) > 0);
  assert.equal(r.json?.activeVersion, '1.0.1');
  assert.equal((r.json?.audit as { ok: boolean }).ok, true);
});

/*
 * Interoperability with OpenSSL, both ways: patches signed by `openssl` over the DSSE PAE
 * verify with `hotpatch verify`, and signatures made by `hotpatch sign` verify with
 * `openssl`. The project promises exactly this (docs/ARCHITECTURE.md "Security model": a patch
 * signed by any standard tool over the DSSE PAE verifies here), so a missing openssl is a
 * failure, never a skip.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { accessSync, constants as fsConstants } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { after, test } from 'node:test';
import { decodeEnvelope, encodeEnvelope, pae, type Envelope } from '../../src/core/index.js';
import { PAYLOAD, TARGET, assertCliOutcome, makeTempRoot, runHotpatch } from './fixtures/helpers.js';

function findOpenssl(): string | undefined {
  const candidates = ['/usr/bin/openssl', ...(process.env.PATH ?? '').split(delimiter).map((d) => join(d, 'openssl'))];
  for (const candidate of candidates) {
    try {
      accessSync(candidate, fsConstants.X_OK);
      return candidate;
    } catch {
      // not this one; try the next
    }
  }
  return undefined;
}

const OPENSSL = findOpenssl();

function requireOpenssl(): string {
  if (OPENSSL === undefined) {
    assert.fail('openssl was not found at /usr/bin/openssl or on PATH: install it with `apt-get install -y openssl`');
  }
  return OPENSSL;
}

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function openssl(args: string[]): Run {
  const result = spawnSync(requireOpenssl(), args, { encoding: 'utf8', timeout: 60_000 });
  if (result.error !== undefined) throw result.error;
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** openssl that must succeed. */
function ok(args: string[]): Run {
  const r = openssl(args);
  assert.equal(r.status, 0, `openssl ${args.join(' ')} failed (${String(r.status)}):\n${r.stdout}${r.stderr}`);
  return r;
}

const { root, cleanup } = await makeTempRoot('xps-openssl-');
after(cleanup);

interface Workspace {
  dir: string;
  repo: string;
  payloadFile: string;
}

async function workspace(name: string): Promise<Workspace> {
  const dir = join(root, name);
  const repo = join(dir, 'repo');
  await mkdir(repo, { recursive: true });
  const payloadFile = join(dir, 'payload.mjs');
  await writeFile(payloadFile, PAYLOAD);
  return { dir, repo, payloadFile };
}

/** `hotpatch pack` an unsigned patch and return its decoded envelope. */
async function pack(ws: Workspace, id: string): Promise<Envelope> {
  const args = ['pack', '--json', '--repo', ws.repo, '--id', id, '--target', TARGET, '--version', '1.0.0', '--type', 'esm', '--payload', ws.payloadFile];
  assertCliOutcome(await runHotpatch(args), 0, 'OK', `hotpatch ${args.join(' ')}`);
  return decodeEnvelope(await readFile(join(ws.repo, `${id}.json`)));
}

/** Writes the PAE of the envelope to a file, for openssl. */
async function writePae(ws: Workspace, envelope: Envelope, name = 'pae.bin'): Promise<string> {
  const path = join(ws.dir, name);
  await writeFile(path, pae(envelope.payloadType, envelope.payload));
  return path;
}

async function addSignature(ws: Workspace, id: string, envelope: Envelope, keyid: string, sigFile: string): Promise<void> {
  const sig = new Uint8Array(await readFile(sigFile));
  await writeFile(join(ws.repo, `${id}.json`), encodeEnvelope({ ...envelope, signatures: [...envelope.signatures, { keyid, sig }] }));
}

async function trustStore(ws: Workspace, keys: Record<string, { alg: string; pubFile: string }>, threshold = 1): Promise<string> {
  const doc: Record<string, { alg: string; public_key: string }> = {};
  for (const [keyid, { alg, pubFile }] of Object.entries(keys)) doc[keyid] = { alg, public_key: await readFile(pubFile, 'utf8') };
  const path = join(ws.dir, 'trust.json');
  await writeFile(path, JSON.stringify({ keys: doc, threshold }, null, 2));
  return path;
}

function verifyArgs(ws: Workspace, id: string, trustPath: string): string[] {
  return ['verify', '--json', '--repo', ws.repo, '--id', id, '--trust', trustPath];
}

/** An openssl key pair: private PEM (PKCS#8) and the SPKI public PEM. */
function opensslKey(ws: Workspace, name: string, genpkeyArgs: string[]): { key: string; pub: string } {
  const key = join(ws.dir, `${name}.key`);
  const pub = join(ws.dir, `${name}.pub`);
  ok(['genpkey', ...genpkeyArgs, '-out', key]);
  ok(['pkey', '-in', key, '-pubout', '-out', pub]);
  return { key, pub };
}

test('openssl is installed (apt-get install -y openssl otherwise)', () => {
  const r = ok(['version']);
  assert.match(r.stdout, /OpenSSL/);
});

test('an Ed25519 signature made by openssl pkeyutl -rawin over the PAE verifies with hotpatch verify', async () => {
  const ws = await workspace('ed25519-openssl-signs');
  const { key, pub } = opensslKey(ws, 'ossl-ed', ['-algorithm', 'ed25519']);
  const envelope = await pack(ws, 'ed-patch');
  const paeFile = await writePae(ws, envelope);
  const sigFile = join(ws.dir, 'sig.bin');
  ok(['pkeyutl', '-sign', '-inkey', key, '-rawin', '-in', paeFile, '-out', sigFile]);
  assert.equal((await readFile(sigFile)).length, 64);
  await addSignature(ws, 'ed-patch', envelope, 'ossl-ed', sigFile);
  const trustPath = await trustStore(ws, { 'ossl-ed': { alg: 'ed25519', pubFile: pub } });

  const cli = await runHotpatch(verifyArgs(ws, 'ed-patch', trustPath));
  assertCliOutcome(cli, 0, 'OK', 'hotpatch verify');
  assert.deepEqual(cli.last?.signers, ['ossl-ed']);
});

test('an openssl Ed25519 signature over the manifest bytes instead of the PAE is refused with BAD_SIGNATURE', async () => {
  const ws = await workspace('ed25519-openssl-no-pae');
  const { key, pub } = opensslKey(ws, 'ossl-ed', ['-algorithm', 'ed25519']);
  const envelope = await pack(ws, 'ed-patch');
  const bodyFile = join(ws.dir, 'manifest.json');
  await writeFile(bodyFile, envelope.payload);
  const sigFile = join(ws.dir, 'sig.bin');
  ok(['pkeyutl', '-sign', '-inkey', key, '-rawin', '-in', bodyFile, '-out', sigFile]);
  await addSignature(ws, 'ed-patch', envelope, 'ossl-ed', sigFile);
  const trustPath = await trustStore(ws, { 'ossl-ed': { alg: 'ed25519', pubFile: pub } });
  assertCliOutcome(await runHotpatch(verifyArgs(ws, 'ed-patch', trustPath)), 1, 'BAD_SIGNATURE', 'hotpatch verify');
});

test('an ECDSA P-256 signature made by openssl dgst -sha256 -sign over the PAE verifies with hotpatch verify', async () => {
  const ws = await workspace('ecdsa-openssl-signs');
  const { key, pub } = opensslKey(ws, 'ossl-ec', ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256']);
  const envelope = await pack(ws, 'ec-patch');
  const paeFile = await writePae(ws, envelope);
  const sigFile = join(ws.dir, 'sig.bin');
  ok(['dgst', '-sha256', '-sign', key, '-out', sigFile, paeFile]);
  assert.equal((await readFile(sigFile))[0], 0x30, 'openssl writes a DER SEQUENCE');
  await addSignature(ws, 'ec-patch', envelope, 'ossl-ec', sigFile);
  const trustPath = await trustStore(ws, { 'ossl-ec': { alg: 'ecdsa-p256-sha256', pubFile: pub } });

  const cli = await runHotpatch(verifyArgs(ws, 'ec-patch', trustPath));
  assertCliOutcome(cli, 0, 'OK', 'hotpatch verify');
  assert.deepEqual(cli.last?.signers, ['ossl-ec']);
});

test('signatures made by hotpatch keygen + hotpatch sign (Ed25519 and ECDSA P-256) verify with openssl', async () => {
  const ws = await workspace('hotpatch-signs');
  const keys = join(ws.dir, 'keys');
  const trust: Record<string, unknown> = {};
  for (const [name, alg] of [
    ['hp-ed', 'ed25519'],
    ['hp-ec', 'ecdsa-p256-sha256'],
  ] as const) {
    const cli = await runHotpatch(['keygen', '--json', '--alg', alg, '--out', keys, '--name', name]);
    assertCliOutcome(cli, 0, 'OK', `hotpatch keygen ${alg}`);
    Object.assign(trust, cli.last?.trust_entry);
  }
  await pack(ws, 'hp-patch');
  for (const name of ['hp-ed', 'hp-ec']) {
    const args = ['sign', '--json', '--repo', ws.repo, '--id', 'hp-patch', '--key', join(keys, `${name}.key`)];
    assertCliOutcome(await runHotpatch(args), 0, 'OK', `hotpatch ${args.join(' ')}`);
  }

  const envelope = decodeEnvelope(await readFile(join(ws.repo, 'hp-patch.json')));
  assert.deepEqual(
    envelope.signatures.map((s) => s.keyid),
    ['hp-ed', 'hp-ec'],
  );
  const paeFile = await writePae(ws, envelope);
  const sigFiles: Record<string, string> = {};
  for (const s of envelope.signatures) {
    sigFiles[s.keyid] = join(ws.dir, `${s.keyid}.sig`);
    await writeFile(sigFiles[s.keyid]!, s.sig);
  }

  const ed = ok(['pkeyutl', '-verify', '-pubin', '-inkey', join(keys, 'hp-ed.pub'), '-rawin', '-in', paeFile, '-sigfile', sigFiles['hp-ed']!]);
  assert.match(ed.stdout, /Signature Verified Successfully/);
  const ec = ok(['dgst', '-sha256', '-verify', join(keys, 'hp-ec.pub'), '-signature', sigFiles['hp-ec']!, paeFile]);
  assert.match(ec.stdout, /Verified OK/);

  // The same signatures over one altered PAE byte: openssl must say no (it really checks).
  const altered = new Uint8Array(await readFile(paeFile));
  altered[altered.length - 2] = altered[altered.length - 2]! ^ 0x01;
  const alteredFile = join(ws.dir, 'pae-altered.bin');
  await writeFile(alteredFile, altered);
  const edBad = openssl(['pkeyutl', '-verify', '-pubin', '-inkey', join(keys, 'hp-ed.pub'), '-rawin', '-in', alteredFile, '-sigfile', sigFiles['hp-ed']!]);
  assert.notEqual(edBad.status, 0, `openssl accepted an Ed25519 signature over altered bytes: ${edBad.stdout}`);
  const ecBad = openssl(['dgst', '-sha256', '-verify', join(keys, 'hp-ec.pub'), '-signature', sigFiles['hp-ec']!, alteredFile]);
  assert.notEqual(ecBad.status, 0, `openssl accepted an ECDSA signature over altered bytes: ${ecBad.stdout}`);

  // And hotpatch agrees with openssl on the 2-of-2 patch.
  const trustPath = join(ws.dir, 'trust.json');
  await writeFile(trustPath, JSON.stringify({ keys: trust, threshold: 2 }));
  assertCliOutcome(await runHotpatch(verifyArgs(ws, 'hp-patch', trustPath)), 0, 'OK', 'hotpatch verify');
});

test('an RSA-PSS 3072 signature made by openssl dgst (PSS, salt 32) verifies with hotpatch verify; another salt length does not', async () => {
  const ws = await workspace('rsa-pss-openssl-signs');
  const { key, pub } = opensslKey(ws, 'ossl-rsa', ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:3072']);
  const envelope = await pack(ws, 'rsa-patch');
  const paeFile = await writePae(ws, envelope);
  const trustPath = await trustStore(ws, { 'ossl-rsa': { alg: 'rsa-pss-sha256', pubFile: pub } });

  const sigFile = join(ws.dir, 'sig.bin');
  ok(['dgst', '-sha256', '-sigopt', 'rsa_padding_mode:pss', '-sigopt', 'rsa_pss_saltlen:32', '-sign', key, '-out', sigFile, paeFile]);
  assert.equal((await readFile(sigFile)).length, 384);
  await addSignature(ws, 'rsa-patch', envelope, 'ossl-rsa', sigFile);
  const cli = await runHotpatch(verifyArgs(ws, 'rsa-patch', trustPath));
  assertCliOutcome(cli, 0, 'OK', 'hotpatch verify');
  assert.deepEqual(cli.last?.signers, ['ossl-rsa']);

  // The verifier fixes the salt length: a maximum-salt PSS signature by the same key is refused.
  const maxSaltFile = join(ws.dir, 'sig-maxsalt.bin');
  ok(['dgst', '-sha256', '-sigopt', 'rsa_padding_mode:pss', '-sigopt', 'rsa_pss_saltlen:max', '-sign', key, '-out', maxSaltFile, paeFile]);
  await addSignature(ws, 'rsa-patch', { ...envelope, signatures: [] }, 'ossl-rsa', maxSaltFile);
  assertCliOutcome(await runHotpatch(verifyArgs(ws, 'rsa-patch', trustPath)), 1, 'BAD_SIGNATURE', 'hotpatch verify');
});

test('an openssl Ed25519 key declared as ecdsa-p256-sha256 in the trust store is refused (exit 2, INVALID)', async () => {
  const ws = await workspace('ed25519-declared-ecdsa');
  const { key, pub } = opensslKey(ws, 'ossl-ed', ['-algorithm', 'ed25519']);
  const envelope = await pack(ws, 'ed-patch');
  const paeFile = await writePae(ws, envelope);
  const sigFile = join(ws.dir, 'sig.bin');
  ok(['pkeyutl', '-sign', '-inkey', key, '-rawin', '-in', paeFile, '-out', sigFile]);
  await addSignature(ws, 'ed-patch', envelope, 'ossl-ed', sigFile);

  // Control: the truthful declaration verifies, so only the lie causes the refusal.
  const honest = await trustStore(ws, { 'ossl-ed': { alg: 'ed25519', pubFile: pub } });
  assertCliOutcome(await runHotpatch(verifyArgs(ws, 'ed-patch', honest)), 0, 'OK', 'hotpatch verify (honest store)');

  const lying = await trustStore(ws, { 'ossl-ed': { alg: 'ecdsa-p256-sha256', pubFile: pub } });
  const cli = await runHotpatch(verifyArgs(ws, 'ed-patch', lying));
  assertCliOutcome(cli, 2, 'INVALID', 'hotpatch verify (lying store)');
  assert.match(String(cli.last?.message), /ed25519 key but was declared as ecdsa-p256-sha256/);
});

/*
 * Signing keys on a PKCS#11 token (SoftHSM2 from Debian, a token initialised by the test):
 * keys made on the token (ECDSA P-256, RSA-PSS, Ed25519) sign there — the private key is
 * sensitive and never extractable — and what they sign verifies with this project's verifier
 * and with openssl over the exported public key; a patch signed on the token passes
 * `hotpatch verify`. A wrong PIN, an unknown token or key, a label taken twice: clear errors.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { verifySignature, type SignatureAlgorithm } from '../../src/crypto-agile/index.js';
import { Pkcs11KeyProvider } from '../../src/keys/index.js';
import { openModule, pkcs11Api, releaseModule } from '../../src/keys/pkcs11-module.js';
import { signPatch } from '../../src/verification/index.js';
import { isCode } from '../support/assertions.js';
import { publishPatch } from '../support/patches.js';
import { softHsmToken, type SoftHsmToken } from '../support/softhsm.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { hotpatch } from '../cli/run-cli.js';

const run = promisify(execFile);
let dir: string;
let hsm: SoftHsmToken;
const providers: Pkcs11KeyProvider[] = [];

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hotpatch-pkcs11-'));
  hsm = await softHsmToken(dir);
});

after(async () => {
  for (const p of providers) p.close();
  await rm(dir, { recursive: true, force: true });
});

const keyOn = (keyLabel: string) => ({ module: hsm.module, token: hsm.token, pin: hsm.pin, keyLabel });

const opensslVerify: Record<SignatureAlgorithm, (pub: string, sig: string, msg: string) => string[]> = {
  'ecdsa-p256-sha256': (pub, sig, msg) => ['dgst', '-sha256', '-verify', pub, '-signature', sig, msg],
  'rsa-pss-sha256': (pub, sig, msg) => [
    'dgst',
    '-sha256',
    '-sigopt',
    'rsa_padding_mode:pss',
    '-sigopt',
    'rsa_pss_saltlen:32',
    '-verify',
    pub,
    '-signature',
    sig,
    msg,
  ],
  ed25519: (pub, sig, msg) => ['pkeyutl', '-verify', '-pubin', '-inkey', pub, '-rawin', '-in', msg, '-sigfile', sig],
  'ml-dsa-65': () => [],
};

for (const alg of ['ecdsa-p256-sha256', 'rsa-pss-sha256', 'ed25519'] as const) {
  test(`${alg}: a key made on the token signs there; the signature verifies here and with openssl over the exported public key`, async () => {
    const provider = Pkcs11KeyProvider.generate(keyOn(`release-${alg}`), alg);
    providers.push(provider);
    assert.equal(provider.publicKey.alg, alg);
    const message = Buffer.from(`DSSEv1 a message signed on the token by ${alg}`);
    const sig = await provider.sign(message);
    assert.ok(verifySignature(provider.publicKey, message, sig));
    assert.ok(!verifySignature(provider.publicKey, Buffer.from('another message'), sig));
    const sub = join(dir, alg);
    await mkdir(sub);
    await writeFile(join(sub, 'pub.pem'), provider.publicKey.toPem());
    await writeFile(join(sub, 'sig.bin'), sig);
    await writeFile(join(sub, 'msg.bin'), message);
    const { stdout } = await run('openssl', opensslVerify[alg]('pub.pem', 'sig.bin', 'msg.bin'), { cwd: sub });
    assert.match(stdout, /Verified OK|Signature Verified Successfully/);
    // Reopened by label (a new session): the same key.
    const again = Pkcs11KeyProvider.open(keyOn(`release-${alg}`));
    providers.push(again);
    assert.equal(again.publicKey.fingerprint, provider.publicKey.fingerprint);
  });
}

test('a patch signed on the token passes hotpatch verify with the token key in the trust store', async () => {
  const provider = Pkcs11KeyProvider.open(keyOn('release-ecdsa-p256-sha256'));
  providers.push(provider);
  const repo = join(dir, 'repo');
  await mkdir(repo);
  await publishPatch(repo, 'hsm-1', 'xps.demo.f', '1.0.1', 'export const api = { f: () => 1 };', { manifest: { signers: ['hsm-release'] }, signers: [] });
  const signed = await signPatch(repo, 'hsm-1', provider, { keyid: 'hsm-release' });
  assert.deepEqual(signed.signatures, ['hsm-release']);
  await writeFile(
    join(dir, 'trust.json'),
    JSON.stringify({ keys: { 'hsm-release': { alg: provider.publicKey.alg, public_key: provider.publicKey.toPem() } }, threshold: 1 }),
  );
  const r = hotpatch(['verify', '--repo', repo, '--id', 'hsm-1', '--trust', join(dir, 'trust.json'), '--json']);
  assert.equal(r.status, 0, r.stdout);
});

test('closing one provider leaves another on the same token signing; a key that could leave the token is refused', async () => {
  const a = Pkcs11KeyProvider.open(keyOn('release-ed25519'));
  const b = Pkcs11KeyProvider.open(keyOn('release-ed25519'));
  providers.push(b);
  a.close();
  assert.ok(verifySignature(b.publicKey, Buffer.from('after a closed sibling'), await b.sign(Buffer.from('after a closed sibling'))));
  // A key pair made extractable and not sensitive (by another tool): never used to sign.
  const p11 = pkcs11Api();
  const m = openModule(hsm.module); // the process's one initialised library, as the providers use it
  try {
    const slot = m.C_GetSlotList(true).find((s) => m.C_GetTokenInfo(s).label.trim() === hsm.token)!;
    const session = m.C_OpenSession(slot, p11.CKF_SERIAL_SESSION | p11.CKF_RW_SESSION);
    const label = Buffer.from('loose');
    m.C_GenerateKeyPair(
      session,
      { mechanism: p11.CKM_EC_KEY_PAIR_GEN },
      [
        { type: p11.CKA_TOKEN, value: true },
        { type: p11.CKA_LABEL, value: label },
        { type: p11.CKA_EC_PARAMS, value: Buffer.from('06082a8648ce3d030107', 'hex') },
      ],
      [
        { type: p11.CKA_TOKEN, value: true },
        { type: p11.CKA_LABEL, value: label },
        { type: p11.CKA_SIGN, value: true },
        { type: p11.CKA_SENSITIVE, value: false },
        { type: p11.CKA_EXTRACTABLE, value: true },
      ],
    );
    m.C_CloseSession(session);
  } finally {
    releaseModule(hsm.module);
  }
  assert.throws(() => Pkcs11KeyProvider.open(keyOn('loose')), isCode('INVALID', /can leave the token/));
});

test('a wrong PIN is UNAUTHENTICATED (the PIN never in the message); an unknown token or key NOT_FOUND; a taken label INVALID', () => {
  assert.throws(
    () => Pkcs11KeyProvider.open({ ...keyOn('release-ed25519'), pin: 'wrong-pin-9' }),
    (error: unknown) => {
      assert.ok(isCode('UNAUTHENTICATED', /refused the PIN/)(error));
      assert.doesNotMatch((error as Error).message, /wrong-pin-9/);
      return true;
    },
  );
  assert.throws(
    () => Pkcs11KeyProvider.open({ ...keyOn('release-ed25519'), token: 'no-such-token' }),
    isCode('NOT_FOUND', /no PKCS#11 token labelled no-such-token/),
  );
  assert.throws(() => Pkcs11KeyProvider.open(keyOn('nobody')), isCode('NOT_FOUND', /has no key pair labelled nobody/));
  assert.throws(() => Pkcs11KeyProvider.generate(keyOn('release-ed25519'), 'ed25519'), isCode('INVALID', /already has a key labelled/));
  assert.throws(() => Pkcs11KeyProvider.generate(keyOn('pq'), 'ml-dsa-65'), isCode('ALGORITHM_DISALLOWED'));
});

test('hotpatch keygen --pkcs11-… makes the key on the token and prints its trust entry; hotpatch sign --pkcs11-… signs a patch that verifies', async () => {
  const pinFile = join(dir, 'pin');
  await writeFile(pinFile, `${hsm.pin}\n`, { mode: 0o600 });
  const env = { ...process.env, SOFTHSM2_CONF: hsm.conf };
  const flags = ['--pkcs11-module', hsm.module, '--token', hsm.token, '--key-label', 'cli-release', '--pin-file', pinFile];
  const made = hotpatch(['keygen', '--alg', 'ed25519', ...flags, '--name', 'cli-release', '--json'], { env });
  assert.equal(made.status, 0, made.stdout + made.stderr);
  const entry = made.json?.trust_entry as Record<string, unknown>;
  await writeFile(join(dir, 'cli-trust.json'), JSON.stringify({ keys: entry, threshold: 1 }));
  const repo = join(dir, 'cli-repo');
  await mkdir(repo);
  await publishPatch(repo, 'hsm-cli-1', 'xps.demo.f', '1.0.1', 'export const api = { f: () => 2 };', { manifest: { signers: [] }, signers: [] });
  const signed = hotpatch(['sign', '--repo', repo, '--id', 'hsm-cli-1', ...flags, '--keyid', 'cli-release', '--json'], { env });
  assert.equal(signed.status, 0, signed.stdout + signed.stderr);
  assert.equal(signed.json?.alg, 'ed25519');
  const verified = hotpatch(['verify', '--repo', repo, '--id', 'hsm-cli-1', '--trust', join(dir, 'cli-trust.json'), '--json']);
  assert.equal(verified.status, 0, verified.stdout);
  // The repository index signed on the token too (the trust store's index role names that key).
  const indexFlags = [...flags.slice(0, 4), '--key-label', 'cli-index', '--pin-file', pinFile];
  const indexKey = hotpatch(['keygen', '--alg', 'ecdsa-p256-sha256', ...indexFlags, '--json'], { env });
  assert.equal(indexKey.status, 0, indexKey.stdout + indexKey.stderr);
  const withIndex = {
    keys: { ...entry, ...(indexKey.json?.trust_entry as Record<string, unknown>) },
    threshold: 1,
    index: { keys: ['cli-index'], threshold: 1 },
  };
  await writeFile(join(dir, 'cli-trust-index.json'), JSON.stringify(withIndex));
  const indexed = hotpatch(['index', '--repo', repo, ...indexFlags, '--keyid', 'cli-index', '--json'], { env });
  assert.equal(indexed.status, 0, indexed.stdout + indexed.stderr);
  const throughIndex = hotpatch(['verify', '--repo', repo, '--id', 'hsm-cli-1', '--trust', join(dir, 'cli-trust-index.json'), '--json']);
  assert.equal(throughIndex.status, 0, throughIndex.stdout);
  assert.deepEqual((throughIndex.json?.index as { signers: string[] }).signers, ['cli-index']);
  await writeFile(join(dir, 'loose-pin'), hsm.pin, { mode: 0o644 });
  const loose = hotpatch(
    ['sign', '--repo', repo, '--id', 'hsm-cli-1', ...flags.slice(0, 6), '--pin-file', join(dir, 'loose-pin'), '--keyid', 'cli-release', '--json'],
    { env },
  );
  assert.equal(loose.status, 2);
  assert.match(String(loose.json?.message), /readable by group or others/);
});

test('a trust store rotation and an approval vote are signed on the token too: trust rotate accepts the one, an approvers list counts the other', async () => {
  const pinFile = join(dir, 'pin-root');
  await writeFile(pinFile, hsm.pin, { mode: 0o600 });
  const env = { ...process.env, SOFTHSM2_CONF: hsm.conf };
  const flags = (label: string) => ['--pkcs11-module', hsm.module, '--token', hsm.token, '--key-label', label, '--pin-file', pinFile];
  const made = hotpatch(['keygen', '--alg', 'ecdsa-p256-sha256', ...flags('root-hsm'), '--json'], { env });
  assert.equal(made.status, 0, made.stdout + made.stderr);
  const entry = made.json?.trust_entry as Record<string, unknown>;
  const current = join(dir, 'rotation-current.json');
  const next = join(dir, 'rotation-next.json');
  await writeFile(current, JSON.stringify({ version: 1, keys: entry, threshold: 1, root: { keys: ['root-hsm'], threshold: 1 } }));
  await writeFile(next, JSON.stringify({ version: 2, keys: entry, threshold: 1, root: { keys: ['root-hsm'], threshold: 1 } }));
  const envelope = join(dir, 'rotation.dsse');
  const signed = hotpatch(['trust', 'sign', '--trust', next, ...flags('root-hsm'), '--keyid', 'root-hsm', '--envelope', envelope, '--json'], { env });
  assert.equal(signed.status, 0, signed.stdout + signed.stderr);
  assert.equal(signed.json?.alg, 'ecdsa-p256-sha256');
  const rotated = hotpatch(['trust', 'rotate', '--trust', current, '--envelope', envelope, '--json']);
  assert.equal(rotated.status, 0, rotated.stdout + rotated.stderr);
  assert.deepEqual([rotated.json?.from, rotated.json?.to], [1, 2]);
  // The token's key under another key id's name is refused before anything is signed.
  const wrongId = hotpatch(
    ['trust', 'sign', '--trust', next, ...flags('cli-release'), '--keyid', 'root-hsm', '--envelope', join(dir, 'other.dsse'), '--json'],
    {
      env,
    },
  );
  assert.equal(wrongId.status, 2);
  assert.match(String(wrongId.json?.message), /fingerprints differ/);

  // An approval vote signed on the token counts against an approvers list that names the key.
  const spec = `file:${join(dir, 'approval-store')}`;
  const proposed = hotpatch([
    'propose',
    '--store',
    spec,
    '--patch',
    'fix-hsm',
    '--target',
    'xps.demo.f',
    '--version',
    '1.0.1',
    '--payload-hash',
    `sha256:${'ab'.repeat(32)}`,
    '--json',
  ]);
  assert.equal(proposed.status, 0, proposed.stdout + proposed.stderr);
  const voted = hotpatch(['approve', '--store', spec, '--proposal', String(proposed.json?.id), ...flags('root-hsm'), '--keyid', 'root-hsm', '--json'], { env });
  assert.equal(voted.status, 0, voted.stdout + voted.stderr);
  assert.deepEqual([voted.json?.alg, voted.json?.outcome], ['ecdsa-p256-sha256', 'cast']);
  const approvers = join(dir, 'approvers.json');
  await writeFile(approvers, JSON.stringify({ keys: entry, quorum: { threshold: 1 } }));
  const listed = hotpatch(['proposals', '--store', spec, '--approvers', approvers, '--json']);
  const row = (listed.json?.proposals as Record<string, unknown>[]).find((p) => p.id === proposed.json?.id)!;
  assert.deepEqual([row.counted, row.approved], [['root-hsm'], true]);
});

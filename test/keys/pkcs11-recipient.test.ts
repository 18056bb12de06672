/*
 * Payload recipient keys on a PKCS#11 token (SoftHSM2 from Debian, a token initialised by the
 * test): `hotpatch keygen --alg rsa-oaep-sha256 --pkcs11-…` makes an RSA key on the token for
 * decryption only (sensitive, never extractable); it unwraps what openssl encrypted to its
 * public key with RSA-OAEP-SHA256 (SoftHSM's OAEP is SHA-1 only: the token decrypts raw and
 * the padding is removed in the process, the key staying on the token). An agent holding the
 * token key applies a patch encrypted to it end to end; a key is used only for what it was
 * made for; a loose PIN file or a missing key stops the agent's start and leaves nothing open.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, createPublicKey, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { startAgent } from '../../src/agent/index.js';
import { generateRecipientKey, importRecipientPublicKey } from '../../src/crypto-agile/index.js';
import { Pkcs11KeyProvider, Pkcs11RecipientKey } from '../../src/keys/index.js';
import { packPatch } from '../../src/repo/index.js';
import { signPatch } from '../../src/verification/index.js';
import { T, declareBuiltin, goodSource, makeFixture, runPlanUnderTraffic } from '../agent/helpers.js';
import { hotpatch } from '../cli/run-cli.js';
import { isCode } from '../support/assertions.js';
import { ciKey } from '../support/patches.js';
import { softHsmToken, type SoftHsmToken } from '../support/softhsm.js';

const run = promisify(execFile);
let dir: string;
let hsm: SoftHsmToken;
let pinFile: string;
let recipientPem: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hotpatch-pkcs11-recipient-'));
  hsm = await softHsmToken(dir, 'hotpatch-recipients');
  pinFile = join(dir, 'pin');
  await writeFile(pinFile, `${hsm.pin}\n`, { mode: 0o600 });
  const env = { ...process.env, SOFTHSM2_CONF: hsm.conf };
  const made = hotpatch(['keygen', '--alg', 'rsa-oaep-sha256', ...tokenFlags('agent-rsa'), '--out', join(dir, 'pub'), '--name', 'edge', '--json'], { env });
  assert.equal(made.status, 0, made.stdout + made.stderr);
  assert.equal(made.json?.alg, 'rsa-oaep-sha256');
  assert.equal(made.json?.trust_entry, undefined, 'a recipient key is no signer: no trust-store entry');
  recipientPem = String(made.json?.public_key);
  // --out writes the public half for pack --encrypt-to; a second key of that name is refused (exit 2).
  assert.equal(await readFile(join(dir, 'pub', 'edge.pub'), 'utf8'), recipientPem);
  const again = hotpatch(['keygen', '--alg', 'rsa-oaep-sha256', ...tokenFlags('agent-rsa'), '--json'], { env });
  assert.equal(again.status, 2, again.stdout);
  assert.match(String(again.json?.message), /already has a key labelled agent-rsa/);
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const keyOn = (keyLabel: string) => ({ module: hsm.module, token: hsm.token, pin: hsm.pin, keyLabel });
const tokenFlags = (keyLabel: string) => ['--pkcs11-module', hsm.module, '--token', hsm.token, '--key-label', keyLabel, '--pin-file', pinFile];

test('a recipient key made on the token unwraps what openssl encrypted to its public key with RSA-OAEP-SHA256', async () => {
  const key = Pkcs11RecipientKey.open(keyOn('agent-rsa'));
  try {
    assert.equal(key.recipientKey.fingerprint, importRecipientPublicKey(recipientPem).fingerprint);
    const pub = join(dir, 'agent-rsa.pub');
    await writeFile(pub, recipientPem);
    for (let i = 0; i < 3; i++) {
      const secret = randomBytes(32);
      await writeFile(join(dir, 'secret'), secret);
      const args = ['pkeyutl', '-encrypt', '-pubin', '-inkey', pub, '-in', join(dir, 'secret'), '-out', join(dir, 'block')];
      await run('openssl', [...args, '-pkeyopt', 'rsa_padding_mode:oaep', '-pkeyopt', 'rsa_oaep_md:sha256', '-pkeyopt', 'rsa_mgf1_md:sha256']);
      const block = await readFile(join(dir, 'block'));
      assert.deepEqual(Buffer.from(await key.unwrap(block)), secret);
      // A block changed anywhere, or cut, does not decrypt.
      const tampered = Buffer.from(block);
      tampered[100]! ^= 1;
      await assert.rejects(key.unwrap(tampered), isCode('DECRYPT_FAILED'));
      await assert.rejects(key.unwrap(block.subarray(1)), isCode('DECRYPT_FAILED'));
    }
    // A block as long as the modulus but not below it (what a block encrypted to another key of
    // the same size often is) is refused as not ours, not reported as a failing token (IO).
    const modulus = Buffer.from(createPublicKey(recipientPem).export({ format: 'jwk' }).n!, 'base64url');
    for (const above of [modulus, Buffer.alloc(modulus.length, 0xff)]) {
      await assert.rejects(key.unwrap(above), isCode('DECRYPT_FAILED'));
    }
    // OAEP with SHA-1 (another padding than the one wrapped keys use) is refused too.
    await writeFile(join(dir, 'secret'), randomBytes(32));
    await run('openssl', [
      'pkeyutl',
      '-encrypt',
      '-pubin',
      '-inkey',
      pub,
      '-in',
      join(dir, 'secret'),
      '-out',
      join(dir, 'sha1'),
      '-pkeyopt',
      'rsa_padding_mode:oaep',
    ]);
    await assert.rejects(key.unwrap(await readFile(join(dir, 'sha1'))), isCode('DECRYPT_FAILED'));
  } finally {
    key.close();
  }
});

test('an agent whose recipient key is on the token applies a patch encrypted to it; one encrypted to another key is DECRYPT_FAILED and stages nothing', async () => {
  const fx = await makeFixture('hotpatch-agent-hsm-');
  try {
    const source = goodSource('hsm encrypted');
    const pack = async (id: string, key: ReturnType<typeof importRecipientPublicKey>) => {
      await packPatch(fx.repoDir, {
        id,
        target: T,
        version: '1.0.1',
        type: 'esm',
        payload: new TextEncoder().encode(source),
        encryptTo: [{ kid: 'edge', key }],
      });
      await signPatch(fx.repoDir, id, ciKey.privateKey, { keyid: 'ci' });
    };
    await pack('hsm-enc-1', importRecipientPublicKey(recipientPem));
    await pack('hsm-enc-2', generateRecipientKey('rsa-oaep-sha256').publicKey);
    const agent = await startAgent({
      stateDir: fx.stateDir,
      decryptionKeys: [{ pkcs11: { module: hsm.module, token: hsm.token, keyLabel: 'agent-rsa', pinFile } }],
      defaults: { repository: fx.repoDir, trustStore: fx.trustFile },
      log: false,
    });
    try {
      const target = declareBuiltin(agent);
      const applied = await runPlanUnderTraffic(agent, target, 'apply-1', 'hsm-enc-1');
      assert.equal(applied.status, 'activated', applied.reason);
      assert.equal(target.active.patchId, 'hsm-enc-1');
      assert.deepEqual(await readdir(join(fx.stateDir, 'staging')), [`${createHash('sha256').update(source).digest('hex')}.mjs`]);

      const refused = await runPlanUnderTraffic(agent, target, 'apply-2', 'hsm-enc-2');
      assert.equal(refused.status, 'failed', refused.reason);
      assert.equal(refused.code, 'DECRYPT_FAILED', refused.reason);
      assert.equal((await readdir(join(fx.stateDir, 'staging'))).length, 1, 'nothing more staged');
    } finally {
      await agent.close();
    }
  } finally {
    await fx.close();
  }
});

test('a token key does only what it was made for, and a loose PIN file or a missing key stops the agent start with nothing left open', async () => {
  const signer = Pkcs11KeyProvider.generate(keyOn('release-signer'), 'ecdsa-p256-sha256');
  signer.close();
  assert.throws(() => Pkcs11RecipientKey.open(keyOn('release-signer')), isCode('INVALID', /not a decryption key/));
  assert.throws(() => Pkcs11KeyProvider.open(keyOn('agent-rsa')), isCode('INVALID', /not a signing key/));
  const signing = hotpatch(['sign', '--repo', dir, '--id', 'none', ...tokenFlags('agent-rsa'), '--keyid', 'edge', '--json'], {
    env: { ...process.env, SOFTHSM2_CONF: hsm.conf },
  });
  assert.equal(signing.status, 2, signing.stdout);
  assert.match(String(signing.json?.message), /--key-label agent-rsa: .*not a signing key/);
  assert.throws(() => Pkcs11RecipientKey.generate(keyOn('pq'), 'ml-kem-768'), isCode('ALGORITHM_DISALLOWED'));
  assert.throws(() => Pkcs11RecipientKey.generate(keyOn('agent-rsa')), isCode('INVALID'), 'a label already taken');

  const fx = await makeFixture('hotpatch-agent-hsm-');
  try {
    const loose = join(dir, 'loose-pin');
    await writeFile(loose, hsm.pin, { mode: 0o644 });
    const start = (keyLabel: string, pin: string) =>
      startAgent({
        stateDir: fx.stateDir,
        decryptionKeys: [{ pkcs11: { module: hsm.module, token: hsm.token, keyLabel, pinFile: pin } }],
        defaults: { repository: fx.repoDir, trustStore: fx.trustFile },
        log: false,
      });
    await assert.rejects(start('agent-rsa', loose), isCode('INVALID', /readable by group or others/));
    await assert.rejects(start('no-such-key', pinFile), isCode('NOT_FOUND'));
    await assert.rejects(
      startAgent({
        stateDir: fx.stateDir,
        decryptionKeys: [{ pkcs11: { module: hsm.module, token: hsm.token, keyLabel: 'agent-rsa', pinFile, extra: 1 } as never }],
        log: false,
      }),
      isCode('INVALID'),
    );
    // Nothing was left holding the state directory: the next start, with the right key, succeeds.
    const agent = await start('agent-rsa', pinFile);
    await agent.close();
  } finally {
    await fx.close();
  }
});

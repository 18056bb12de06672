/*
 * Encrypted payloads: a data key wrapped to X25519, RSA-OAEP-SHA256 and ML-KEM-768 recipients,
 * the payload sealed in authenticated chunks bound to the patch. Round trips for every key
 * kind and size (a property test), keys through PEM, and the hostile cases: the wrong
 * recipient key, a tampered chunk, reordered chunks, a chunk from another patch, a payload cut
 * short (at a chunk boundary and inside one), a wrapped key moved from another patch or another
 * recipient — each DECRYPT_FAILED, never a plaintext.
 */
import assert from 'node:assert/strict';
import { createHash, createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { inspect } from 'node:util';
import fc from 'fast-check';
import { HotPatchError, parseManifestEncryption, type ManifestEncryption } from '../../src/core/index.js';
import {
  RECIPIENT_ALGORITHMS,
  decryptPayload,
  encryptPayload,
  generateRecipientKey,
  importRecipientPrivateKey,
  importRecipientPublicKey,
  type RecipientAlgorithm,
  type UnwrapKeyProvider,
} from '../../src/crypto-agile/index.js';
import { isCode } from '../support/assertions.js';

const keys = Object.fromEntries(RECIPIENT_ALGORITHMS.map((alg) => [alg, generateRecipientKey(alg)])) as Record<
  RecipientAlgorithm,
  ReturnType<typeof generateRecipientKey>
>;

async function* pieces(bytes: Uint8Array, size = 7_001): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < bytes.length; at += size) yield bytes.subarray(at, at + size);
}

async function collect(chunks: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of chunks) out.push(Buffer.from(c));
  return Buffer.concat(out);
}

/** `plaintext` encrypted for `patchId` to every kind of recipient; the ciphertext and the manifest field. */
async function encrypted(plaintext: Uint8Array, patchId = 'enc-1', chunkSize = 4096): Promise<{ ciphertext: Buffer; encryption: ManifestEncryption }> {
  const run = encryptPayload(
    pieces(plaintext),
    RECIPIENT_ALGORITHMS.map((alg) => ({ kid: `agent-${alg}`, key: keys[alg].publicKey })),
    { patchId, chunkSize },
  );
  const ciphertext = await collect(run.ciphertext);
  const { encryption, ciphertextSize } = run.result();
  assert.equal(ciphertextSize, ciphertext.length);
  // What the manifest parser accepts, against the ciphertext's size.
  assert.deepEqual(parseManifestEncryption(JSON.parse(JSON.stringify(encryption)), ciphertext.length), encryption);
  return { ciphertext, encryption };
}

const decrypt = (encryption: ManifestEncryption, alg: RecipientAlgorithm, ciphertext: Uint8Array, patchId = 'enc-1', key = keys[alg].privateKey) =>
  collect(decryptPayload(encryption, patchId, key, pieces(ciphertext, 5_003)));

test('every recipient kind decrypts what was encrypted to it, for any size and chunk size (property)', async () => {
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ minLength: 0, maxLength: 20_000 }), fc.integer({ min: 1024, max: 6000 }), async (plaintext, chunkSize) => {
      const { ciphertext, encryption } = await encrypted(plaintext, 'enc-prop', chunkSize);
      // Signed, but no one without a recipient key can confirm a guess of the plaintext with it.
      assert.match(encryption.plaintext_mac, /^hmac-sha256:[0-9a-f]{64}$/);
      assert.notEqual(encryption.plaintext_mac.slice(12), createHash('sha256').update(plaintext).digest('hex'));
      for (const alg of RECIPIENT_ALGORITHMS) assert.deepEqual(await decrypt(encryption, alg, ciphertext, 'enc-prop'), Buffer.from(plaintext));
    }),
    { numRuns: 25 },
  );
});

test('recipient keys survive PEM both ways; the algorithm is the key own, and a small RSA or an Ed25519 key is refused', () => {
  for (const alg of RECIPIENT_ALGORITHMS) {
    const { privateKey, publicKey } = keys[alg];
    const pub = importRecipientPublicKey(publicKey.toPem());
    const priv = importRecipientPrivateKey(privateKey.toPem());
    assert.equal(pub.alg, alg);
    assert.equal(pub.fingerprint, publicKey.fingerprint);
    assert.equal(priv.publicKey.fingerprint, publicKey.fingerprint);
    assert.doesNotMatch(String(priv), /PRIVATE/);
    // Logged by accident, a key shows its public half only.
    assert.doesNotMatch(inspect(priv, { depth: 5, showHidden: false }), /seed|secretKey|KeyObject/);
    assert.deepEqual(Object.keys(JSON.parse(JSON.stringify(priv)) as object).sort(), ['alg', 'public']);
  }
  assert.throws(() => importRecipientPublicKey('not a key'), isCode('INVALID'));
  assert.throws(() => importRecipientPrivateKey(keys['x25519-hkdf-sha256'].publicKey.toPem()), isCode('INVALID', /PRIVATE KEY/));
  // RSA from 2048 to 8192 bits (a manifest's rsa_ct is the modulus's size, up to 1024 bytes); no signing kind.
  const rsaOf = (bytes: number): string => {
    const n = randomBytes(bytes);
    n[0]! |= 0x80;
    n[bytes - 1]! |= 1;
    return createPublicKey({ key: { kty: 'RSA', n: n.toString('base64url'), e: 'AQAB' }, format: 'jwk' }).export({ type: 'spki', format: 'pem' }) as string;
  };
  assert.throws(() => importRecipientPublicKey(rsaOf(128)), isCode('ALGORITHM_DISALLOWED', /1024 bits is refused/));
  assert.throws(() => importRecipientPublicKey(rsaOf(1032)), isCode('ALGORITHM_DISALLOWED', /8256 bits is refused/));
  assert.equal(importRecipientPublicKey(rsaOf(1024)).alg, 'rsa-oaep-sha256');
  const ed25519 = generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }) as string;
  assert.throws(() => importRecipientPublicKey(ed25519), isCode('ALGORITHM_DISALLOWED'));
});

test('a provider answering a zero or short secret is DECRYPT_FAILED; a key that cannot be asked is reported before one that does not unwrap, and asked once', async () => {
  const { ciphertext, encryption } = await encrypted(Buffer.from('the fix'.repeat(100)));
  const answering = (secret: Uint8Array): UnwrapKeyProvider => ({
    name: 'test provider',
    recipientKey: keys['x25519-hkdf-sha256'].publicKey,
    unwrap: () => Promise.resolve(secret),
  });
  for (const secret of [new Uint8Array(32), new Uint8Array(31).fill(9), new Uint8Array(33).fill(9)]) {
    await assert.rejects(collect(decryptPayload(encryption, 'enc-1', answering(secret), pieces(ciphertext))), isCode('DECRYPT_FAILED'));
  }
  let asked = 0;
  const unreachable: UnwrapKeyProvider = {
    name: 'kms down',
    recipientKey: keys['rsa-oaep-sha256'].publicKey,
    unwrap: () => {
      asked += 1;
      return Promise.reject(new HotPatchError('IO', 'kms down: no answer within 10000 ms'));
    },
  };
  // Two RSA entries: the unreachable KMS is asked once, and its IO is what is reported, not the stranger's DECRYPT_FAILED.
  const twice = { ...encryption, recipients: [...encryption.recipients, { ...encryption.recipients.find((r) => r.alg === 'rsa-oaep-sha256')!, kid: 'again' }] };
  const stranger = generateRecipientKey('x25519-hkdf-sha256').privateKey;
  await assert.rejects(collect(decryptPayload(twice, 'enc-1', [unreachable, stranger], pieces(ciphertext))), isCode('IO', /kms down/));
  assert.equal(asked, 1);
  // A key that unwraps after the unreachable one still decrypts.
  assert.deepEqual(
    await collect(decryptPayload(encryption, 'enc-1', [unreachable, keys['ml-kem-768'].privateKey], pieces(ciphertext))),
    Buffer.from('the fix'.repeat(100)),
  );
});

test('the wrong recipient key, or a key of no recipient kind present, is DECRYPT_FAILED', async () => {
  const { ciphertext, encryption } = await encrypted(Buffer.from('the fix for the flaw'.repeat(500)));
  for (const alg of RECIPIENT_ALGORITHMS) {
    const stranger = generateRecipientKey(alg).privateKey;
    await assert.rejects(decrypt(encryption, alg, ciphertext, 'enc-1', stranger), isCode('DECRYPT_FAILED', /does not unwrap with this key/), alg);
  }
  const onlyX = { ...encryption, recipients: encryption.recipients.filter((r) => r.alg === 'x25519-hkdf-sha256') };
  await assert.rejects(decrypt(onlyX, 'ml-kem-768', ciphertext), isCode('DECRYPT_FAILED', /encrypted to no ml-kem-768 key/));
});

test('a tampered chunk, reordered chunks, a payload cut short, or bytes added are DECRYPT_FAILED before any byte of the bad chunk', async () => {
  const plaintext = Buffer.alloc(4096 * 3 + 100, 7);
  const { ciphertext, encryption } = await encrypted(plaintext);
  const record = 4096 + 16;
  const tampered = Buffer.from(ciphertext);
  tampered[record + 10]! ^= 1;
  const swapped = Buffer.concat([ciphertext.subarray(record, 2 * record), ciphertext.subarray(0, record), ciphertext.subarray(2 * record)]);
  const cases: [string, Buffer, RegExp][] = [
    ['tampered', tampered, /chunk 1 .* does not authenticate/],
    ['reordered', swapped, /chunk 0 .* does not authenticate/],
    ['cut at a chunk boundary', ciphertext.subarray(0, 3 * record), /chunk 2 .* does not authenticate as its last/],
    ['cut inside a chunk', ciphertext.subarray(0, 3 * record + 50), /chunk 3 .* does not authenticate as its last/],
    ['cut to a stub', ciphertext.subarray(0, 3 * record + 5), /ends inside chunk 3: it was cut short/],
    ['extended', Buffer.concat([ciphertext, Buffer.alloc(40)]), /chunk 3 .* does not authenticate/],
  ];
  for (const [name, bytes, message] of cases) {
    const got: Buffer[] = [];
    await assert.rejects(
      (async () => {
        for await (const piece of decryptPayload(encryption, 'enc-1', keys['ml-kem-768'].privateKey, pieces(bytes))) got.push(Buffer.from(piece));
      })(),
      isCode('DECRYPT_FAILED', message),
      name,
    );
    // What was yielded before the failure is the genuine prefix, never a byte of the bad chunk.
    assert.ok(plaintext.subarray(0, Buffer.concat(got).length).equals(Buffer.concat(got)), name);
  }
});

test('chunks or a wrapped key taken from another patch do not decrypt: the patch id is bound into both', async () => {
  const plaintext = Buffer.alloc(9000, 3);
  const a = await encrypted(plaintext, 'patch-a');
  const b = await encrypted(plaintext, 'patch-b');
  // b's ciphertext under a's manifest (another data key), and a's ciphertext read as patch b.
  await assert.rejects(decrypt(a.encryption, 'x25519-hkdf-sha256', b.ciphertext, 'patch-a'), isCode('DECRYPT_FAILED', /chunk 0/));
  await assert.rejects(decrypt(a.encryption, 'x25519-hkdf-sha256', a.ciphertext, 'patch-b'), isCode('DECRYPT_FAILED', /does not unwrap/));
  // b's wrapped keys swapped into a's encryption field: bound to patch-b, they never unwrap for patch-a.
  for (const alg of RECIPIENT_ALGORITHMS) {
    const mixed = { ...a.encryption, recipients: b.encryption.recipients };
    await assert.rejects(decrypt(mixed, alg, a.ciphertext, 'patch-a'), isCode('DECRYPT_FAILED', /does not unwrap/), alg);
  }
  // One recipient's entry relabelled as another's: the key id is bound too.
  const relabelled = { ...a.encryption, recipients: a.encryption.recipients.map((r) => ({ ...r, kid: `${r.kid}-x` })) };
  await assert.rejects(decrypt(relabelled, 'rsa-oaep-sha256', a.ciphertext, 'patch-a'), isCode('DECRYPT_FAILED', /does not unwrap/));
});

test('a plaintext that is not the signed one (another plaintext_mac) is HASH_MISMATCH after the last chunk', async () => {
  const { ciphertext, encryption } = await encrypted(Buffer.alloc(5000, 9));
  const other = { ...encryption, plaintext_mac: `hmac-sha256:${'0'.repeat(64)}` };
  await assert.rejects(decrypt(other, 'x25519-hkdf-sha256', ciphertext), isCode('HASH_MISMATCH', /does not match its signed plaintext_mac/));
  await assert.rejects(decrypt({ ...encryption, plaintext_size: 4999 }, 'x25519-hkdf-sha256', ciphertext), isCode('SIZE_MISMATCH'));
});

test('the manifest field is parsed strictly: sizes that disagree, a missing epk, an unknown field are INVALID', async () => {
  const { ciphertext, encryption } = await encrypted(Buffer.alloc(100, 1));
  const field = JSON.parse(JSON.stringify(encryption)) as Record<string, unknown> & { recipients: Record<string, unknown>[] };
  assert.throws(() => parseManifestEncryption(field, ciphertext.length + 1), isCode('INVALID', /payload_size says/));
  assert.throws(() => parseManifestEncryption({ ...field, extra: 1 }, ciphertext.length), isCode('INVALID', /unknown field/));
  const noEpk = { ...field, recipients: field.recipients.map(({ epk: _epk, ...r }) => r) };
  assert.throws(() => parseManifestEncryption(noEpk, ciphertext.length), isCode('INVALID', /epk/));
  assert.throws(() => parseManifestEncryption({ ...field, recipients: [] }, ciphertext.length), isCode('INVALID', /1 to 64 recipients/));
});

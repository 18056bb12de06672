import assert from 'node:assert/strict';
import { createHash, createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { PublicKey, SIGNATURE_ALGORITHMS, generateKeyPair, importPrivateKey, importPublicKey, sign, verifySignature } from '../../src/crypto-agile/index.js';
import { concat, hex, keyPair, pem, throwsCode, tlv, toBase64, toHex, utf8 } from './helpers.js';

const ML_DSA_65_ALG_ID = hex('300b0609608648016503040312');

test('a public key imports from SPKI PEM', () => {
  for (const alg of SIGNATURE_ALGORITHMS) {
    const { publicKey } = keyPair(alg);
    const imported = importPublicKey(alg, publicKey.toPem());
    assert.equal(imported.alg, alg);
    assert.deepEqual(imported.spki, publicKey.spki);
  }
});

test('a public key imports from bare base64 of the SPKI DER, line breaks and spaces allowed', () => {
  for (const alg of SIGNATURE_ALGORITHMS) {
    const b64 = toBase64(keyPair(alg).publicKey.spki);
    const wrapped = ` ${b64.replace(/(.{60})/g, '$1\n  ')}\n`;
    assert.equal(importPublicKey(alg, wrapped).alg, alg);
  }
});

test('the fingerprint of a key is the same whether it came as PEM or base64', () => {
  for (const alg of SIGNATURE_ALGORITHMS) {
    const { publicKey } = keyPair(alg);
    const fromPem = importPublicKey(alg, publicKey.toPem());
    const fromBase64 = importPublicKey(alg, toBase64(publicKey.spki));
    assert.equal(fromPem.fingerprint, fromBase64.fingerprint);
  }
});

test('the fingerprint is the lowercase hex SHA-256 of the SPKI DER', () => {
  for (const alg of SIGNATURE_ALGORITHMS) {
    const { publicKey } = keyPair(alg);
    assert.equal(publicKey.fingerprint, createHash('sha256').update(publicKey.spki).digest('hex'));
    assert.match(publicKey.fingerprint, /^[0-9a-f]{64}$/);
  }
});

for (const actual of SIGNATURE_ALGORITHMS) {
  for (const declared of SIGNATURE_ALGORITHMS.filter((a) => a !== actual)) {
    test(`an ${actual} public key declared as ${declared} is refused as INVALID`, () => {
      throwsCode(() => importPublicKey(declared, keyPair(actual).publicKey.toPem()), 'INVALID', new RegExp(`${actual} key but was declared as ${declared}`));
    });
  }
}

test('an unknown algorithm name on import is ALGORITHM_DISALLOWED', () => {
  throwsCode(() => importPublicKey('dsa-sha1' as never, keyPair('ed25519').publicKey.toPem()), 'ALGORITHM_DISALLOWED', /dsa-sha1/);
});

test('a private key offered as a public key is refused, as PEM or as bare base64', () => {
  const { privateKey } = keyPair('ecdsa-p256-sha256');
  throwsCode(() => importPublicKey('ecdsa-p256-sha256', privateKey.toPem()), 'INVALID', /private key/);
  const der = Buffer.from(privateKey.toPem().replace(/-----[A-Z ]+-----|\s/g, ''), 'base64');
  throwsCode(() => importPublicKey('ecdsa-p256-sha256', der.toString('base64')), 'INVALID', /private key/);
});

test('unparseable public key text is refused as INVALID', () => {
  const good = toBase64(keyPair('ed25519').publicKey.spki);
  for (const text of ['', 'hello world', '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----', good.slice(0, -4), good + '!']) {
    throwsCode(() => importPublicKey('ed25519', text), 'INVALID');
  }
});

test('key base64 is read strictly (core decodeBase64): standard alphabet, padded, canonical, line breaks allowed', () => {
  const spki = keyPair('ed25519').publicKey.spki; // 44 bytes: one "=" of padding, two unused bits
  const good = toBase64(spki);
  assert.ok(good.endsWith('=') && !good.endsWith('=='));
  assert.equal(importPublicKey('ed25519', `${good.slice(0, 30)}\n${good.slice(30)}`).alg, 'ed25519');
  throwsCode(() => importPublicKey('ed25519', good.slice(0, -1)), 'INVALID', /^public key text is not valid base64: it must be padded/);
  throwsCode(() => importPublicKey('ed25519', `-${good.slice(1)}`), 'INVALID', /^public key text is not valid base64$/);
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  const last = good.at(-2)!;
  const noisy = `${good.slice(0, -2)}${alphabet[alphabet.indexOf(last) + 1]}=`;
  throwsCode(() => importPublicKey('ed25519', noisy), 'INVALID', /^public key text is not canonical base64$/);
  throwsCode(() => importPublicKey('ed25519', '-----BEGIN PUBLIC KEY-----\n\n-----END PUBLIC KEY-----'), 'INVALID', /is empty/);
});

test('a PEM block whose BEGIN and END labels differ is refused', () => {
  const text = keyPair('ed25519').publicKey.toPem().replace('END PUBLIC KEY', 'END CERTIFICATE');
  throwsCode(() => importPublicKey('ed25519', text), 'INVALID', /begins as/);
});

test('text holding two PEM blocks is refused rather than read as the first', () => {
  const text = keyPair('ed25519').publicKey.toPem() + keyPair('ecdsa-p256-sha256').publicKey.toPem();
  throwsCode(() => importPublicKey('ed25519', text), 'INVALID', /more than one PEM block/);
});

test('an SPKI with a trailing byte is refused', () => {
  for (const alg of SIGNATURE_ALGORITHMS) {
    const der = concat(keyPair(alg).publicKey.spki, Uint8Array.of(0));
    throwsCode(() => importPublicKey(alg, toBase64(der)), 'INVALID');
  }
});

test('an EC key on a curve other than P-256 is refused for ecdsa-p256-sha256', () => {
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'secp384r1' });
  const text = publicKey.export({ type: 'spki', format: 'pem' }) as string;
  throwsCode(() => importPublicKey('ecdsa-p256-sha256', text), 'INVALID', /secp384r1.*P-256/);
});

test('an X25519 key is refused for ed25519', () => {
  const { publicKey } = generateKeyPairSync('x25519');
  throwsCode(() => importPublicKey('ed25519', publicKey.export({ type: 'spki', format: 'pem' }) as string), 'INVALID', /x25519/);
});

test('a compressed P-256 point imports as the same key, with the same fingerprint, as the uncompressed one', () => {
  const { publicKey } = keyPair('ecdsa-p256-sha256');
  const jwk = createPublicKey({ key: Buffer.from(publicKey.spki), format: 'der', type: 'spki' }).export({ format: 'jwk' });
  const x = Buffer.from(jwk.x!, 'base64url');
  const y = Buffer.from(jwk.y!, 'base64url');
  const compressed = concat(hex('3039301306072a8648ce3d020106082a8648ce3d030107032200'), Uint8Array.of(0x02 | (y[31]! & 1)), x);
  const imported = importPublicKey('ecdsa-p256-sha256', toBase64(compressed));
  assert.equal(imported.fingerprint, publicKey.fingerprint);
  assert.equal(imported.spki.length, 91);
});

test('an RSA key under the RSASSA-PSS OID has the same fingerprint as under rsaEncryption', () => {
  const { privateKey, publicKey } = keyPair('rsa-pss-sha256');
  const rsaEncryption = publicKey.spki;
  // Swap the 15-byte rsaEncryption AlgorithmIdentifier for a parameterless id-RSASSA-PSS one.
  const body = rsaEncryption.subarray(4 + 15);
  const pssSpki = tlv(0x30, hex('300b06092a864886f70d01010a'), body);
  const imported = importPublicKey('rsa-pss-sha256', toBase64(pssSpki));
  assert.equal(imported.fingerprint, publicKey.fingerprint);
  assert.equal(imported.bits, 2048);
  assert.equal(verifySignature(imported, utf8('m'), sign(privateKey, utf8('m'))), true);
});

test('an RSASSA-PSS key restricted to SHA-512 is refused for rsa-pss-sha256', () => {
  const { publicKey } = generateKeyPairSync('rsa-pss', { modulusLength: 2048, hashAlgorithm: 'sha512', mgf1HashAlgorithm: 'sha512' });
  throwsCode(() => importPublicKey('rsa-pss-sha256', publicKey.export({ type: 'spki', format: 'pem' }) as string), 'INVALID', /sha512/);
});

test('an RSA public key reports its modulus size and other keys report none', () => {
  assert.equal(keyPair('rsa-pss-sha256').publicKey.bits, 2048);
  for (const alg of ['ed25519', 'ecdsa-p256-sha256', 'ml-dsa-65'] as const) assert.equal(keyPair(alg).publicKey.bits, undefined);
});

test('an ML-DSA-65 SPKI is the RFC 9881 structure around the 1952-byte key', () => {
  const spki = keyPair('ml-dsa-65').publicKey.spki;
  assert.equal(spki.length, 1974);
  assert.equal(toHex(spki.subarray(0, 22)), '308207b2300b0609608648016503040312038207a100');
});

test('an ML-DSA-65 SPKI with a wrong key length is refused', () => {
  const raw = keyPair('ml-dsa-65').publicKey.spki.subarray(22);
  for (const key of [raw.subarray(1), concat(raw, Uint8Array.of(7))]) {
    const der = tlv(0x30, ML_DSA_65_ALG_ID, tlv(0x03, Uint8Array.of(0), key));
    throwsCode(() => importPublicKey('ml-dsa-65', toBase64(der)), 'INVALID', /1952 bytes/);
  }
});

test('an ML-DSA-65 SPKI with parameters or a non-minimal length is refused', () => {
  const raw = keyPair('ml-dsa-65').publicKey.spki.subarray(22);
  const withParams = tlv(0x30, tlv(0x30, hex('0609608648016503040312'), hex('0500')), tlv(0x03, Uint8Array.of(0), raw));
  throwsCode(() => importPublicKey('ml-dsa-65', toBase64(withParams)), 'INVALID', /no parameters/);
  // The same SPKI with its outer length written in three bytes instead of two.
  const good = keyPair('ml-dsa-65').publicKey.spki;
  const longForm = concat(hex('30830007b2'), good.subarray(4));
  throwsCode(() => importPublicKey('ml-dsa-65', toBase64(longForm)), 'INVALID', /non-minimal/);
});

test('an ML-DSA-65 private key round-trips through seed-form PKCS#8', () => {
  const { privateKey, publicKey } = keyPair('ml-dsa-65');
  const text = privateKey.toPem();
  const der = Buffer.from(text.replace(/-----[A-Z ]+-----|\s/g, ''), 'base64');
  assert.equal(der.length, 54);
  assert.equal(toHex(der.subarray(0, 22)), '3034020100300b06096086480165030403120422' + '8020');
  const again = importPrivateKey(text);
  assert.equal(again.alg, 'ml-dsa-65');
  assert.equal(again.publicKey().fingerprint, publicKey.fingerprint);
  assert.equal(verifySignature(publicKey, utf8('m'), sign(again, utf8('m'))), true);
});

test('an ML-DSA-65 private key in expanded form is refused with a pointer to the seed form', () => {
  const expanded = tlv(0x30, hex('020100'), ML_DSA_65_ALG_ID, tlv(0x04, tlv(0x04, randomBytes(4032))));
  throwsCode(() => importPrivateKey(pem('PRIVATE KEY', expanded)), 'INVALID', /seed form/);
});

test('an ML-DSA-65 private key with a short seed is refused', () => {
  const short = tlv(0x30, hex('020100'), ML_DSA_65_ALG_ID, tlv(0x04, tlv(0x80, randomBytes(31))));
  throwsCode(() => importPrivateKey(pem('PRIVATE KEY', short)), 'INVALID', /32 bytes/);
});

test('a private key round-trips through PKCS#8 PEM for every algorithm', () => {
  for (const alg of SIGNATURE_ALGORITHMS) {
    const { privateKey, publicKey } = keyPair(alg);
    const text = privateKey.toPem();
    assert.match(text, /^-----BEGIN PRIVATE KEY-----\n/);
    const again = importPrivateKey(text);
    assert.equal(again.alg, alg);
    assert.equal(again.publicKey().fingerprint, publicKey.fingerprint);
  }
});

test('importPrivateKey refuses public keys, bare base64 and legacy PEM labels', () => {
  const { privateKey, publicKey } = keyPair('ed25519');
  throwsCode(() => importPrivateKey(publicKey.toPem()), 'INVALID', /PUBLIC KEY/);
  const b64 = privateKey.toPem().replace(/-----[A-Z ]+-----|\s/g, '');
  throwsCode(() => importPrivateKey(b64), 'INVALID', /bare base64/);
  const ec = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({ type: 'sec1', format: 'pem' }) as string;
  throwsCode(() => importPrivateKey(ec), 'INVALID', /EC PRIVATE KEY/);
  throwsCode(() => importPrivateKey(42 as never), 'INVALID', /^pem must be a string/);
});

test('generateKeyPair refuses RSA sizes below 2048 bits and unknown options', () => {
  throwsCode(() => generateKeyPair('rsa-pss-sha256', { rsaBits: 1024 }), 'INVALID', /rsaBits/);
  throwsCode(() => generateKeyPair('ed25519', { bits: 1 } as never), 'INVALID', /^options has unknown field "bits" \(allowed: rsaBits\)$/);
  throwsCode(() => generateKeyPair('rsa-sha1' as never), 'ALGORITHM_DISALLOWED');
});

test('a public key cannot be constructed directly', () => {
  const Ctor = PublicKey as unknown as new (...args: unknown[]) => PublicKey;
  throwsCode(() => new Ctor(Symbol('x'), 'ed25519', new Uint8Array(44), {}), 'INVALID', /importPublicKey/);
});

test('changing the bytes returned by spki does not change the key', () => {
  const { publicKey } = keyPair('ed25519');
  const spki = publicKey.spki;
  spki.fill(0);
  assert.notDeepEqual(publicKey.spki, spki);
  assert.equal(publicKey.fingerprint, createHash('sha256').update(publicKey.spki).digest('hex'));
});

test('a key object is frozen, so its algorithm cannot be changed after import', () => {
  const { publicKey } = keyPair('ed25519');
  assert.throws(() => {
    (publicKey as { alg: string }).alg = 'ml-dsa-65';
  }, TypeError);
});

test('a private key never prints its secret', () => {
  const { privateKey } = keyPair('ed25519');
  const secret = toBase64(Buffer.from(privateKey.toPem().replace(/-----[A-Z ]+-----|\s/g, ''), 'base64').subarray(16));
  assert.equal(String(privateKey).includes(secret), false);
  assert.equal(JSON.stringify(privateKey).includes(secret), false);
});

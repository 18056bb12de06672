import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HASH_ALGORITHMS, hashBytes, hashProvider, timingSafeEqualBytes } from '../../src/crypto-agile/index.js';
import { hex, throwsCode, toHex, utf8 } from './helpers.js';

// FIPS 180-2 appendix B/C/D and FIPS 202 example values for the message "abc".
const ABC_VECTORS = {
  sha256: 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
  sha384: 'cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7',
  sha512: 'ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f',
  'sha3-256': '3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532',
} as const;

for (const alg of HASH_ALGORITHMS) {
  test(`${alg} of "abc" matches the NIST known answer`, () => {
    assert.equal(toHex(hashBytes(alg, utf8('abc'))), ABC_VECTORS[alg]);
  });

  test(`${alg} gives the same digest fed in chunks as in one piece`, () => {
    const hasher = hashProvider(alg).create();
    hasher.update(utf8('a'));
    hasher.update(new Uint8Array(0));
    hasher.update(utf8('bc'));
    assert.equal(toHex(hasher.digest()), ABC_VECTORS[alg]);
  });

  test(`${alg} declares the length of the digests it produces`, () => {
    const provider = hashProvider(alg);
    assert.equal(provider.alg, alg);
    assert.equal(hashBytes(alg, new Uint8Array(0)).length, provider.digestLength);
  });
}

test('digest lengths are 32, 48, 64 and 32 bytes', () => {
  assert.deepEqual(
    HASH_ALGORITHMS.map((a) => hashProvider(a).digestLength),
    [32, 48, 64, 32],
  );
});

test('an unknown hash algorithm is ALGORITHM_DISALLOWED', () => {
  throwsCode(() => hashProvider('md5'), 'ALGORITHM_DISALLOWED', /md5/);
  throwsCode(() => hashBytes('sha1' as never, utf8('abc')), 'ALGORITHM_DISALLOWED');
  throwsCode(() => hashProvider('SHA256'), 'ALGORITHM_DISALLOWED');
});

test('a hasher is single use: update or digest after digest is refused', () => {
  const hasher = hashProvider('sha256').create();
  hasher.update(utf8('abc'));
  hasher.digest();
  throwsCode(() => hasher.update(utf8('more')), 'INVALID', /finalised/);
  throwsCode(() => hasher.digest(), 'INVALID', /finalised/);
});

test('hashing refuses data that is not a Uint8Array, naming the argument', () => {
  throwsCode(() => hashBytes('sha256', 'abc' as never), 'INVALID', /^data must be a Uint8Array/);
  throwsCode(
    () =>
      hashProvider('sha256')
        .create()
        .update([1] as never),
    'INVALID',
    /^chunk must be a Uint8Array/,
  );
});

test('constant-time comparison says equal for equal bytes and unequal for one differing byte', () => {
  const a = hex('00112233445566778899aabbccddeeff');
  assert.equal(timingSafeEqualBytes(a, a.slice()), true);
  const b = a.slice();
  b[15] = 0xfe;
  assert.equal(timingSafeEqualBytes(a, b), false);
});

test('constant-time comparison returns false for different lengths instead of throwing', () => {
  assert.equal(timingSafeEqualBytes(hex('0011'), hex('001122')), false);
  assert.equal(timingSafeEqualBytes(new Uint8Array(0), new Uint8Array(0)), true);
});

test('constant-time comparison refuses arguments that are not Uint8Array', () => {
  throwsCode(() => timingSafeEqualBytes('ab' as never, hex('00')), 'INVALID', /^a must be/);
  throwsCode(() => timingSafeEqualBytes(hex('00'), null as never), 'INVALID', /^b must be/);
});

/*
 * Benchmark — signing (and unwrapping a payload's data key) on a PKCS#11 token against a key file.
 *
 * A SoftHSM2 token initialised in a temporary directory (SOFTHSM2_CONF, as the tests do), one
 * key pair per algorithm made on it, and a file key of the same algorithm in this process.
 * Each case signs the same 1 KiB message (a manifest's PAE is about that size) N times, one
 * after another; the median latency per signature is reported, the token's against the file
 * key's (measured in the same run, interleaved by round). Information, no goal: the token pays
 * a library call and, for ECDSA, the digest in JS and a DER re-encoding.
 * --quick: fewer signatures. SoftHSM2 is required (apt-get install -y softhsm2).
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { ManifestEncryption } from '../src/core/index.js';
import { decryptPayload, encryptPayload, generateKeyPair, generateRecipientKey, sign, verifySignature, type DecryptionKey } from '../src/crypto-agile/index.js';
import { Pkcs11KeyProvider, Pkcs11RecipientKey } from '../src/keys/index.js';
import { median, withTempDir, type Row } from './harness.js';

const NAME = 'key-sign';
const MODULE = '/usr/lib/softhsm/libsofthsm2.so';
const exec = promisify(execFile);

export async function run(options: { quick?: boolean } = {}): Promise<Row[]> {
  if (!existsSync(MODULE)) throw new Error(`the key-sign benchmark needs SoftHSM2 (${MODULE}): apt-get install -y softhsm2`);
  const perRound = options.quick === true ? 20 : 100;
  const rounds = options.quick === true ? 3 : 9;
  return withTempDir('xps-bench-pkcs11-', async (dir) => {
    await mkdir(join(dir, 'tokens'));
    const conf = join(dir, 'softhsm2.conf');
    await writeFile(conf, `directories.tokendir = ${join(dir, 'tokens')}\nobjectstore.backend = file\nlog.level = ERROR\n`);
    process.env.SOFTHSM2_CONF = conf;
    await exec('softhsm2-util', ['--init-token', '--free', '--label', 'bench', '--pin', '1111', '--so-pin', '2222'], {
      env: { ...process.env, SOFTHSM2_CONF: conf },
    });
    const message = Buffer.alloc(1024, 0x61);
    const rows: Row[] = [];
    for (const alg of ['ed25519', 'ecdsa-p256-sha256', 'rsa-pss-sha256'] as const) {
      const token = Pkcs11KeyProvider.generate({ module: MODULE, token: 'bench', keyLabel: `bench-${alg}`, pin: '1111' }, alg);
      try {
        const file = generateKeyPair(alg);
        if (!verifySignature(token.publicKey, message, await token.sign(message))) throw new Error(`the token's ${alg} signature does not verify`);
        const fileUs: number[] = [];
        const tokenUs: number[] = [];
        for (let r = 0; r < rounds; r++) {
          let t = process.hrtime.bigint();
          for (let i = 0; i < perRound; i++) sign(file.privateKey, message);
          fileUs.push(Number(process.hrtime.bigint() - t) / 1e3 / perRound);
          t = process.hrtime.bigint();
          for (let i = 0; i < perRound; i++) await token.sign(message);
          tokenUs.push(Number(process.hrtime.bigint() - t) / 1e3 / perRound);
        }
        const fileMedian = median(fileUs);
        rows.push(
          {
            benchmark: NAME,
            case: `${alg}: file key, sign()`,
            unit: 'µs/sig',
            median: fileMedian,
            best: Math.min(...fileUs),
            rounds,
            status: 'baseline',
            note: `${perRound} signatures of 1 KiB per round`,
          },
          {
            benchmark: NAME,
            case: `${alg}: SoftHSM2 token, Pkcs11KeyProvider.sign()`,
            unit: 'µs/sig',
            median: median(tokenUs),
            best: Math.min(...tokenUs),
            rounds,
            ratio: median(tokenUs.map((t, i) => t / fileUs[i]!)),
            baseline: `${alg}: file key, sign()`,
            status: 'info',
          },
        );
      } finally {
        token.close();
      }
    }
    rows.push(...(await unwrapRows(perRound, rounds)));
    return rows;
  });
}

/**
 * Unwrapping a payload's data key: the recipient key on the token (SoftHSM2: raw RSA on the
 * token, OAEP decoding in the process) against the same algorithm's file key, each unwrapping
 * the same wrapped key of a real encrypted payload's manifest field.
 */
async function unwrapRows(perRound: number, rounds: number): Promise<Row[]> {
  const token = Pkcs11RecipientKey.generate({ module: MODULE, token: 'bench', keyLabel: 'bench-recipient', pin: '1111' });
  try {
    const file = generateRecipientKey('rsa-oaep-sha256');
    const unwrapOnce = async (key: DecryptionKey, encryption: ManifestEncryption, patchId: string): Promise<void> => {
      // An empty payload: one 16-byte tag, so the time is the unwrap's.
      for await (const piece of decryptPayload(encryption, patchId, key, one(ciphertexts.get(encryption)!))) void piece;
    };
    const ciphertexts = new Map<ManifestEncryption, Uint8Array>();
    const encrypt = async (recipient: typeof file.publicKey): Promise<ManifestEncryption> => {
      const run = encryptPayload(one(new Uint8Array(0)), [{ kid: 'bench', key: recipient }], { patchId: 'bench-unwrap' });
      const parts: Uint8Array[] = [];
      for await (const c of run.ciphertext) parts.push(c);
      const { encryption } = run.result();
      ciphertexts.set(encryption, Buffer.concat(parts));
      return encryption;
    };
    const toFile = await encrypt(file.publicKey);
    const toToken = await encrypt(token.recipientKey);
    await unwrapOnce(token, toToken, 'bench-unwrap');
    const fileUs: number[] = [];
    const tokenUs: number[] = [];
    for (let r = 0; r < rounds; r++) {
      let t = process.hrtime.bigint();
      for (let i = 0; i < perRound; i++) await unwrapOnce(file.privateKey, toFile, 'bench-unwrap');
      fileUs.push(Number(process.hrtime.bigint() - t) / 1e3 / perRound);
      t = process.hrtime.bigint();
      for (let i = 0; i < perRound; i++) await unwrapOnce(token, toToken, 'bench-unwrap');
      tokenUs.push(Number(process.hrtime.bigint() - t) / 1e3 / perRound);
    }
    const baseline = 'rsa-oaep-sha256: file key, decryptPayload() of an empty payload';
    return [
      {
        benchmark: NAME,
        case: baseline,
        unit: 'µs/unwrap',
        median: median(fileUs),
        best: Math.min(...fileUs),
        rounds,
        status: 'baseline',
        note: `${perRound} unwraps per round`,
      },
      {
        benchmark: NAME,
        case: 'rsa-oaep-sha256: SoftHSM2 token, Pkcs11RecipientKey (raw RSA on the token, OAEP decoded here)',
        unit: 'µs/unwrap',
        median: median(tokenUs),
        best: Math.min(...tokenUs),
        rounds,
        ratio: median(tokenUs.map((t, i) => t / fileUs[i]!)),
        baseline,
        status: 'info',
      },
    ];
  } finally {
    token.close();
  }
}

async function* one(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  yield bytes;
}

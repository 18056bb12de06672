/*
 * Benchmark 2 — 2-of-3 manifest verification.
 *
 * A trust store of 3 keys with threshold 2 and a real signed envelope carrying 2 signatures.
 * Per operation:
 *   - ours: DefaultVerifier.verifyEnvelope(envelopeBytes, { now }) — decode, parse the
 *     manifest, verify the signatures, threshold, authorisation, signers, expiry, policy;
 *   - baseline: the two signature verifications alone over pre-computed PAE bytes with
 *     pre-imported keys (crypto.verify with KeyObjects; @noble's ml_dsa65.verify for ML-DSA).
 * Goal: Ed25519 ours/baseline <= 1.3. ECDSA P-256 and ML-DSA-65 are informational.
 * --quick: a tenth of the operations per round.
 */
import { createPublicKey, verify as nodeVerify, type KeyObject } from 'node:crypto';
import { ml_dsa65 } from '@noble/post-quantum/ml-dsa.js';
import { DefaultVerifier, type SignatureAlgorithm } from '../src/index.js';
import { makeSignedPatch, makeSigners, makeTrustStore } from './fixtures.js';
import { judge, timeInterleaved, type Row } from './harness.js';

const NAME = 'manifest-verify';
const GOAL = '<= 1.3';
const ROUNDS = 5;

interface AlgCase {
  alg: SignatureAlgorithm;
  label: string;
  iterations: number;
  goal: boolean;
}

const CASES: AlgCase[] = [
  { alg: 'ed25519', label: 'Ed25519', iterations: 2000, goal: true },
  { alg: 'ecdsa-p256-sha256', label: 'ECDSA P-256', iterations: 1000, goal: false },
  { alg: 'ml-dsa-65', label: 'ML-DSA-65', iterations: 200, goal: false },
];

function baselineVerifier(alg: SignatureAlgorithm, spki: Uint8Array, pem: string): (msg: Uint8Array, sig: Uint8Array) => boolean {
  switch (alg) {
    case 'ed25519': {
      const key: KeyObject = createPublicKey(pem);
      return (msg, sig) => nodeVerify(null, msg, key, sig);
    }
    case 'ecdsa-p256-sha256': {
      const key: KeyObject = createPublicKey(pem);
      return (msg, sig) => nodeVerify('sha256', msg, key, sig); // DER is node's default encoding
    }
    case 'ml-dsa-65': {
      // The raw key is the tail of the SPKI (the BIT STRING content).
      const raw = spki.slice(spki.length - ml_dsa65.lengths.publicKey!);
      return (msg, sig) => ml_dsa65.verify(sig, msg, raw);
    }
    default:
      throw new Error(`no baseline for ${alg}`);
  }
}

export async function run(options: { quick?: boolean } = {}): Promise<Row[]> {
  const rows: Row[] = [];
  for (const full of CASES) {
    const c: AlgCase = options.quick === true ? { ...full, iterations: full.iterations / 10 } : full;
    const signers = makeSigners(c.alg, 3);
    const { store } = makeTrustStore(signers, 2);
    const patch = makeSignedPatch({
      id: `bench-manifest-${c.alg}`,
      payloadSha256Hex: 'ab'.repeat(32),
      payloadSize: 48213,
      signedBy: signers.slice(0, 2),
    });
    const verifier = new DefaultVerifier(store);
    const now = Date.now();
    const bytes = patch.envelopeBytes;

    // Pre-imported keys and decoded signatures: the baseline does nothing but the crypto.
    const checks = patch.signatures.map((s) => {
      const signer = signers.find((x) => x.keyid === s.keyid)!;
      return { verify: baselineVerifier(c.alg, signer.publicKey.spki, signer.publicKey.toPem()), sig: s.sig };
    });
    const msg = patch.paeBytes;

    // Sanity: both sides accept before anything is timed.
    const verified = verifier.verifyEnvelope(bytes, { now });
    if (verified.signers.length !== 2) throw new Error(`${c.alg}: expected 2 counted signers, got ${verified.signers.length}`);
    for (const ch of checks) if (!ch.verify(msg, ch.sig)) throw new Error(`${c.alg}: baseline signature does not verify`);

    let sink = 0;
    const t = await timeInterleaved(
      {
        ours: () => {
          sink += verifier.verifyEnvelope(bytes, { now }).signers.length;
        },
        baseline: () => {
          if (checks[0]!.verify(msg, checks[0]!.sig) && checks[1]!.verify(msg, checks[1]!.sig)) sink += 2;
        },
      },
      { warmup: 1, rounds: ROUNDS, iterations: c.iterations },
    );
    if (sink !== 2 * 2 * (ROUNDS + 1) * c.iterations) throw new Error(`${c.alg}: a verification failed while timed`);

    const us = (ms: number): number => ms * 1000;
    const ratio = t.ours.medianMs / t.baseline.medianMs;
    const baselineName = `${c.label} 2× raw verify`;
    rows.push({
      benchmark: NAME,
      case: baselineName,
      unit: 'µs/op',
      median: us(t.baseline.medianMs),
      best: us(t.baseline.minMs),
      rounds: ROUNDS,
      status: 'baseline',
      note: `${c.iterations} ops per round, ${ROUNDS} rounds after 1 warm-up round`,
    });
    rows.push({
      benchmark: NAME,
      case: `${c.label} 2-of-3 verifyEnvelope`,
      unit: 'µs/op',
      median: us(t.ours.medianMs),
      best: us(t.ours.minMs),
      rounds: ROUNDS,
      ratio,
      baseline: baselineName,
      ...(c.goal ? { goal: GOAL, status: judge(ratio, GOAL) } : { status: 'info' as const }),
      note: `envelope ${bytes.length} bytes; overhead beyond the 2 verifications ${us(t.ours.medianMs - t.baseline.medianMs).toFixed(1)} µs/op`,
    });
  }
  return rows;
}

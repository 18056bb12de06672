/*
 * Benchmark 2 — 2-of-3 manifest verification.
 *
 * A trust store of 3 keys with threshold 2 and a real signed envelope carrying 2 signatures.
 * Per operation:
 *   - ours: DefaultVerifier.verifyEnvelope(envelopeBytes, { now }) — decode, parse the
 *     manifest, verify the signatures, threshold, authorisation, signers, expiry, policy;
 *   - baseline: the two signature verifications alone over pre-computed PAE bytes with
 *     pre-imported keys (crypto.verify with KeyObjects; @noble's ml_dsa65.verify for ML-DSA).
 * Timing: a warm-up of both (a minimum time and number of batches: until V8's optimising
 * compiler has reached the whole verification path, ours costs tens of µs more per call, and
 * on a loaded machine that takes a second or so), then ROUNDS rounds; a round times a batch
 * of each (a few milliseconds each), ours first in
 * even rounds and the baseline first in odd ones, so a burst of load from elsewhere on the
 * shared machine hits both alike. The ratio is the median over rounds of ours / baseline
 * within the round; the note adds the ratio of the medians and the same ratio in CPU time
 * (process.cpuUsage: what other processes cannot stretch).
 * Goal: Ed25519 ours/baseline <= 1.1. ECDSA P-256 and ML-DSA-65 are informational.
 * --quick: a fifth of the rounds and a shorter warm-up (a much shorter one measures start-up).
 */
import { createPublicKey, verify as nodeVerify, type KeyObject } from 'node:crypto';
import { ml_dsa65 } from '@noble/post-quantum/ml-dsa.js';
import { DefaultVerifier, type SignatureAlgorithm } from '../src/index.js';
import { makeSignedPatch, makeSigners, makeTrustStore } from './fixtures.js';
import { judge, median, type Row } from './harness.js';

const NAME = 'manifest-verify';
const GOAL = '<= 1.1';
const FULL = { rounds: 201, warmupMs: 1000, warmupPairs: 60 };
const QUICK = { rounds: 41, warmupMs: 600, warmupPairs: 40 };

interface AlgCase {
  alg: SignatureAlgorithm;
  label: string;
  /** Operations per timed batch: a few milliseconds' worth. */
  batch: number;
  goal: boolean;
}

const CASES: AlgCase[] = [
  { alg: 'ed25519', label: 'Ed25519', batch: 40, goal: true },
  { alg: 'ecdsa-p256-sha256', label: 'ECDSA P-256', batch: 50, goal: false },
  { alg: 'ml-dsa-65', label: 'ML-DSA-65', batch: 2, goal: false },
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

interface Batch {
  /** Wall time per operation, ms. */
  wallMs: number;
  /** CPU time (user + system, this process) per operation, ms. */
  cpuMs: number;
}

function timeBatch(op: () => void, n: number): Batch {
  const cpu = process.cpuUsage();
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) op();
  const wallNs = Number(process.hrtime.bigint() - start);
  const used = process.cpuUsage(cpu);
  return { wallMs: wallNs / 1e6 / n, cpuMs: (used.user + used.system) / 1000 / n };
}

export async function run(options: { quick?: boolean } = {}): Promise<Row[]> {
  const { rounds, warmupMs, warmupPairs } = options.quick === true ? QUICK : FULL;
  const rows: Row[] = [];
  for (const c of CASES) {
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
    let expectedSink = 0;
    const ours = (): void => {
      sink += verifier.verifyEnvelope(bytes, { now }).signers.length;
    };
    const baseline = (): void => {
      if (checks[0]!.verify(msg, checks[0]!.sig) && checks[1]!.verify(msg, checks[1]!.sig)) sink += 2;
    };

    // Warm-up: both, alternately, for at least warmupMs and warmupPairs batches each (on a
    // loaded machine the time alone may not be enough work to compile the whole path).
    const warmupEnd = process.hrtime.bigint() + BigInt(warmupMs) * 1_000_000n;
    for (let w = 0; w < warmupPairs || process.hrtime.bigint() < warmupEnd; w++) {
      timeBatch(ours, c.batch);
      timeBatch(baseline, c.batch);
      expectedSink += 4 * c.batch;
    }
    const o: Batch[] = [];
    const b: Batch[] = [];
    for (let r = 0; r < rounds; r++) {
      if (r % 2 === 0) {
        o.push(timeBatch(ours, c.batch));
        b.push(timeBatch(baseline, c.batch));
      } else {
        b.push(timeBatch(baseline, c.batch));
        o.push(timeBatch(ours, c.batch));
      }
      expectedSink += 4 * c.batch;
    }
    if (sink !== expectedSink) throw new Error(`${c.alg}: a verification failed while timed`);

    const us = (ms: number): number => ms * 1000;
    const wall = (xs: Batch[]): number[] => xs.map((x) => x.wallMs);
    const ratio = median(o.map((x, r) => x.wallMs / b[r]!.wallMs));
    const ratioOfMedians = median(wall(o)) / median(wall(b));
    const cpuRatio = median(o.map((x, r) => x.cpuMs / b[r]!.cpuMs));
    const baselineName = `${c.label} 2× raw verify`;
    rows.push({
      benchmark: NAME,
      case: baselineName,
      unit: 'µs/op',
      median: us(median(wall(b))),
      best: us(Math.min(...wall(b))),
      rounds,
      status: 'baseline',
      note: `${rounds} rounds of ${c.batch} ops each, alternating which goes first, after ≥ ${warmupMs} ms and ${warmupPairs} batches of warm-up; wall time`,
    });
    rows.push({
      benchmark: NAME,
      case: `${c.label} 2-of-3 verifyEnvelope`,
      unit: 'µs/op',
      median: us(median(wall(o))),
      best: us(Math.min(...wall(o))),
      rounds,
      ratio,
      baseline: baselineName,
      ...(c.goal ? { goal: GOAL, status: judge(ratio, GOAL) } : { status: 'info' as const }),
      note:
        `envelope ${bytes.length} bytes; ratio = median over rounds of ours / baseline in the round ` +
        `(ratio of the medians ${ratioOfMedians.toFixed(3)}×, in CPU time ${cpuRatio.toFixed(3)}×); ` +
        `overhead beyond the 2 verifications ${us(median(wall(o)) - median(wall(b))).toFixed(1)} µs/op`,
    });
  }
  return rows;
}

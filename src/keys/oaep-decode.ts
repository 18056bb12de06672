import { createHash, timingSafeEqual } from 'node:crypto';

const H_LEN = 32;
/** SHA-256 of the empty label. */
const EMPTY_LABEL_HASH = createHash('sha256').digest();

function mgf1Sha256(seed: Uint8Array, length: number): Buffer {
  const out = Buffer.alloc(Math.ceil(length / H_LEN) * H_LEN);
  const counter = Buffer.alloc(4);
  for (let i = 0; i * H_LEN < length; i++) {
    counter.writeUInt32BE(i);
    createHash('sha256')
      .update(seed)
      .update(counter)
      .digest()
      .copy(out, i * H_LEN);
  }
  return out.subarray(0, length);
}

/**
 * EME-OAEP decoding (RFC 8017 §7.1.2 step 3) with SHA-256, MGF1-SHA-256 and an empty label, of
 * `em`: a raw RSA decryption's output, `k` bytes (the modulus's size). For a token whose OAEP
 * mechanism lacks SHA-256 (SoftHSM2 offers SHA-1 only), the private-key step runs on the token
 * as raw RSA and only this unpadding here. One failure for every way it can fail, and every
 * check made whatever an earlier one found, so the failure says nothing about which (Manger's
 * attack needs that difference); `undefined` then.
 */
export function oaepDecodeSha256(em: Uint8Array, k: number): Uint8Array | undefined {
  if (k < 2 * H_LEN + 2 || em.length > k) return undefined;
  const block = Buffer.alloc(k);
  block.set(em, k - em.length); // a raw decryption may drop leading zero bytes
  const maskedSeed = block.subarray(1, 1 + H_LEN);
  const maskedDb = block.subarray(1 + H_LEN);
  const seed = Buffer.from(maskedSeed);
  const seedMask = mgf1Sha256(maskedDb, H_LEN);
  for (let i = 0; i < H_LEN; i++) seed[i]! ^= seedMask[i]!;
  const db = Buffer.from(maskedDb);
  const dbMask = mgf1Sha256(seed, db.length);
  for (let i = 0; i < db.length; i++) db[i]! ^= dbMask[i]!;
  let bad = block[0]! | (timingSafeEqual(db.subarray(0, H_LEN), EMPTY_LABEL_HASH) ? 0 : 1);
  // The message starts after the first 0x01 that follows the zero padding.
  let separator = 0;
  let inPadding = 1;
  for (let i = H_LEN; i < db.length; i++) {
    const b = db[i]!;
    const isOne = b === 1 ? 1 : 0;
    const isZero = b === 0 ? 1 : 0;
    separator |= inPadding & isOne ? i : 0;
    bad |= inPadding & (1 - isOne) & (1 - isZero);
    inPadding &= isZero;
  }
  bad |= inPadding; // no 0x01 at all
  const message = bad === 0 ? new Uint8Array(db.subarray(separator + 1)) : undefined;
  block.fill(0);
  seed.fill(0);
  db.fill(0);
  return message;
}

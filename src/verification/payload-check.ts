import { HotPatchError, type Manifest, type ManifestFacts } from '../core/index.js';
import { hashProvider, timingSafeEqualBytes } from '../crypto-agile/index.js';

/**
 * Streams a payload through size and hash checks. Throws at the first byte past
 * `payload_size`, so a caller that reads at most payload_size + 1 bytes never reads more.
 */
export async function checkPayloadStream(manifest: Manifest, facts: ManifestFacts, chunks: AsyncIterable<Uint8Array>): Promise<void> {
  const hasher = hashProvider(facts.hashAlgorithm).create();
  const expected = manifest.payload_size;
  let size = 0;
  for await (const chunk of chunks) {
    size += chunk.byteLength;
    if (size > expected) {
      throw new HotPatchError('SIZE_MISMATCH', `payload of ${manifest.id} is longer than payload_size ${expected} (read ${size} bytes and stopped)`, {
        detail: { expected, atLeast: size },
      });
    }
    hasher.update(chunk);
  }
  if (size !== expected) {
    throw new HotPatchError('SIZE_MISMATCH', `payload of ${manifest.id} is ${size} bytes, payload_size says ${expected} (${expected - size} missing)`, {
      detail: { expected, actual: size },
    });
  }
  const actual = hasher.digest();
  if (!timingSafeEqualBytes(actual, Buffer.from(facts.hashHex, 'hex'))) {
    const actualHex = Buffer.from(actual).toString('hex');
    throw new HotPatchError('HASH_MISMATCH', `payload of ${manifest.id}: its ${facts.hashAlgorithm} is ${actualHex}, the manifest says ${facts.hashHex}`, {
      detail: { algorithm: facts.hashAlgorithm, expected: facts.hashHex, actual: actualHex },
    });
  }
}

import { describe, emitRedactedWarning, HotPatchError, messageOf, type Manifest, type ManifestFacts } from '../core/index.js';
import { hashProvider, timingSafeEqualBytes, type Hasher } from '../crypto-agile/index.js';
import { DEFAULT_CHUNK_SIZE, raceAbort, throwIfAborted } from '../repo/index.js';

/*
 * The payload stream of staging: what is written is checked on the way — its chunks, its size
 * against the manifest's payload_size, its digest against the manifest — and can be aborted
 * while a slow producer is still delivering.
 */

export interface CheckedPayload {
  chunks: AsyncIterable<Uint8Array>;
  /** SHA-256 and size of what passed; only valid once `chunks` ended without an error. */
  result(): { sha256: string; size: number };
}

/**
 * Passes the payload through, copying, counting and hashing every chunk:
 * step 1 each chunk must be a Uint8Array (`INVALID`);
 * step 2 the running size may never exceed `payload_size` (`SIZE_MISMATCH`, reading stops, so
 *        an endless source costs at most payload_size bytes);
 * step 3 at the end the size must equal `payload_size` (`SIZE_MISMATCH`);
 * step 4 the manifest's digest must match, compared in constant time (`HASH_MISMATCH`).
 * The checks at the end run inside the stream, so the writer fails before it commits anything.
 *
 * Each chunk is copied before it is hashed: the bytes written are then the bytes hashed, even
 * if the producer reuses or changes its buffer while the write is in flight.
 */
export function checkedPayload(
  payload: Uint8Array | AsyncIterable<Uint8Array>,
  manifest: Manifest,
  facts: ManifestFacts,
  signal: AbortSignal | undefined,
): CheckedPayload {
  // Created up front: an algorithm that is not ours fails (ALGORITHM_DISALLOWED) before any I/O.
  const manifestHasher = hashProvider(facts.hashAlgorithm).create();
  // With a sha256 manifest the two digests are the same computation; do it once.
  const contentHasher: Hasher = facts.hashAlgorithm === 'sha256' ? manifestHasher : hashProvider('sha256').create();
  const expectedDigest = Buffer.from(facts.hashHex, 'hex');
  const expectedSize = manifest.payload_size;
  const what = `staging payload of patch ${manifest.id}`;
  let done: { sha256: string; size: number } | undefined;

  async function* pass(): AsyncGenerator<Uint8Array, void, undefined> {
    let size = 0;
    let index = 0;
    const source = payload instanceof Uint8Array ? sliceBytes(payload) : abortable(payload, signal, what);
    for await (const chunk of source) {
      // step 1
      if (!(chunk instanceof Uint8Array)) {
        throw new HotPatchError('INVALID', `payload chunk ${index} must be a Uint8Array, got ${describe(chunk)}`);
      }
      // step 2
      size += chunk.byteLength;
      if (size > expectedSize) {
        throw new HotPatchError(
          'SIZE_MISMATCH',
          `payload of patch ${manifest.id} is longer than payload_size ${expectedSize} (read ${size} bytes and stopped)`,
          {
            detail: { expected: expectedSize, atLeast: size },
          },
        );
      }
      const copy = new Uint8Array(chunk);
      manifestHasher.update(copy);
      if (contentHasher !== manifestHasher) contentHasher.update(copy);
      index += 1;
      yield copy;
    }
    // step 3
    if (size !== expectedSize) {
      throw new HotPatchError(
        'SIZE_MISMATCH',
        `payload of patch ${manifest.id} is ${size} bytes, payload_size says ${expectedSize} (${expectedSize - size} missing)`,
        {
          detail: { expected: expectedSize, actual: size },
        },
      );
    }
    // step 4
    const actual = manifestHasher.digest();
    if (!timingSafeEqualBytes(actual, expectedDigest)) {
      const actualHex = Buffer.from(actual).toString('hex');
      throw new HotPatchError('HASH_MISMATCH', `payload of patch ${manifest.id} has ${facts.hashAlgorithm} ${actualHex}, the manifest says ${facts.hashHex}`, {
        detail: { algorithm: facts.hashAlgorithm, expected: facts.hashHex, actual: actualHex },
      });
    }
    const sha256 = Buffer.from(contentHasher === manifestHasher ? actual : contentHasher.digest()).toString('hex');
    done = { sha256, size };
  }

  return {
    chunks: pass(),
    result() {
      if (done === undefined) throw new Error('checkedPayload: result() read before the payload was fully checked');
      return done;
    },
  };
}

/** Bytes in memory as bounded chunks, so the writer checks the abort signal between them. */
function* sliceBytes(bytes: Uint8Array): Generator<Uint8Array, void, undefined> {
  for (let offset = 0; offset < bytes.byteLength; offset += DEFAULT_CHUNK_SIZE) {
    yield bytes.subarray(offset, Math.min(offset + DEFAULT_CHUNK_SIZE, bytes.byteLength));
  }
}

/**
 * Iterates `source`, but an abort rejects a pending `next()` at once instead of waiting for a
 * slow (or stalled) producer to deliver its next chunk. When iteration ends early the source is
 * told to stop (`return()`), as `for await` would, so its file handles and sockets close.
 */
async function* abortable(source: AsyncIterable<Uint8Array>, signal: AbortSignal | undefined, what: string): AsyncGenerator<Uint8Array, void, undefined> {
  const iterator = source[Symbol.asyncIterator]();
  let exhausted = false;
  let pendingWhenStopped = false;
  try {
    for (;;) {
      throwIfAborted(signal, what);
      pendingWhenStopped = true;
      const step = signal === undefined ? await iterator.next() : await raceAbort(iterator.next(), signal, what);
      pendingWhenStopped = false;
      if (step.done === true) {
        exhausted = true;
        return;
      }
      yield step.value;
    }
  } finally {
    if (!exhausted && typeof iterator.return === 'function') {
      const stop = Promise.resolve().then(() => iterator.return?.());
      if (pendingWhenStopped) {
        // The producer is still inside next(): awaiting its return() could wait forever on a
        // stalled source. Let it finish on its own; a failure is still reported, as a warning,
        // because the primary error (ABORTED) has already been thrown to the caller.
        stop.catch((error: unknown) => {
          emitRedactedWarning(`payload source failed to stop after ${what} ended early: ${messageOf(error)}`, 'HotPatchWarning');
        });
      } else {
        await stop;
      }
    }
  }
}

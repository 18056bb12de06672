import { createHash, type Hash } from 'node:crypto';
import { HotPatchError } from '../core/index.js';
import type { HashAlgorithm } from './algorithms.js';
import { assertBytes, hashAlgorithmOf } from './assert.js';

/*
 * Hash providers behind one streaming interface, so payloads can be hashed while they are
 * read (the size cap is enforced by the reader, the digest by whoever compares it).
 */

export interface Hasher {
  update(chunk: Uint8Array): void;
  digest(): Uint8Array;
}

export interface HashProvider {
  readonly alg: HashAlgorithm;
  readonly digestLength: number;
  create(): Hasher;
}

/** node:crypto's names for our algorithms, and their output sizes in bytes. */
const NODE_HASHES: Readonly<Record<HashAlgorithm, { nodeName: string; digestLength: number }>> = {
  sha256: { nodeName: 'sha256', digestLength: 32 },
  sha384: { nodeName: 'sha384', digestLength: 48 },
  sha512: { nodeName: 'sha512', digestLength: 64 },
  'sha3-256': { nodeName: 'sha3-256', digestLength: 32 },
};

class NodeHasher implements Hasher {
  #hash: Hash | undefined;
  readonly #alg: HashAlgorithm;

  constructor(alg: HashAlgorithm, nodeName: string) {
    this.#alg = alg;
    this.#hash = createHash(nodeName);
  }

  update(chunk: Uint8Array): void {
    assertBytes(chunk, 'chunk');
    this.#live().update(chunk);
  }

  digest(): Uint8Array {
    const out = new Uint8Array(this.#live().digest());
    // A hasher is single use: a second digest() would otherwise throw node's own error, and
    // an update() after digest() must not look like it extended the hashed data.
    this.#hash = undefined;
    return out;
  }

  #live(): Hash {
    if (this.#hash === undefined) {
      throw new HotPatchError('INVALID', `this ${this.#alg} hasher was already finalised by digest()`);
    }
    return this.#hash;
  }
}

function makeProvider(alg: HashAlgorithm): HashProvider {
  const { nodeName, digestLength } = NODE_HASHES[alg];
  return Object.freeze({ alg, digestLength, create: (): Hasher => new NodeHasher(alg, nodeName) });
}

const PROVIDERS: Readonly<Record<HashAlgorithm, HashProvider>> = Object.freeze({
  sha256: makeProvider('sha256'),
  sha384: makeProvider('sha384'),
  sha512: makeProvider('sha512'),
  'sha3-256': makeProvider('sha3-256'),
});

export function hashProvider(alg: string): HashProvider {
  return PROVIDERS[hashAlgorithmOf(alg, 'alg')];
}

export function hashBytes(alg: HashAlgorithm, data: Uint8Array): Uint8Array {
  const provider = hashProvider(alg);
  assertBytes(data, 'data');
  const hasher = provider.create();
  hasher.update(data);
  return hasher.digest();
}

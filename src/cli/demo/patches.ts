/**
 * The payloads the demo publishes. Both are real ES modules; the faulty one returns a wrong
 * digest for about 2% of inputs — the kind of bug a canary must catch before it spreads.
 */
export const KNOWN_ANSWER = 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad';

export const GOOD_PATCH = `import { createHash } from 'node:crypto';
// 1.0.1: hashes with one reusable code path and checks its input type (the "fix").
export const api = {
  digest(data) {
    if (typeof data !== 'string') throw new TypeError('digest takes a string');
    return createHash('sha256').update(data, 'utf8').digest('hex');
  },
};
export function selfTest() {
  if (api.digest('abc') !== '${KNOWN_ANSWER}') throw new Error('known-answer test failed');
}
`;

export const FAULTY_PATCH = `import { createHash } from 'node:crypto';
// 1.0.2: a "faster" path with a bug: inputs whose first digest byte is below 5 come out wrong.
export const api = {
  digest(data) {
    const hex = createHash('sha256').update(data, 'utf8').digest('hex');
    return parseInt(hex.slice(0, 2), 16) < 5 ? '00' + hex.slice(2) : hex;
  },
};
export function selfTest() {
  if (api.digest('abc') !== '${KNOWN_ANSWER}') throw new Error('known-answer test failed');
}
`;

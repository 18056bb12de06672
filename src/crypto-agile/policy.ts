import { HotPatchError, asObject, describe, integerInRange, matchesTargetPattern, oneOf, parseTargetPattern, rejectUnknownFields } from '../core/index.js';
import { HASH_ALGORITHMS, SIGNATURE_ALGORITHMS, isHashAlgorithm, type HashAlgorithm, type SignatureAlgorithm } from './algorithms.js';
import { MAX_RSA_BITS, PublicKey } from './keys.js';

/*
 * Which algorithms each component accepts, changeable while the process runs: retiring an
 * algorithm (or raising the RSA floor) must not need a restart, and one component, say a
 * hash implementation, may demand more than the rest. Policy *configuration* errors are
 * INVALID; a key or hash the policy refuses is ALGORITHM_DISALLOWED.
 */

export interface AlgorithmRule {
  signatures?: SignatureAlgorithm[];
  hashes?: HashAlgorithm[];
  minRsaBits?: number;
}

export interface EffectiveRule {
  signatures: SignatureAlgorithm[];
  hashes: HashAlgorithm[];
  minRsaBits: number;
}

/** What a rule falls back to when the default itself leaves a field out. */
const BASELINE: Readonly<EffectiveRule> = Object.freeze({
  signatures: [...SIGNATURE_ALGORITHMS],
  hashes: [...HASH_ALGORITHMS],
  minRsaBits: 2048,
});

/** A floor below 1024 bits is no floor; above MAX_RSA_BITS no key could be imported at all. */
const MIN_RSA_BITS_FLOOR = 1024;

const RULE_FIELDS = new Set(['signatures', 'hashes', 'minRsaBits']);
const OPTION_FIELDS = new Set(['defaults', 'components']);

export class CryptoPolicy {
  #defaults: EffectiveRule;
  /** A Map, not an object: component names such as `__proto__` are valid patterns. */
  readonly #components = new Map<string, AlgorithmRule>();

  constructor(options: { defaults?: AlgorithmRule; components?: Record<string, AlgorithmRule> } = {}) {
    const parsed = parseOptions(options, 'options');
    this.#defaults = complete(parsed.defaults, BASELINE);
    for (const [component, rule] of parsed.components) this.#components.set(component, rule);
  }

  /** Replaces the default; fields the rule leaves out take the built-in baseline. */
  setDefault(rule: AlgorithmRule): void {
    this.#defaults = complete(parseRule(rule, 'rule'), BASELINE);
  }

  /** Sets the rule of a target name or glob; fields the rule leaves out follow the default, even as it changes. */
  set(component: string, rule: AlgorithmRule): void {
    const name = parseTargetPattern(component, 'component');
    this.#components.set(name, parseRule(rule, 'rule'));
  }

  delete(component: string): boolean {
    return this.#components.delete(parseTargetPattern(component, 'component'));
  }

  ruleFor(component: string): EffectiveRule {
    const name = parseTargetPattern(component, 'component');
    return complete(this.#lookup(name) ?? {}, this.#defaults);
  }

  assertSignatureAllowed(component: string, key: PublicKey): void {
    if (!(key instanceof PublicKey)) {
      throw new HotPatchError('INVALID', `key must be a PublicKey, got ${describe(key)}`);
    }
    const rule = this.ruleFor(component);
    if (!rule.signatures.includes(key.alg)) {
      throw new HotPatchError(
        'ALGORITHM_DISALLOWED',
        `signature algorithm ${key.alg} is not allowed for ${component} (allowed: ${listOrNone(rule.signatures)})`,
        { detail: { component, alg: key.alg, allowed: rule.signatures, fingerprint: key.fingerprint } },
      );
    }
    if (key.alg === 'rsa-pss-sha256') {
      const bits = key.bits ?? 0;
      if (bits < rule.minRsaBits) {
        throw new HotPatchError('ALGORITHM_DISALLOWED', `${bits}-bit RSA key is below the ${rule.minRsaBits}-bit minimum for ${component}`, {
          detail: { component, alg: key.alg, bits, minRsaBits: rule.minRsaBits, fingerprint: key.fingerprint },
        });
      }
    }
  }

  assertHashAllowed(component: string, alg: string): void {
    const rule = this.ruleFor(component);
    if (!isHashAlgorithm(alg)) {
      throw new HotPatchError('ALGORITHM_DISALLOWED', `hash algorithm ${describe(alg)} is unknown (known: ${HASH_ALGORITHMS.join(', ')})`, {
        detail: { component, alg: typeof alg === 'string' ? alg : null },
      });
    }
    if (!rule.hashes.includes(alg)) {
      throw new HotPatchError('ALGORITHM_DISALLOWED', `hash algorithm ${alg} is not allowed for ${component} (allowed: ${listOrNone(rule.hashes)})`, {
        detail: { component, alg, allowed: rule.hashes },
      });
    }
  }

  toJSON(): { defaults: EffectiveRule; components: Record<string, AlgorithmRule> } {
    const names = [...this.#components.keys()].sort(compareCodePoints);
    return {
      defaults: complete({}, this.#defaults),
      // fromEntries defines own properties, so a component named `__proto__` stays data.
      components: Object.fromEntries(names.map((n) => [n, copyRule(this.#components.get(n)!)])),
    };
  }

  /** Strict inverse of toJSON: unknown fields or algorithms are INVALID, never ignored. */
  static fromJSON(value: unknown): CryptoPolicy {
    const parsed = parseOptions(value, 'policy');
    const policy = new CryptoPolicy({ defaults: parsed.defaults });
    for (const [component, rule] of parsed.components) policy.#components.set(component, rule);
    return policy;
  }

  /**
   * The rule of `name`: its exact entry, else the most specific matching glob. Specific means
   * longest; among equally long globs the one with fewer `*` (more literal text), then the
   * first in code-point order, so the answer never depends on insertion order.
   */
  #lookup(name: string): AlgorithmRule | undefined {
    const exact = this.#components.get(name);
    if (exact !== undefined) return exact;
    let best: string | undefined;
    for (const pattern of this.#components.keys()) {
      if (!pattern.includes('*') || !matchesTargetPattern(pattern, name)) continue;
      if (best === undefined || moreSpecific(pattern, best)) best = pattern;
    }
    return best === undefined ? undefined : this.#components.get(best);
  }
}

/** All four signature algorithms, all four hashes, RSA from 2048 bits. Shared and mutable at runtime. */
export const defaultCryptoPolicy: CryptoPolicy = new CryptoPolicy();

function moreSpecific(a: string, b: string): boolean {
  if (a.length !== b.length) return a.length > b.length;
  const starsA = countStars(a);
  const starsB = countStars(b);
  if (starsA !== starsB) return starsA < starsB;
  return compareCodePoints(a, b) < 0;
}

function countStars(pattern: string): number {
  let n = 0;
  for (const ch of pattern) if (ch === '*') n++;
  return n;
}

function compareCodePoints(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function complete(rule: AlgorithmRule, base: Readonly<EffectiveRule>): EffectiveRule {
  return {
    signatures: [...(rule.signatures ?? base.signatures)],
    hashes: [...(rule.hashes ?? base.hashes)],
    minRsaBits: rule.minRsaBits ?? base.minRsaBits,
  };
}

function copyRule(rule: AlgorithmRule): AlgorithmRule {
  const out: AlgorithmRule = {};
  if (rule.signatures !== undefined) out.signatures = [...rule.signatures];
  if (rule.hashes !== undefined) out.hashes = [...rule.hashes];
  if (rule.minRsaBits !== undefined) out.minRsaBits = rule.minRsaBits;
  return out;
}

function listOrNone(values: readonly string[]): string {
  return values.length === 0 ? 'none' : values.join(', ');
}

function parseOptions(value: unknown, field: string): { defaults: AlgorithmRule; components: Array<[string, AlgorithmRule]> } {
  const obj = asObject(value, field);
  rejectUnknownFields(obj, OPTION_FIELDS, field);
  const defaults = obj['defaults'] === undefined ? {} : parseRule(obj['defaults'], `${field}.defaults`);
  const components: Array<[string, AlgorithmRule]> = [];
  if (obj['components'] !== undefined) {
    for (const [name, rule] of Object.entries(asObject(obj['components'], `${field}.components`))) {
      const where = `${field}.components[${JSON.stringify(name)}]`;
      components.push([parseTargetPattern(name, `${field}.components key`), parseRule(rule, where)]);
    }
  }
  return { defaults, components };
}

/** A validated copy holding only the fields given (so inheritance still works). */
function parseRule(value: unknown, field: string): AlgorithmRule {
  const obj = asObject(value, field);
  rejectUnknownFields(obj, RULE_FIELDS, field);
  const out: AlgorithmRule = {};
  if (obj['signatures'] !== undefined) out.signatures = parseList(obj['signatures'], `${field}.signatures`, SIGNATURE_ALGORITHMS);
  if (obj['hashes'] !== undefined) out.hashes = parseList(obj['hashes'], `${field}.hashes`, HASH_ALGORITHMS);
  if (obj['minRsaBits'] !== undefined) out.minRsaBits = integerInRange(obj['minRsaBits'], `${field}.minRsaBits`, MIN_RSA_BITS_FLOOR, MAX_RSA_BITS);
  return out;
}

function parseList<T extends string>(value: unknown, field: string, known: readonly T[]): T[] {
  if (!Array.isArray(value)) throw new HotPatchError('INVALID', `${field} must be an array, got ${describe(value)}`);
  const out: T[] = [];
  value.forEach((item: unknown, i) => {
    const name = oneOf(item, known, `${field}[${i}]`);
    // An empty list is allowed (it switches the component off); duplicates are harmless.
    if (!out.includes(name)) out.push(name);
  });
  return out;
}

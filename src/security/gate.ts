import semver from 'semver';
import {
  HotPatchError,
  decodeJson,
  matchesTargetPattern,
  parseTargetName,
  parseTargetPattern,
  type SecurityContext,
  type SecurityPolicy,
  type VerifiedManifest,
} from '../core/index.js';
import { hostPlatform, normalizePlatform } from './platform.js';
import { parseKeyId, parsePolicyConfig, parseRange, parseVersion, type NormalizedPolicyConfig, type SecurityPolicyConfig } from './policy-config.js';
import { readPolicyFile } from './policy-file.js';

/**
 * Range matching used everywhere in the gate: `semver.satisfies` with
 * `includePrerelease: false` (semver's default). A prerelease version therefore satisfies a
 * range only when the range names a prerelease of the same major.minor.patch tuple:
 * `1.3.0-beta.1` does NOT satisfy `>=1.0.0`, but does satisfy `>=1.3.0-0`. A patch that
 * should be allowed as a prerelease must be admitted by a range that says so.
 */
const RANGE_OPTIONS = { includePrerelease: false } as const;

function rangeSatisfied(version: string, range: string): boolean {
  return semver.valid(version) !== null && semver.satisfies(version, range, RANGE_OPTIONS);
}

/**
 * The security gate: pure policy checks on a manifest that already passed verification
 * (signatures, threshold, hash, expiry are the verifier's). No I/O except `fromFile`.
 *
 * `check` runs these steps in this fixed order and throws the first failure, a
 * `HotPatchError` whose `detail` carries the figures:
 *  1. components: deny list, then allow list (deny wins) for `manifest.target` → POLICY_DENIED
 *  2. signers: a denied counted signer → POLICY_DENIED; with a non-empty allow list, the
 *     counted signers that are allowed must meet the threshold on their own → POLICY_DENIED
 *  3. `requireExpiry` and no `expires` → POLICY_DENIED
 *  4. `payload_size` above `maxPayloadBytes` → TOO_LARGE
 *  5. the target's version requirement (`setRequirement`) → REQUIREMENT_UNSATISFIED
 *  6. `constraints.platforms`, `min_platform`, `constraints.node` vs the host → PLATFORM_MISMATCH
 *  7. `constraints.requires` vs the running component versions → REQUIREMENT_UNSATISFIED
 *
 * The policy can be changed while the process runs: every mutator takes effect for the
 * next `check`, which reads the current state. Lists only grow through the mutators; to
 * loosen a policy, build a new gate.
 */
export class SecurityGate implements SecurityPolicy {
  readonly #policy: NormalizedPolicyConfig;

  /** Checks `config` as strictly as `fromJSON` (INVALID naming the field). */
  constructor(config: SecurityPolicyConfig = {}) {
    this.#policy = parsePolicyConfig(config);
  }

  /** A gate from a decoded policy document; unknown fields, wrong types, bad ranges/patterns → INVALID. */
  static fromJSON(value: unknown): SecurityGate {
    return new SecurityGate(value as SecurityPolicyConfig);
  }

  /**
   * Reads a policy file (at most 1 MiB → TOO_LARGE), decodes it (PARSE) and checks it
   * (INVALID). A missing file → NOT_FOUND; any other read failure → IO.
   */
  static async fromFile(path: string): Promise<SecurityGate> {
    const value = decodeJson(await readPolicyFile(path), `policy file ${path}`);
    try {
      return SecurityGate.fromJSON(value);
    } catch (error) {
      if (error instanceof HotPatchError) {
        throw new HotPatchError(error.code, `policy file ${path}: ${error.message}`, { cause: error, detail: { path } });
      }
      throw error;
    }
  }

  allowSigner(keyid: string): void {
    addUnique(this.#policy.signers.allow, parseKeyId(keyid, 'keyid'));
  }

  denySigner(keyid: string): void {
    addUnique(this.#policy.signers.deny, parseKeyId(keyid, 'keyid'));
  }

  allowComponent(pattern: string): void {
    addUnique(this.#policy.components.allow, parseTargetPattern(pattern, 'pattern'));
  }

  denyComponent(pattern: string): void {
    addUnique(this.#policy.components.deny, parseTargetPattern(pattern, 'pattern'));
  }

  /** Patches for `component` (an exact target name) must have a version in `range`; replaces any earlier range. */
  setRequirement(component: string, range: string): void {
    const name = parseTargetName(component, 'component');
    this.#policy.requirements.set(name, parseRange(range, `range for ${name}`));
  }

  /**
   * Whether `version` meets the requirement set for `component`. A string that is not a
   * semver version satisfies nothing (false); otherwise no requirement → true. Prereleases
   * follow `includePrerelease: false` (see RANGE_OPTIONS).
   */
  satisfies(component: string, version: string): boolean {
    if (typeof version !== 'string' || semver.valid(version) === null) return false;
    const range = this.#policy.requirements.get(component);
    return range === undefined || rangeSatisfied(version, range);
  }

  /** Records the version of `component` running now, for manifests' `constraints.requires`. */
  setComponentVersion(component: string, version: string): void {
    const name = parseTargetName(component, 'component');
    this.#policy.versions.set(name, parseVersion(version, `version of ${name}`));
  }

  check(verified: VerifiedManifest, context: SecurityContext = {}): void {
    const { manifest } = verified;
    const policy = this.#policy;
    const target = manifest.target;

    // step 1: component deny list, then allow list — deny wins.
    const deniedBy = policy.components.deny.find((p) => matchesTargetPattern(p, target));
    if (deniedBy !== undefined) {
      throw new HotPatchError('POLICY_DENIED', `target ${target} is denied by pattern ${deniedBy}`, {
        detail: { rule: 'components.deny', target, pattern: deniedBy },
      });
    }
    if (policy.components.allow.length > 0 && !policy.components.allow.some((p) => matchesTargetPattern(p, target))) {
      throw new HotPatchError('POLICY_DENIED', `target ${target} is not allowed by policy (allow list: ${policy.components.allow.join(', ')})`, {
        detail: { rule: 'components.allow', target, allow: [...policy.components.allow] },
      });
    }

    // step 2: every signer that counted is checked; a denied one refuses the patch, and with
    // an allow list the allowed signers alone must carry the threshold.
    const counted = [...new Set(verified.signers)];
    const deniedSigner = counted.find((k) => policy.signers.deny.includes(k));
    if (deniedSigner !== undefined) {
      throw new HotPatchError('POLICY_DENIED', `signer ${deniedSigner} is denied by policy`, {
        detail: { rule: 'signers.deny', signer: deniedSigner, signers: counted },
      });
    }
    if (policy.signers.allow.length > 0) {
      const allowed = counted.filter((k) => policy.signers.allow.includes(k));
      // A threshold below 1 never lets an allow list pass with no allowed signer at all.
      const required = Math.max(1, verified.threshold);
      if (allowed.length < required) {
        throw new HotPatchError(
          'POLICY_DENIED',
          `${allowed.length} of ${required} required signers allowed by policy` +
            ` (counted: ${counted.join(', ') || 'none'}; allowed: ${allowed.join(', ') || 'none'})`,
          { detail: { rule: 'signers.allow', allowed: allowed.length, required, signers: counted, allowedSigners: allowed } },
        );
      }
    }

    // step 3: expiry required by policy (freeze attacks: a patch without expiry is valid forever).
    if (policy.requireExpiry && manifest.expires === undefined) {
      throw new HotPatchError('POLICY_DENIED', `manifest ${manifest.id} has no expires, which the policy requires`, {
        detail: { rule: 'requireExpiry', id: manifest.id },
      });
    }

    // step 4: payload size bound.
    if (manifest.payload_size > policy.maxPayloadBytes) {
      throw new HotPatchError('TOO_LARGE', `payload_size ${manifest.payload_size} exceeds the policy maximum ${policy.maxPayloadBytes}`, {
        detail: { payloadSize: manifest.payload_size, maxPayloadBytes: policy.maxPayloadBytes },
      });
    }

    // step 5: the target's version requirement.
    const range = policy.requirements.get(target);
    if (range !== undefined && !rangeSatisfied(manifest.version, range)) {
      throw new HotPatchError('REQUIREMENT_UNSATISFIED', `version ${manifest.version} of ${target} does not satisfy the required range ${range}`, {
        detail: { target, version: manifest.version, range },
      });
    }

    // step 6: platform constraints against the host (or the host named in `context`).
    const platform = context.platform ?? hostPlatform();
    const constraints = manifest.constraints;
    if (constraints?.platforms !== undefined && !constraints.platforms.some((p) => platformMatches(p, platform))) {
      throw new HotPatchError(
        'PLATFORM_MISMATCH',
        `platform ${platform} is not among the manifest's platforms (${constraints.platforms.join(', ') || 'none'})`,
        { detail: { platform, platforms: [...constraints.platforms] } },
      );
    }
    if (manifest.min_platform !== undefined && !platformMatches(manifest.min_platform, platform)) {
      throw new HotPatchError('PLATFORM_MISMATCH', `min_platform ${manifest.min_platform} does not match platform ${platform}`, {
        detail: { platform, minPlatform: manifest.min_platform },
      });
    }
    if (constraints?.node !== undefined) {
      const nodeVersion = context.nodeVersion ?? process.versions.node;
      if (!rangeSatisfied(nodeVersion, constraints.node)) {
        throw new HotPatchError('PLATFORM_MISMATCH', `Node.js ${nodeVersion} does not satisfy the manifest's constraints.node ${constraints.node}`, {
          detail: { nodeVersion, range: constraints.node },
        });
      }
    }

    // step 7: components the patch requires, against what is running now.
    for (const [component, wanted] of Object.entries(constraints?.requires ?? {})) {
      const running = policy.versions.get(component);
      if (running === undefined) {
        throw new HotPatchError('REQUIREMENT_UNSATISFIED', `requires ${component} ${wanted} but no version of it is running`, {
          detail: { component, range: wanted, running: null },
        });
      }
      if (!rangeSatisfied(running, wanted)) {
        throw new HotPatchError('REQUIREMENT_UNSATISFIED', `requires ${component} ${wanted} but ${running} is running`, {
          detail: { component, range: wanted, running },
        });
      }
    }
  }

  /** The current policy in the file format, every field present; `fromJSON(gate.toJSON())` is an equal gate. */
  toJSON(): SecurityPolicyConfig {
    const p = this.#policy;
    return {
      signers: { allow: [...p.signers.allow], deny: [...p.signers.deny] },
      components: { allow: [...p.components.allow], deny: [...p.components.deny] },
      requirements: Object.fromEntries(p.requirements),
      versions: Object.fromEntries(p.versions),
      maxPayloadBytes: p.maxPayloadBytes,
      requireExpiry: p.requireExpiry,
    };
  }
}

/**
 * `want` (a manifest's platform entry or `min_platform`) matches the host when the OS parts
 * are equal and, if `want` names an architecture, the architectures are too, after mapping
 * uname spellings to Node's (x86_64 → x64, aarch64 → arm64).
 */
function platformMatches(want: string, host: string): boolean {
  const w = normalizePlatform(want);
  const h = normalizePlatform(host);
  return w.os === h.os && (w.arch === undefined || w.arch === h.arch);
}

function addUnique(list: string[], item: string): void {
  if (!list.includes(item)) list.push(item);
}

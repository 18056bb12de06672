import semver from 'semver';
import { HotPatchError } from './errors.js';
import { parsePatchId, type PatchId } from './patch-id.js';
import { parseManifestEncryption, type ManifestEncryption } from './manifest-encryption.js';
import { parseRfc3339 } from './rfc3339.js';
import { MAX_JSON_STRING, asObject, boundedString, canonicalVersion, decodeJson, describe, oneOf, rejectUnknownFields } from './json-shape.js';

export const PAYLOAD_TYPES = ['esm', 'wasm', 'native'] as const;
export type PayloadType = (typeof PAYLOAD_TYPES)[number];

export interface ManifestConstraints {
  /** `${process.platform}-${process.arch}` values, e.g. "linux-x64". */
  platforms?: string[];
  /** A semver range the running Node.js version must satisfy. */
  node?: string;
  /** Component name → semver range its running version must satisfy. */
  requires?: Record<string, string>;
}

export interface Manifest {
  id: PatchId;
  target: string;
  version: string;
  created_at: string;
  expires?: string;
  signers: string[];
  /** Normalised to `alg:lowercase-hex`. */
  payload_hash: string;
  payload_size: number;
  payload_type: PayloadType;
  min_platform?: string;
  constraints?: ManifestConstraints;
  metadata?: Record<string, string>;
  /** Present when the payload file is encrypted (core/manifest-encryption.ts). */
  encryption?: ManifestEncryption;
}

/** Parsed companions of a manifest's string fields, so callers never re-parse them. */
export interface ManifestFacts {
  createdAtMs: number;
  expiresMs: number | undefined;
  hashAlgorithm: string;
  hashHex: string;
}

export interface ParsedManifest {
  manifest: Manifest;
  facts: ManifestFacts;
}

const MANIFEST_FIELDS = new Set([
  'id',
  'target',
  'version',
  'created_at',
  'expires',
  'signers',
  'payload_hash',
  'payload_size',
  'payload_type',
  'min_platform',
  'constraints',
  'metadata',
  'encryption',
]);
const CONSTRAINT_FIELDS = new Set(['platforms', 'node', 'requires']);

/** Target names are dotted identifiers: `xps.crypto.hash.sha256`. */
const TARGET_PATTERN = /^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*$/;
const MAX_TARGET_LENGTH = 256;
const PAYLOAD_HASH_PATTERN = /^([A-Za-z0-9-]{1,32}):([0-9A-Fa-f]+)$/;
const MAX_SIGNERS = 64;

export function isTargetName(value: unknown): value is string {
  return typeof value === 'string' && value.length <= MAX_TARGET_LENGTH && TARGET_PATTERN.test(value);
}

export function parseTargetName(value: unknown, field = 'target'): string {
  if (!isTargetName(value)) {
    throw new HotPatchError(
      'INVALID',
      `${field} must be a dotted name of [A-Za-z0-9_-] segments (at most ${MAX_TARGET_LENGTH} characters), got ${describe(value)}`,
    );
  }
  return value;
}

/** Manifest bytes (UTF-8 JSON) or an already-decoded value → a strictly checked manifest. */
export function parseManifest(input: Uint8Array | string | unknown): ParsedManifest {
  const value = input instanceof Uint8Array || typeof input === 'string' ? decodeJson(input, 'manifest') : input;
  return validateManifest(value);
}

function validateManifest(value: unknown): ParsedManifest {
  const obj = asObject(value, 'manifest');
  rejectUnknownFields(obj, MANIFEST_FIELDS, 'manifest');

  const id = parsePatchId(required(obj, 'id'), 'manifest id');
  const target = parseTargetName(required(obj, 'target'), 'manifest target');
  const version = canonicalVersion(required(obj, 'version'), 'manifest version');
  const createdAt = required(obj, 'created_at') as string;
  const createdAtMs = parseRfc3339(createdAt, 'manifest created_at');
  let expiresMs: number | undefined;
  if (obj.expires !== undefined) {
    expiresMs = parseRfc3339(obj.expires, 'manifest expires');
    if (expiresMs <= createdAtMs) {
      throw new HotPatchError('INVALID', `manifest expires (${String(obj.expires)}) is not after created_at (${createdAt})`);
    }
  }
  const signers = obj.signers === undefined ? [] : stringArray(obj.signers, 'manifest signers', MAX_SIGNERS);
  if (new Set(signers).size !== signers.length) {
    throw new HotPatchError('INVALID', 'manifest signers lists a key id more than once');
  }

  const rawHash = required(obj, 'payload_hash');
  const hashMatch = typeof rawHash === 'string' ? PAYLOAD_HASH_PATTERN.exec(rawHash) : null;
  if (hashMatch === null || hashMatch[2]!.length % 2 !== 0 || hashMatch[2]!.length > 256) {
    throw new HotPatchError('INVALID', `manifest payload_hash must be "alg:hex" with an even, non-empty hex digest, got ${describe(rawHash)}`);
  }
  const hashAlgorithm = hashMatch[1]!.toLowerCase();
  const hashHex = hashMatch[2]!.toLowerCase();

  const size = required(obj, 'payload_size');
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    throw new HotPatchError('INVALID', `manifest payload_size must be a non-negative integer, got ${describe(size)}`);
  }
  const type = oneOf(required(obj, 'payload_type'), PAYLOAD_TYPES, 'manifest payload_type');

  const manifest: Manifest = {
    id,
    target,
    version,
    created_at: createdAt,
    signers,
    payload_hash: `${hashAlgorithm}:${hashHex}`,
    payload_size: size,
    payload_type: type,
  };
  if (obj.expires !== undefined) manifest.expires = obj.expires as string;
  if (obj.min_platform !== undefined) manifest.min_platform = boundedString(obj.min_platform, 'manifest min_platform');
  if (obj.constraints !== undefined) manifest.constraints = parseConstraints(obj.constraints);
  if (obj.metadata !== undefined) manifest.metadata = stringRecord(obj.metadata, 'manifest metadata');
  if (obj.encryption !== undefined) manifest.encryption = parseManifestEncryption(obj.encryption, size);

  return { manifest, facts: { createdAtMs, expiresMs, hashAlgorithm, hashHex } };
}

function parseConstraints(value: unknown): ManifestConstraints {
  const obj = asObject(value, 'manifest constraints');
  rejectUnknownFields(obj, CONSTRAINT_FIELDS, 'manifest constraints');
  const out: ManifestConstraints = {};
  if (obj.platforms !== undefined) out.platforms = stringArray(obj.platforms, 'constraints.platforms', 64);
  if (obj.node !== undefined) out.node = semverRange(obj.node, 'constraints.node');
  if (obj.requires !== undefined) {
    const requires = stringRecord(obj.requires, 'constraints.requires');
    for (const [component, range] of Object.entries(requires)) {
      parseTargetName(component, 'constraints.requires component');
      semverRange(range, `constraints.requires[${component}]`);
    }
    out.requires = requires;
  }
  return out;
}

function semverRange(value: unknown, field: string): string {
  const s = boundedString(value, field);
  if (semver.validRange(s) === null) {
    throw new HotPatchError('INVALID', `${field} must be a semver range, got ${describe(value)}`);
  }
  return s;
}

function required(obj: Record<string, unknown>, key: string): unknown {
  if (!Object.prototype.hasOwnProperty.call(obj, key) || obj[key] === undefined || obj[key] === null) {
    throw new HotPatchError('INVALID', `manifest is missing required field ${JSON.stringify(key)}`);
  }
  return obj[key];
}

function stringArray(value: unknown, field: string, max: number): string[] {
  if (!Array.isArray(value) || value.length > max) {
    throw new HotPatchError('INVALID', `${field} must be an array of at most ${max} strings, got ${describe(value)}`);
  }
  return value.map((item, i) => boundedString(item, `${field}[${i}]`));
}

function stringRecord(value: unknown, field: string): Record<string, string> {
  const obj = asObject(value, field);
  const out: Record<string, string> = {};
  const entries = Object.entries(obj);
  if (entries.length > 256) throw new HotPatchError('INVALID', `${field} has more than 256 entries`);
  for (const [k, v] of entries) {
    if (typeof v !== 'string' || v.length > MAX_JSON_STRING) {
      throw new HotPatchError('INVALID', `${field}[${JSON.stringify(k)}] must be a string of at most ${MAX_JSON_STRING} characters, got ${describe(v)}`);
    }
    out[k] = v;
  }
  return out;
}

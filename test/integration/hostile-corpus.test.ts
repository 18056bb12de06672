/*
 * A corpus of hostile inputs, each run through the library (FileSystemRepository +
 * DefaultVerifier + SecurityGate, in-process) and through the real `hotpatch` binary. For
 * every case: the exact error code on both paths, the CLI exit status (2 usage / bad
 * operator file, 1 patch rejected, 3 operational), and not one byte, name or mtime changed
 * under the case directory (the repository, and any file outside it that a link points to).
 */
import assert from 'node:assert/strict';
import { constants as cryptoConstants, createPrivateKey, generateKeyPairSync, sign as nodeSign } from 'node:crypto';
import { closeSync, constants as fsConstants, openSync } from 'node:fs';
import { mkdir, open, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { HotPatchError, MANIFEST_PAYLOAD_TYPE, decodeJson, pae, type ErrorCode, type VerificationContext } from '../../src/core/index.js';
import { CryptoPolicy, generateKeyPair, hashBytes, sign } from '../../src/crypto-agile/index.js';
import { FileSystemRepository, readFileBounded } from '../../src/repo/index.js';
import { SecurityGate } from '../../src/security/index.js';
import { DefaultVerifier, parseTrustStore, verifyPatch } from '../../src/verification/index.js';
import {
  DAY,
  HOUR,
  PAYLOAD,
  TARGET,
  assertCliOutcome,
  assertUntouched,
  baseManifest,
  iso,
  makeTempRoot,
  mkfifo,
  nonCanonicalBase64,
  runHotpatch,
  runHotpatchInProcess,
  sha256Hex,
  signerOf,
  snapshotTree,
  utf8,
  writePatch,
  type Signer,
} from './fixtures/helpers.js';
import { bytesReadDuring } from '../support/io.js';
import { settlesWithin, withDeadline } from '../support/wait.js';

// --- keys, generated once --------------------------------------------------------------

const K1 = generateKeyPair('ed25519');
const K2 = generateKeyPair('ecdsa-p256-sha256');
const K3 = generateKeyPair('ed25519');
const K4 = generateKeyPair('ed25519');
const STRANGER = generateKeyPair('ed25519');
// Below the default 2048-bit policy floor; crypto-agile refuses to generate it, node does not.
const WEAK_RSA = generateKeyPairSync('rsa', { modulusLength: 1024 });

const s1 = signerOf('k1', K1.privateKey);
const s2 = signerOf('k2', K2.privateKey);
const s3 = signerOf('k3', K3.privateKey);
const s4 = signerOf('k4', K4.privateKey);
const TWO_OF_THREE: Signer[] = [s1, s2];

const OTHER_TYPE = 'application/vnd.in-toto+json';
const MIB = 1024 * 1024;

type TrustKeys = Record<string, { alg: string; public_key: string; targets?: string[] }>;

function trustKeys(): TrustKeys {
  return {
    k1: { alg: 'ed25519', public_key: K1.publicKey.toPem() },
    k2: { alg: 'ecdsa-p256-sha256', public_key: K2.publicKey.toPem() },
    k3: { alg: 'ed25519', public_key: K3.publicKey.toPem() },
  };
}

/** The store every case uses unless it brings its own: k1 (Ed25519), k2 (P-256), k3 (Ed25519), 2 of 3. */
function baseTrust(): Record<string, unknown> {
  return { keys: trustKeys(), threshold: 2 };
}

// --- the case table --------------------------------------------------------------------

interface Env {
  /** Everything of the case lives here; the whole tree is snapshotted. */
  dir: string;
  repo: string;
  /** A directory outside the repository root (targets of links, traversal decoys). */
  outside: string;
}

interface CaseRun {
  /** The id handed to verifyPatch and to `--id`. */
  id: string;
  /** Trust store document or raw text (default baseTrust()). */
  trust?: unknown;
  /** Use this file as the trust store instead (e.g. a FIFO). */
  trustPath?: string;
  /** Policy document or raw text, written to policy.json and passed as --policy. */
  policy?: unknown;
  policyPath?: string;
  /** state.json content under state/, passed as --state. */
  state?: unknown;
  /** Library only: changes the verifier's CryptoPolicy after a first, passing verification. */
  adjustPolicy?: (policy: CryptoPolicy) => void;
  /** The CLI cannot receive this argv through exec (NUL): run its entry point in-process. */
  inProcessCli?: boolean;
}

interface HostileCase {
  name: string;
  setup: (env: Env) => Promise<CaseRun>;
  /** The library's HotPatchError code, or OK for a positive control. */
  expectCode: ErrorCode | 'OK';
  /** Expected exit status of `hotpatch verify --json`. */
  cliExit: 0 | 1 | 2 | 3;
  /** The CLI's `code` when it differs from the library's. */
  cliCode?: ErrorCode | 'OK';
  /** The library's message must match. */
  message?: RegExp;
  /**
   * The library verification must settle rather than block (a FIFO opened for reading blocks
   * until a writer comes): checked with a generous hang guard, never a timing bound.
   */
  mustSettle?: true;
  /** The library may read at most this many bytes (a huge file refused without reading it). */
  maxBytesRead?: number;
}

/** A correctly signed 2-of-3 patch, for cases whose hostility is elsewhere. */
async function validPatch(env: Env, id = 'p'): Promise<void> {
  await writePatch(env.repo, id, { signers: TWO_OF_THREE });
}

/** A patch whose manifest has `overrides`, signed by k1 + k2. */
function signedWith(overrides: Record<string, unknown>, extra: Parameters<typeof writePatch>[2] = {}) {
  return async (env: Env): Promise<CaseRun> => {
    await writePatch(env.repo, 'p', { signers: TWO_OF_THREE, manifest: overrides, ...extra });
    return { id: 'p' };
  };
}

/** Raw bytes as `<id>.json` (and a good payload beside it). */
function rawEnvelope(bytes: Uint8Array | string) {
  return async (env: Env): Promise<CaseRun> => {
    await writePatch(env.repo, 'p', { signers: TWO_OF_THREE, finalize: () => bytes });
    return { id: 'p' };
  };
}

/** Signed manifest bytes that are not the JSON of a manifest object. */
function rawManifest(bytes: Uint8Array) {
  return async (env: Env): Promise<CaseRun> => {
    await writePatch(env.repo, 'p', { signers: TWO_OF_THREE, manifestBytes: bytes });
    return { id: 'p' };
  };
}

function mutated(mutate: (envelope: Record<string, unknown>) => unknown) {
  return async (env: Env): Promise<CaseRun> => {
    await writePatch(env.repo, 'p', { signers: TWO_OF_THREE, mutateEnvelope: mutate });
    return { id: 'p' };
  };
}

function sigsOf(envelope: Record<string, unknown>): Array<Record<string, unknown>> {
  return envelope.signatures as Array<Record<string, unknown>>;
}

/** A valid patch for the base store, with a hostile trust store. */
function withTrust(trust: unknown) {
  return async (env: Env): Promise<CaseRun> => {
    await validPatch(env);
    return { id: 'p', trust };
  };
}

/** A valid patch (manifest overrides allowed) checked against a policy file. */
function withPolicy(policy: unknown, overrides: Record<string, unknown> = {}) {
  return async (env: Env): Promise<CaseRun> => {
    await writePatch(env.repo, 'p', { signers: TWO_OF_THREE, manifest: overrides });
    return { id: 'p', policy };
  };
}

/** A decoy that would verify if the id were resolved outside the repository's flat namespace. */
function badId(id: string, decoy: (env: Env) => Promise<void>, inProcessCli = false) {
  return async (env: Env): Promise<CaseRun> => {
    await decoy(env);
    return { id, inProcessCli };
  };
}

const decoyIn =
  (sub: (env: Env) => string, fileId: string) =>
  async (env: Env): Promise<void> => {
    await writePatch(sub(env), fileId, { manifestId: 'decoy', signers: TWO_OF_THREE });
  };

function wrongType(field: string, value: unknown): HostileCase {
  return {
    name: `manifest field ${field} of the wrong type (${JSON.stringify(value)})`,
    setup: signedWith({ [field]: value }),
    expectCode: 'INVALID',
    cliExit: 1,
  };
}

const otherOs = process.platform === 'win32' ? 'linux-x64' : 'win32-x64';

const CASES: HostileCase[] = [
  // --- envelope framing ---
  {
    name: 'a truncated JSON envelope',
    setup: async (env) => {
      const { envelopeText } = await writePatch(env.repo, 'p', { signers: TWO_OF_THREE });
      await writeFile(join(env.repo, 'p.json'), envelopeText.slice(0, Math.floor(envelopeText.length / 2)));
      return { id: 'p' };
    },
    expectCode: 'PARSE',
    cliExit: 1,
  },
  { name: 'an envelope that is not JSON (trailing comma)', setup: rawEnvelope('{"payloadType": "x", }'), expectCode: 'PARSE', cliExit: 1 },
  { name: 'an envelope that is a JSON array', setup: rawEnvelope('[{"payloadType": "x"}]'), expectCode: 'INVALID', cliExit: 1 },
  { name: 'an envelope that is a JSON number', setup: rawEnvelope('42'), expectCode: 'INVALID', cliExit: 1 },
  { name: 'an envelope that is JSON null', setup: rawEnvelope('null'), expectCode: 'INVALID', cliExit: 1 },
  { name: 'an envelope that is a JSON string', setup: rawEnvelope('"hello"'), expectCode: 'INVALID', cliExit: 1 },
  {
    name: 'an envelope with invalid UTF-8 bytes',
    setup: rawEnvelope(Uint8Array.from([...utf8('{"payloadType": "'), 0xc3, 0x28, 0xff, ...utf8('"}')])),
    expectCode: 'PARSE',
    cliExit: 1,
  },
  { name: 'an envelope with an unknown field', setup: mutated((e) => ({ ...e, extra: true })), expectCode: 'INVALID', cliExit: 1 },
  {
    name: 'an envelope without payloadType',
    setup: mutated((e) => ({ payload: e.payload, signatures: e.signatures })),
    expectCode: 'INVALID',
    cliExit: 1,
  },
  { name: 'an envelope whose signatures is an object', setup: mutated((e) => ({ ...e, signatures: {} })), expectCode: 'INVALID', cliExit: 1 },
  {
    name: 'an envelope with 65 signatures',
    setup: mutated((e) => ({ ...e, signatures: Array.from({ length: 65 }, () => sigsOf(e)[0]) })),
    expectCode: 'INVALID',
    cliExit: 1,
  },
  {
    name: 'a signature entry with an unknown field',
    setup: mutated((e) => ({ ...e, signatures: [{ ...sigsOf(e)[0], alg: 'none' }, sigsOf(e)[1]] })),
    expectCode: 'INVALID',
    cliExit: 1,
  },
  {
    name: 'a signature with an empty keyid',
    setup: mutated((e) => ({ ...e, signatures: [{ ...sigsOf(e)[0], keyid: '' }, sigsOf(e)[1]] })),
    expectCode: 'INVALID',
    cliExit: 1,
  },
  { name: 'base64 garbage in the payload', setup: mutated((e) => ({ ...e, payload: '!!!not*base64!!!' })), expectCode: 'INVALID', cliExit: 1 },
  {
    name: 'base64 garbage in a sig',
    setup: mutated((e) => ({ ...e, signatures: [{ ...sigsOf(e)[0], sig: 'sig?is#not$base64' }, sigsOf(e)[1]] })),
    expectCode: 'INVALID',
    cliExit: 1,
  },
  {
    name: 'a sig mixing the standard and URL-safe base64 alphabets',
    setup: mutated((e) => ({ ...e, signatures: [{ ...sigsOf(e)[0], sig: 'ab+_cd/-' }, sigsOf(e)[1]] })),
    expectCode: 'INVALID',
    cliExit: 1,
  },
  {
    name: 'a non-canonical base64 sig (an unused trailing bit set)',
    setup: mutated((e) => {
      const [first, second] = sigsOf(e);
      return { ...e, signatures: [{ ...first, sig: nonCanonicalBase64(String(first!.sig)) }, second] };
    }),
    expectCode: 'INVALID',
    cliExit: 1,
  },
  {
    name: 'a non-canonical base64 payload (an unused trailing bit set)',
    setup: async (env) => {
      // Pad the manifest until its base64 has padding (and so unused bits).
      let pad = '';
      while (utf8(JSON.stringify(baseManifest('p', PAYLOAD, { metadata: { pad } }))).length % 3 === 0) pad += 'x';
      await writePatch(env.repo, 'p', {
        signers: TWO_OF_THREE,
        manifest: { metadata: { pad } },
        mutateEnvelope: (e) => ({ ...e, payload: nonCanonicalBase64(String(e.payload)) }),
      });
      return { id: 'p' };
    },
    expectCode: 'INVALID',
    cliExit: 1,
  },
  {
    name: 'a 100 MB manifest (sparse file)',
    setup: async (env) => {
      await validPatch(env);
      const fh = await open(join(env.repo, 'p.json'), 'r+');
      await fh.truncate(100 * 1024 * 1024);
      await fh.close();
      return { id: 'p' };
    },
    expectCode: 'TOO_LARGE',
    cliExit: 1,
    mustSettle: true,
    maxBytesRead: 2 * MIB,
  },
  {
    name: 'a manifest of 1 MiB + 1 bytes',
    setup: async (env) => {
      await writePatch(env.repo, 'p', { signers: TWO_OF_THREE, finalize: (t) => t + ' '.repeat(MIB + 1 - Buffer.byteLength(t)) });
      return { id: 'p' };
    },
    expectCode: 'TOO_LARGE',
    cliExit: 1,
  },
  {
    name: 'a manifest file that is a FIFO',
    setup: async (env) => {
      await writePatch(env.repo, 'p', { signers: TWO_OF_THREE });
      await rm(join(env.repo, 'p.json'));
      mkfifo(join(env.repo, 'p.json'));
      return { id: 'p' };
    },
    expectCode: 'INVALID',
    cliExit: 1,
    mustSettle: true,
  },
  {
    name: 'a manifest path that is a directory',
    setup: async (env) => {
      await mkdir(join(env.repo, 'p.json'));
      await writeFile(join(env.repo, 'p.bin'), PAYLOAD);
      return { id: 'p' };
    },
    expectCode: 'INVALID',
    cliExit: 1,
  },

  // --- manifest content (inside a correctly signed envelope) ---
  {
    name: 'a signed manifest with invalid UTF-8',
    setup: rawManifest(Uint8Array.from([...utf8('{"id": "p'), 0xed, 0xa0, 0x80, ...utf8('"}')])),
    expectCode: 'PARSE',
    cliExit: 1,
  },
  { name: 'a signed manifest that is not JSON', setup: rawManifest(utf8('{id: p}')), expectCode: 'PARSE', cliExit: 1 },
  { name: 'a signed manifest that is a JSON array', setup: rawManifest(utf8('[]')), expectCode: 'INVALID', cliExit: 1 },
  { name: 'a signed manifest that is JSON null', setup: rawManifest(utf8('null')), expectCode: 'INVALID', cliExit: 1 },
  wrongType('id', 42),
  wrongType('target', ['xps.crypto.hash.sha256']),
  wrongType('version', 1),
  wrongType('created_at', 1_700_000_000),
  wrongType('expires', true),
  wrongType('signers', 'k1'),
  wrongType('payload_hash', 12),
  wrongType('payload_size', String(PAYLOAD.length)),
  wrongType('payload_type', 1),
  wrongType('min_platform', 7),
  wrongType('constraints', 'linux'),
  wrongType('metadata', ['ticket']),
  { name: 'a negative payload_size', setup: signedWith({ payload_size: -1 }), expectCode: 'INVALID', cliExit: 1 },
  { name: 'a fractional payload_size', setup: signedWith({ payload_size: 1.5 }), expectCode: 'INVALID', cliExit: 1 },
  { name: 'a payload_size of 2^53', setup: signedWith({ payload_size: 2 ** 53 }), expectCode: 'INVALID', cliExit: 1 },
  { name: 'a manifest missing payload_hash', setup: signedWith({ payload_hash: undefined }), expectCode: 'INVALID', cliExit: 1 },
  { name: 'a manifest whose target is null', setup: signedWith({ target: null }), expectCode: 'INVALID', cliExit: 1 },
  { name: 'an unknown manifest field', setup: signedWith({ run_as_root: true }), expectCode: 'INVALID', cliExit: 1 },
  {
    name: 'a manifest carrying a __proto__ field',
    setup: async (env) => {
      const text = JSON.stringify(baseManifest('p')).replace(/^\{/, '{"__proto__":{"payload_size":0},');
      await writePatch(env.repo, 'p', { signers: TWO_OF_THREE, manifestBytes: utf8(text) });
      return { id: 'p' };
    },
    expectCode: 'INVALID',
    cliExit: 1,
  },
  { name: 'an unknown constraints field', setup: signedWith({ constraints: { arch: 'x64' } }), expectCode: 'INVALID', cliExit: 1 },
  { name: 'a version that is not semver ("1.2")', setup: signedWith({ version: '1.2' }), expectCode: 'INVALID', cliExit: 1 },
  { name: 'a target that is a path ("../etc")', setup: signedWith({ target: '../etc' }), expectCode: 'INVALID', cliExit: 1 },
  { name: 'a payload_type outside esm|wasm|native', setup: signedWith({ payload_type: 'exe' }), expectCode: 'INVALID', cliExit: 1 },
  { name: 'manifest signers listing a key id twice', setup: signedWith({ signers: ['k1', 'k1'] }), expectCode: 'INVALID', cliExit: 1 },
  { name: 'a metadata value that is not a string', setup: signedWith({ metadata: { ticket: 1234 } }), expectCode: 'INVALID', cliExit: 1 },
  { name: 'constraints.node that is not a range', setup: signedWith({ constraints: { node: 'latest!' } }), expectCode: 'INVALID', cliExit: 1 },

  // --- patch ids (checked before any file is touched; each has a decoy that would verify) ---
  {
    name: 'an id with "../"',
    setup: badId(
      '../escape',
      decoyIn((env) => env.dir, 'escape'),
    ),
    expectCode: 'INVALID',
    cliExit: 2,
    message: /not a valid patch id/,
  },
  {
    name: 'an id with "/"',
    setup: badId('sub/inner', async (env) => {
      await mkdir(join(env.repo, 'sub'));
      await decoyIn((e) => join(e.repo, 'sub'), 'inner')(env);
    }),
    expectCode: 'INVALID',
    cliExit: 2,
    message: /not a valid patch id/,
  },
  {
    name: 'an id with a NUL byte',
    setup: badId(
      'p\0.json',
      decoyIn((env) => env.repo, 'p'),
      true,
    ),
    expectCode: 'INVALID',
    cliExit: 2,
    message: /not a valid patch id/,
  },
  {
    name: 'an id with non-ASCII characters',
    setup: badId(
      'pätch',
      decoyIn((env) => env.repo, 'pätch'),
    ),
    expectCode: 'INVALID',
    cliExit: 2,
    message: /not a valid patch id/,
  },
  {
    name: 'an id with a leading dot',
    setup: badId(
      '.hidden',
      decoyIn((env) => env.repo, '.hidden'),
    ),
    expectCode: 'INVALID',
    cliExit: 2,
    message: /not a valid patch id/,
  },
  {
    name: 'an id of 129 characters',
    setup: badId(
      'a'.repeat(129),
      decoyIn((env) => env.repo, 'a'.repeat(129)),
    ),
    expectCode: 'INVALID',
    cliExit: 2,
    message: /not a valid patch id/,
  },
  {
    name: 'an id containing ".."',
    setup: badId(
      'a..b',
      decoyIn((env) => env.repo, 'a..b'),
    ),
    expectCode: 'INVALID',
    cliExit: 2,
    message: /not a valid patch id/,
  },
  { name: 'an empty id', setup: badId('', validPatch), expectCode: 'INVALID', cliExit: 2, message: /not a valid patch id/ },

  {
    name: 'a manifest whose id differs from the file id (a signed patch replayed under another name)',
    setup: async (env) => {
      await validPatch(env, 'p');
      await writeFile(join(env.repo, 'q.json'), await readFile(join(env.repo, 'p.json')));
      await writeFile(join(env.repo, 'q.bin'), PAYLOAD);
      return { id: 'q' };
    },
    expectCode: 'INVALID',
    cliExit: 1,
    message: /manifest id p does not match the requested patch id q/,
  },

  // --- links and special files ---
  {
    name: 'a .json symlink pointing outside the root',
    setup: async (env) => {
      await writePatch(env.outside, 'victim', { manifestId: 'p', signers: TWO_OF_THREE });
      await symlink(join(env.outside, 'victim.json'), join(env.repo, 'p.json'));
      await writeFile(join(env.repo, 'p.bin'), PAYLOAD);
      return { id: 'p' };
    },
    expectCode: 'INVALID',
    cliExit: 1,
    message: /symbolic link/,
  },
  {
    name: 'a .bin symlink pointing outside the root',
    setup: async (env) => {
      await writePatch(env.repo, 'p', { signers: TWO_OF_THREE, payload: null });
      await writeFile(join(env.outside, 'victim.bin'), PAYLOAD);
      await symlink(join(env.outside, 'victim.bin'), join(env.repo, 'p.bin'));
      return { id: 'p' };
    },
    expectCode: 'INVALID',
    cliExit: 1,
    message: /symbolic link/,
  },
  {
    name: 'a FIFO as the payload',
    setup: async (env) => {
      await writePatch(env.repo, 'p', { signers: TWO_OF_THREE, payload: null });
      mkfifo(join(env.repo, 'p.bin'));
      return { id: 'p' };
    },
    expectCode: 'INVALID',
    cliExit: 1,
    mustSettle: true,
  },
  {
    name: 'a directory as the payload',
    setup: async (env) => {
      await writePatch(env.repo, 'p', { signers: TWO_OF_THREE, payload: null });
      await mkdir(join(env.repo, 'p.bin'));
      return { id: 'p' };
    },
    expectCode: 'INVALID',
    cliExit: 1,
  },
  {
    name: 'a missing payload .bin (operational)',
    setup: async (env) => {
      await writePatch(env.repo, 'p', { signers: TWO_OF_THREE, payload: null });
      return { id: 'p' };
    },
    expectCode: 'NOT_FOUND',
    cliExit: 3,
  },
  {
    name: 'a missing manifest .json (operational)',
    setup: async (env) => {
      await writeFile(join(env.repo, 'p.bin'), PAYLOAD);
      return { id: 'p' };
    },
    expectCode: 'NOT_FOUND',
    cliExit: 3,
  },

  // --- signatures, threshold, authorisation ---
  {
    name: 'the same signature twice against a threshold of 2',
    setup: mutated((e) => ({ ...e, signatures: [sigsOf(e)[0], sigsOf(e)[0]] })),
    expectCode: 'THRESHOLD_NOT_MET',
    cliExit: 1,
  },
  {
    name: 'one key under two key ids in the trust store',
    setup: async (env) => {
      await writePatch(env.repo, 'p', { signers: [s1, signerOf('k1-alias', K1.privateKey)] });
      return { id: 'p', trust: { keys: { ...trustKeys(), 'k1-alias': trustKeys().k1 }, threshold: 2 } };
    },
    expectCode: 'THRESHOLD_NOT_MET',
    cliExit: 1,
  },
  {
    name: 'signatures only by keys the trust store does not hold',
    setup: async (env) => {
      await writePatch(env.repo, 'p', { signers: [signerOf('stranger', STRANGER.privateKey), signerOf('k9', K4.privateKey)] });
      return { id: 'p' };
    },
    expectCode: 'UNTRUSTED_KEY',
    cliExit: 1,
  },
  {
    name: 'an untrusted key signing under trusted key ids',
    setup: async (env) => {
      await writePatch(env.repo, 'p', { signers: [signerOf('k1', STRANGER.privateKey), signerOf('k3', STRANGER.privateKey)] });
      return { id: 'p' };
    },
    expectCode: 'BAD_SIGNATURE',
    cliExit: 1,
  },
  {
    name: 'valid signatures with their key ids swapped',
    setup: async (env) => {
      await writePatch(env.repo, 'p', { signers: [signerOf('k2', K1.privateKey), signerOf('k1', K2.privateKey)] });
      return { id: 'p' };
    },
    expectCode: 'BAD_SIGNATURE',
    cliExit: 1,
  },
  {
    name: 'signatures over another payloadType, re-labelled as a manifest',
    setup: async (env) => {
      await writePatch(env.repo, 'p', { signers: TWO_OF_THREE, signedPayloadType: OTHER_TYPE });
      return { id: 'p' };
    },
    expectCode: 'BAD_SIGNATURE',
    cliExit: 1,
  },
  {
    name: 'a correctly signed envelope of another payloadType',
    setup: async (env) => {
      await writePatch(env.repo, 'p', { signers: TWO_OF_THREE, payloadType: OTHER_TYPE });
      return { id: 'p' };
    },
    expectCode: 'INVALID',
    cliExit: 1,
    message: /payloadType/,
  },
  {
    name: 'an empty signatures array',
    setup: async (env) => {
      await writePatch(env.repo, 'p', { signers: [] });
      return { id: 'p' };
    },
    expectCode: 'THRESHOLD_NOT_MET',
    cliExit: 1,
  },
  {
    name: 'one valid signature where two are required',
    setup: async (env) => {
      await writePatch(env.repo, 'p', { signers: [s1] });
      return { id: 'p' };
    },
    expectCode: 'THRESHOLD_NOT_MET',
    cliExit: 1,
    message: /signed by 1 of 2/,
  },
  {
    name: 'signatures by the right keys over a different manifest',
    setup: async (env) => {
      const other = utf8(JSON.stringify(baseManifest('p', PAYLOAD, { version: '9.9.9' })));
      const overOther = (keyid: string, key: typeof K1.privateKey): Signer => ({
        keyid,
        sign: () => sign(key, pae(MANIFEST_PAYLOAD_TYPE, other)),
      });
      await writePatch(env.repo, 'p', { signers: [overOther('k1', K1.privateKey), overOther('k2', K2.privateKey)] });
      return { id: 'p' };
    },
    expectCode: 'BAD_SIGNATURE',
    cliExit: 1,
  },
  {
    name: 'a truncated Ed25519 signature (63 bytes)',
    setup: async (env) => {
      await writePatch(env.repo, 'p', { signers: [{ keyid: 'k1', sign: (m) => s1.sign(m).subarray(0, 63) }, s2] });
      return { id: 'p' };
    },
    expectCode: 'BAD_SIGNATURE',
    cliExit: 1,
  },
  {
    name: 'an ECDSA signature in raw r||s form instead of DER',
    setup: async (env) => {
      const key = createPrivateKey(K2.privateKey.toPem());
      const raw: Signer = { keyid: 'k2', sign: (m) => new Uint8Array(nodeSign('sha256', m, { key, dsaEncoding: 'ieee-p1363' })) };
      await writePatch(env.repo, 'p', { signers: [s1, raw] });
      return { id: 'p' };
    },
    expectCode: 'BAD_SIGNATURE',
    cliExit: 1,
  },
  {
    name: 'keys authorised only for other targets',
    setup: async (env) => {
      await validPatch(env);
      const keys = trustKeys();
      keys.k1!.targets = ['xps.net.*'];
      keys.k2!.targets = ['xps.net.*'];
      return { id: 'p', trust: { keys, threshold: 2 } };
    },
    expectCode: 'UNTRUSTED_KEY',
    cliExit: 1,
  },
  {
    name: 'keys limited to xps.crypto.* signing for xps.cryptography.hash (glob anchoring)',
    setup: async (env) => {
      await writePatch(env.repo, 'p', { signers: TWO_OF_THREE, manifest: { target: 'xps.cryptography.hash' } });
      const keys = trustKeys();
      for (const k of Object.values(keys)) k.targets = ['xps.crypto.*'];
      return { id: 'p', trust: { keys, threshold: 2 } };
    },
    expectCode: 'UNTRUSTED_KEY',
    cliExit: 1,
  },
  {
    name: 'a rule requiring two specific keys, signed by two other trusted keys',
    setup: async (env) => {
      await writePatch(env.repo, 'p', { signers: [s3, s4] });
      const keys = { ...trustKeys(), k4: { alg: 'ed25519', public_key: K4.publicKey.toPem() } };
      return {
        id: 'p',
        trust: { keys, threshold: 2, rules: [{ targets: ['xps.crypto.hash.*'], threshold: 2, keys: ['k1', 'k2'] }] },
      };
    },
    expectCode: 'UNTRUSTED_KEY',
    cliExit: 1,
  },
  {
    name: 'manifest signers that exclude the signing keys',
    setup: signedWith({ signers: ['k3'] }),
    expectCode: 'THRESHOLD_NOT_MET',
    cliExit: 1,
    message: /signers/,
  },
  {
    name: 'an RSA key below the policy minimum (1024 bits)',
    setup: async (env) => {
      const weak: Signer = {
        keyid: 'rsa-weak',
        sign: (m) => new Uint8Array(nodeSign('sha256', m, { key: WEAK_RSA.privateKey, padding: cryptoConstants.RSA_PKCS1_PSS_PADDING, saltLength: 32 })),
      };
      await writePatch(env.repo, 'p', { signers: [s1, weak] });
      const pem = WEAK_RSA.publicKey.export({ type: 'spki', format: 'pem' }) as string;
      return { id: 'p', trust: { keys: { ...trustKeys(), 'rsa-weak': { alg: 'rsa-pss-sha256', public_key: pem } }, threshold: 2 } };
    },
    expectCode: 'ALGORITHM_DISALLOWED',
    cliExit: 1,
    message: /1024-bit RSA key is below the 2048-bit minimum/,
  },
  {
    name: 'Ed25519 switched off for the target at runtime (library policy; the CLI has no such switch and accepts)',
    setup: async (env) => {
      await validPatch(env);
      return {
        id: 'p',
        adjustPolicy: (p) => p.set(TARGET, { signatures: ['ecdsa-p256-sha256', 'rsa-pss-sha256', 'ml-dsa-65'] }),
      };
    },
    expectCode: 'ALGORITHM_DISALLOWED',
    cliExit: 0,
    cliCode: 'OK',
  },
  {
    name: 'the sha3-256 payload hash switched off at runtime (library policy; the CLI accepts)',
    setup: async (env) => {
      await writePatch(env.repo, 'p', {
        signers: TWO_OF_THREE,
        manifest: { payload_hash: `sha3-256:${Buffer.from(hashBytes('sha3-256', PAYLOAD)).toString('hex')}` },
      });
      return { id: 'p', adjustPolicy: (p) => p.set('xps.crypto.*', { hashes: ['sha256', 'sha384', 'sha512'] }) };
    },
    expectCode: 'ALGORITHM_DISALLOWED',
    cliExit: 0,
    cliCode: 'OK',
  },

  // --- freshness and versions ---
  {
    name: 'an expired manifest',
    setup: signedWith({ created_at: iso(Date.now() - 10 * DAY), expires: iso(Date.now() - DAY) }),
    expectCode: 'EXPIRED',
    cliExit: 1,
  },
  {
    name: 'created_at a day in the future',
    setup: signedWith({ created_at: iso(Date.now() + DAY), expires: iso(Date.now() + 30 * DAY) }),
    expectCode: 'NOT_YET_VALID',
    cliExit: 1,
  },
  { name: 'an unparseable created_at ("yesterday")', setup: signedWith({ created_at: 'yesterday' }), expectCode: 'INVALID', cliExit: 1 },
  {
    name: 'an unparseable expires (month 13)',
    setup: signedWith({ expires: '2099-13-01T00:00:00Z' }),
    expectCode: 'INVALID',
    cliExit: 1,
  },
  {
    name: 'created_at on February 30',
    setup: signedWith({ created_at: '2025-02-30T09:00:00Z' }),
    expectCode: 'INVALID',
    cliExit: 1,
    message: /does not exist/,
  },
  { name: 'created_at without a UTC offset', setup: signedWith({ created_at: '2025-01-01T00:00:00' }), expectCode: 'INVALID', cliExit: 1 },
  {
    name: 'expires before created_at',
    setup: signedWith({ created_at: iso(Date.now() - HOUR), expires: iso(Date.now() - 2 * HOUR) }),
    expectCode: 'INVALID',
    cliExit: 1,
  },
  {
    name: 'a downgrade below the version recorded in --state',
    setup: async (env) => {
      await validPatch(env);
      return { id: 'p', state: { format: 1, targets: { [TARGET]: { highest_version: '2.0.0' } } } };
    },
    expectCode: 'DOWNGRADE',
    cliExit: 1,
  },

  // --- payload ---
  {
    name: 'a payload one byte longer than payload_size',
    setup: async (env) => {
      await writePatch(env.repo, 'p', { signers: TWO_OF_THREE, payload: Uint8Array.from([...PAYLOAD, 0x0a]), describedPayload: PAYLOAD });
      return { id: 'p' };
    },
    expectCode: 'SIZE_MISMATCH',
    cliExit: 1,
  },
  {
    name: 'a payload one byte shorter than payload_size',
    setup: async (env) => {
      await writePatch(env.repo, 'p', { signers: TWO_OF_THREE, payload: PAYLOAD.subarray(0, -1), describedPayload: PAYLOAD });
      return { id: 'p' };
    },
    expectCode: 'SIZE_MISMATCH',
    cliExit: 1,
  },
  {
    name: 'a payload of the right size with different bytes',
    setup: async (env) => {
      const evil = PAYLOAD.slice();
      evil[0] = evil[0]! ^ 0x20;
      await writePatch(env.repo, 'p', { signers: TWO_OF_THREE, payload: evil, describedPayload: PAYLOAD });
      return { id: 'p' };
    },
    expectCode: 'HASH_MISMATCH',
    cliExit: 1,
  },
  { name: 'an empty payload_hash digest ("sha256:")', setup: signedWith({ payload_hash: 'sha256:' }), expectCode: 'INVALID', cliExit: 1 },
  {
    name: 'a payload_hash without an algorithm',
    setup: signedWith({ payload_hash: sha256Hex(PAYLOAD) }),
    expectCode: 'INVALID',
    cliExit: 1,
  },
  {
    name: 'an unknown hash algorithm md5 with a digest of valid length',
    setup: signedWith({ payload_hash: `md5:${'ab'.repeat(16)}` }),
    expectCode: 'ALGORITHM_DISALLOWED',
    cliExit: 1,
  },
  {
    name: 'a sha256 digest of the wrong length (31 bytes)',
    setup: signedWith({ payload_hash: `sha256:${sha256Hex(PAYLOAD).slice(0, 62)}` }),
    expectCode: 'INVALID',
    cliExit: 1,
  },
  {
    name: 'a payload_hash with an odd number of hex digits',
    setup: signedWith({ payload_hash: `sha256:${sha256Hex(PAYLOAD)}0` }),
    expectCode: 'INVALID',
    cliExit: 1,
  },

  // --- trust stores (the operator's file: exit 2, the code kept) ---
  { name: 'a trust store with threshold 0', setup: withTrust({ keys: trustKeys(), threshold: 0 }), expectCode: 'INVALID', cliExit: 2 },
  {
    name: 'a trust store threshold no set of its keys can meet',
    setup: withTrust({ keys: trustKeys(), threshold: 4 }),
    expectCode: 'INVALID',
    cliExit: 2,
  },
  { name: 'a trust store threshold given as a string', setup: withTrust({ keys: trustKeys(), threshold: '2' }), expectCode: 'INVALID', cliExit: 2 },
  {
    name: 'a trust store entry whose alg does not match its key',
    setup: withTrust({ keys: { ...trustKeys(), k1: { alg: 'ecdsa-p256-sha256', public_key: K1.publicKey.toPem() } }, threshold: 2 }),
    expectCode: 'INVALID',
    cliExit: 2,
    message: /ed25519 key but was declared as ecdsa-p256-sha256/,
  },
  {
    name: 'a trust store entry with an unknown alg',
    setup: withTrust({ keys: { ...trustKeys(), k1: { alg: 'rsa-pkcs1-sha1', public_key: K1.publicKey.toPem() } }, threshold: 2 }),
    expectCode: 'ALGORITHM_DISALLOWED',
    cliExit: 2,
  },
  {
    name: 'a trust store entry with a bad PEM',
    setup: withTrust({
      keys: { ...trustKeys(), k1: { alg: 'ed25519', public_key: '-----BEGIN PUBLIC KEY-----\nnot*base64\n-----END PUBLIC KEY-----\n' } },
      threshold: 2,
    }),
    expectCode: 'INVALID',
    cliExit: 2,
  },
  {
    name: 'a trust store entry holding a private key',
    setup: withTrust({ keys: { ...trustKeys(), k1: { alg: 'ed25519', public_key: K1.privateKey.toPem() } }, threshold: 2 }),
    expectCode: 'INVALID',
    cliExit: 2,
  },
  { name: 'a trust store that is not JSON', setup: withTrust('{"keys": '), expectCode: 'PARSE', cliExit: 2 },
  { name: 'a trust store that is a JSON array', setup: withTrust('[]'), expectCode: 'INVALID', cliExit: 2 },
  {
    name: 'a trust store with an unknown field',
    setup: withTrust({ ...baseTrust(), trust_everyone: true }),
    expectCode: 'INVALID',
    cliExit: 2,
  },
  {
    name: 'a trust store rule naming a key it does not hold',
    setup: withTrust({ ...baseTrust(), rules: [{ targets: ['xps.*'], threshold: 1, keys: ['ghost'] }] }),
    expectCode: 'INVALID',
    cliExit: 2,
  },
  {
    name: 'a trust store file that is a FIFO',
    setup: async (env) => {
      await validPatch(env);
      const trustPath = join(env.dir, 'trust.fifo');
      mkfifo(trustPath);
      return { id: 'p', trustPath };
    },
    expectCode: 'INVALID',
    cliExit: 2,
    mustSettle: true,
  },

  // --- security policy ---
  {
    name: 'a policy file denying the target',
    setup: withPolicy({ components: { deny: ['xps.crypto.hash.*'] } }),
    expectCode: 'POLICY_DENIED',
    cliExit: 1,
  },
  { name: 'a policy file denying a signer', setup: withPolicy({ signers: { deny: ['k2'] } }), expectCode: 'POLICY_DENIED', cliExit: 1 },
  {
    name: 'a policy signer allow list the signers are not on',
    setup: withPolicy({ signers: { allow: ['k3'] } }),
    expectCode: 'POLICY_DENIED',
    cliExit: 1,
  },
  {
    name: 'a policy requiring expiry and a manifest without expires',
    setup: withPolicy({ requireExpiry: true }, { expires: undefined }),
    expectCode: 'POLICY_DENIED',
    cliExit: 1,
  },
  {
    name: 'a policy version requirement the patch does not satisfy',
    setup: withPolicy({ requirements: { [TARGET]: '>=2.0.0' } }),
    expectCode: 'REQUIREMENT_UNSATISFIED',
    cliExit: 1,
  },
  {
    name: 'constraints.requires on a component that is not running',
    setup: withPolicy({}, { constraints: { requires: { 'xps.crypto.core': '>=1.0.0' } } }),
    expectCode: 'REQUIREMENT_UNSATISFIED',
    cliExit: 1,
  },
  {
    name: `a platform constraint for another OS (${otherOs})`,
    setup: withPolicy({}, { constraints: { platforms: [otherOs] } }),
    expectCode: 'PLATFORM_MISMATCH',
    cliExit: 1,
  },
  {
    name: 'a constraints.node range no Node.js satisfies',
    setup: withPolicy({}, { constraints: { node: '>=999.0.0' } }),
    expectCode: 'PLATFORM_MISMATCH',
    cliExit: 1,
  },
  {
    name: 'a payload larger than the policy maximum',
    setup: withPolicy({ maxPayloadBytes: 16 }),
    expectCode: 'TOO_LARGE',
    cliExit: 1,
  },
  {
    name: 'a policy file with an unknown field',
    setup: withPolicy({ allow_all: true }),
    expectCode: 'INVALID',
    cliExit: 2,
  },
  {
    name: 'a policy file that is a FIFO',
    setup: async (env) => {
      await validPatch(env);
      const policyPath = join(env.dir, 'policy.fifo');
      mkfifo(policyPath);
      return { id: 'p', policyPath };
    },
    expectCode: 'INVALID',
    cliExit: 2,
    mustSettle: true,
  },

  // --- positive controls ---
  { name: 'a correct 2-of-3 patch (Ed25519 + P-256)', setup: async (env) => (await validPatch(env), { id: 'p' }), expectCode: 'OK', cliExit: 0 },
  {
    name: 'a 3-of-3 patch with an extra signature by an unknown key',
    setup: async (env) => {
      await writePatch(env.repo, 'p', { signers: [s1, s2, s3, signerOf('stranger', STRANGER.privateKey)] });
      return { id: 'p' };
    },
    expectCode: 'OK',
    cliExit: 0,
  },
  {
    name: 'an uppercase hex payload_hash',
    setup: signedWith({ payload_hash: `sha256:${sha256Hex(PAYLOAD).toUpperCase()}` }),
    expectCode: 'OK',
    cliExit: 0,
  },
  {
    name: 'a manifest of exactly 1 MiB (whitespace-padded)',
    setup: async (env) => {
      await writePatch(env.repo, 'p', { signers: TWO_OF_THREE, finalize: (t) => t + ' '.repeat(MIB - Buffer.byteLength(t)) });
      return { id: 'p' };
    },
    expectCode: 'OK',
    cliExit: 0,
  },
  {
    name: 'manifest signers naming the signing keys, with a permissive policy and --state below the version',
    setup: async (env) => {
      await writePatch(env.repo, 'p', { signers: TWO_OF_THREE, manifest: { signers: ['k1', 'k2'] } });
      return { id: 'p', policy: { components: { allow: ['xps.crypto.*'] } }, state: { format: 1, targets: { [TARGET]: { highest_version: '1.2.3' } } } };
    },
    expectCode: 'OK',
    cliExit: 0,
  },
];

// --- running a case --------------------------------------------------------------------

const { root, cleanup } = await makeTempRoot('xps-hostile-');
after(cleanup);

interface Materialised {
  trustPath: string;
  policyPath: string | undefined;
  stateDir: string | undefined;
}

const textOf = (value: unknown): string => (typeof value === 'string' ? value : `${JSON.stringify(value, null, 2)}\n`);

async function materialise(env: Env, run: CaseRun): Promise<Materialised> {
  let trustPath = run.trustPath;
  if (trustPath === undefined) {
    trustPath = join(env.dir, 'trust.json');
    await writeFile(trustPath, textOf(run.trust ?? baseTrust()));
  }
  let policyPath = run.policyPath;
  if (policyPath === undefined && run.policy !== undefined) {
    policyPath = join(env.dir, 'policy.json');
    await writeFile(policyPath, textOf(run.policy));
  }
  let stateDir: string | undefined;
  if (run.state !== undefined) {
    stateDir = join(env.dir, 'state');
    await mkdir(stateDir);
    await writeFile(join(stateDir, 'state.json'), textOf(run.state));
  }
  return { trustPath, policyPath, stateDir };
}

/** The library path: the same steps as `hotpatch verify`, through the public API, in-process. */
/** A hang guard, not a timing bound: only a call that blocks for good (open(2) on a FIFO) reaches it. */
const HANG_GUARD_MS = 20_000;

/**
 * `pending`, or a failure if it has not settled after HANG_GUARD_MS; then every FIFO under
 * `dir` is opened for writing once, so a reader stuck in open(2) returns and the process can exit.
 */
async function settled<T>(pending: Promise<T>, dir: string): Promise<T> {
  try {
    return await withDeadline(pending, HANG_GUARD_MS, 'the library verification to settle (blocked in open(2) on a FIFO?)');
  } catch (error) {
    if (!(error instanceof Error) || !error.message.startsWith('timed out')) throw error;
    for (const entry of await snapshotTree(dir)) {
      if (entry.type !== 'fifo') continue;
      try {
        closeSync(openSync(join(dir, entry.path), fsConstants.O_WRONLY | fsConstants.O_NONBLOCK));
      } catch {
        // no reader on this one
      }
    }
    await settlesWithin(pending, 5000);
    throw error;
  }
}

async function runLibrary(env: Env, run: CaseRun, files: Materialised): Promise<HotPatchError | 'OK'> {
  try {
    // readFileBounded refuses FIFOs and huge files; a plain readFile would hang on a FIFO.
    const trust = parseTrustStore(await readFileBounded(files.trustPath, MIB, { noFollow: false }));
    const cryptoPolicy = new CryptoPolicy();
    const verifier = new DefaultVerifier(trust, { cryptoPolicy });
    const repository = new FileSystemRepository(env.repo);
    const context: VerificationContext = { now: Date.now() };
    if (files.stateDir !== undefined) {
      const state = JSON.parse(await readFile(join(files.stateDir, 'state.json'), 'utf8')) as {
        targets: Record<string, { highest_version: string }>;
      };
      context.highestVersion = (target) => state.targets[target]?.highest_version;
    }
    if (run.adjustPolicy !== undefined) {
      // Passes before the switch: the policy change alone causes the rejection.
      await verifyPatch(repository, verifier, run.id, context);
      run.adjustPolicy(cryptoPolicy);
    }
    const verified = await verifyPatch(repository, verifier, run.id, context);
    if (files.policyPath !== undefined) {
      // SecurityGate.fromFile is not used: it blocks on a FIFO (see the separate test below).
      const gate = SecurityGate.fromJSON(decodeJson(await readFileBounded(files.policyPath, MIB, { noFollow: false }), 'policy'));
      gate.check(verified);
    }
    return 'OK';
  } catch (error) {
    if (error instanceof HotPatchError) return error;
    throw error;
  }
}

function cliArgs(env: Env, run: CaseRun, files: Materialised): string[] {
  // `--id=` keeps an id that starts with "-" (or is empty) a value, never a flag.
  const args = ['verify', '--json', '--repo', env.repo, `--id=${run.id}`, '--trust', files.trustPath];
  if (files.policyPath !== undefined) args.push('--policy', files.policyPath);
  if (files.stateDir !== undefined) args.push('--state', files.stateDir);
  return args;
}

const slug = (text: string): string => text.replace(/[^A-Za-z0-9]+/g, '-').slice(0, 40);

test('the hostile corpus holds at least 60 cases with unique names', () => {
  assert.ok(CASES.length >= 60, `only ${CASES.length} cases`);
  assert.equal(new Set(CASES.map((c) => c.name)).size, CASES.length);
});

CASES.forEach((c, index) => {
  const title =
    c.expectCode === 'OK'
      ? `positive control: ${c.name} is accepted by the library and the CLI (exit 0)`
      : `hostile input: ${c.name} is refused with ${c.expectCode} (CLI exit ${c.cliExit}${
          c.cliCode !== undefined ? `, ${c.cliCode}` : ''
        }) and nothing is written`;
  test(title, async () => {
    const dir = join(root, `${String(index).padStart(3, '0')}-${slug(c.name)}`);
    const env: Env = { dir, repo: join(dir, 'repo'), outside: join(dir, 'outside') };
    await mkdir(env.repo, { recursive: true });
    await mkdir(env.outside);
    const run = await c.setup(env);
    const files = await materialise(env, run);
    const before = await snapshotTree(dir);

    const { result: lib, bytesRead } = await bytesReadDuring(() =>
      c.mustSettle === true ? settled(runLibrary(env, run, files), dir) : runLibrary(env, run, files),
    );
    if (c.expectCode === 'OK') {
      assert.equal(lib, 'OK', lib === 'OK' ? '' : `library: expected acceptance, got ${lib.code}: ${lib.message}`);
    } else {
      assert.ok(lib !== 'OK', `library: expected ${c.expectCode}, but the patch was accepted`);
      assert.equal(lib.code, c.expectCode, `library: expected ${c.expectCode}, got ${lib.code}: ${lib.message}`);
      if (c.message !== undefined) assert.match(lib.message, c.message);
    }
    if (c.maxBytesRead !== undefined) assert.ok(bytesRead <= c.maxBytesRead, `the library read ${bytesRead} bytes (at most ${c.maxBytesRead} allowed)`);
    await assertUntouched(dir, before, 'the library');

    const args = cliArgs(env, run, files);
    const cli = run.inProcessCli === true ? await runHotpatchInProcess(args) : await runHotpatch(args);
    assertCliOutcome(cli, c.cliExit, c.cliCode ?? c.expectCode, `hotpatch ${args.join(' ')}`);
    assert.ok(c.cliExit === 0 || c.cliExit === 1 || c.cliExit === 2 || c.cliExit === 3);
    await assertUntouched(dir, before, 'hotpatch verify');
  });
});

test('the positive control reports the counted signers and threshold on the JSON line', async () => {
  const dir = join(root, 'positive-detail');
  const repo = join(dir, 'repo');
  await mkdir(repo, { recursive: true });
  await validPatch({ dir, repo, outside: dir });
  const trustPath = join(dir, 'trust.json');
  await writeFile(trustPath, textOf(baseTrust()));
  const cli = await runHotpatch(['verify', '--json', '--repo', repo, '--id', 'p', '--trust', trustPath]);
  assertCliOutcome(cli, 0, 'OK', 'verify');
  assert.deepEqual(cli.last?.signers, ['k1', 'k2']);
  assert.equal(cli.last?.threshold, 2);
  assert.equal(cli.last?.payload_hash, `sha256:${sha256Hex(PAYLOAD)}`);
});

// --- pack and sign with hostile flags --------------------------------------------------

interface FlagCase {
  name: string;
  /** Flags replacing (or, with a null value, removing) the good ones; `extra` is appended. */
  set?: Record<string, string | null>;
  extra?: string[];
}

async function packFixture(name: string): Promise<{ dir: string; repo: string; payloadFile: string; fifo: string }> {
  const dir = join(root, name);
  const repo = join(dir, 'repo');
  await mkdir(repo, { recursive: true });
  await validPatch({ dir, repo, outside: dir }, 'existing');
  const payloadFile = join(dir, 'payload.mjs');
  await writeFile(payloadFile, PAYLOAD);
  const fifo = join(dir, 'payload.fifo');
  mkfifo(fifo);
  return { dir, repo, payloadFile, fifo };
}

function packArgs(repo: string, payloadFile: string, c: FlagCase): string[] {
  const flags: Record<string, string | null> = {
    repo,
    id: 'fresh',
    target: TARGET,
    version: '1.0.0',
    type: 'esm',
    payload: payloadFile,
    ...c.set,
  };
  const args = ['pack', '--json'];
  for (const [name, value] of Object.entries(flags)) if (value !== null) args.push(`--${name}=${value}`);
  return [...args, ...(c.extra ?? [])];
}

const PACK_CASES: FlagCase[] = [
  { name: 'an id with "../"', set: { id: '../evil' } },
  { name: 'an id with a leading dot', set: { id: '.hidden' } },
  { name: 'an empty id', set: { id: '' } },
  { name: 'the version "1.2"', set: { version: '1.2' } },
  { name: 'a --type outside esm|wasm|native', set: { type: 'exe' } },
  { name: 'a target that is a path', set: { target: '../../etc' } },
  { name: 'a missing --target', set: { target: null } },
  { name: '--meta without "="', extra: ['--meta', 'ticket'] },
  { name: '--meta with an empty key', extra: ['--meta', '=value'] },
  { name: '--meta setting a key twice', extra: ['--meta', 'a=1', '--meta', 'a=2'] },
  { name: '--expires before now', set: { expires: '2000-01-01T00:00:00Z' } },
  { name: '--expires that is not a date', set: { expires: 'next tuesday' } },
  { name: '--created-at on February 30', set: { 'created-at': '2025-02-30T00:00:00Z' } },
  { name: '--hash md5', set: { hash: 'md5' } },
  { name: 'an empty --signer', extra: ['--signer='] },
  { name: '--node that is not a range', set: { node: 'latest!' } },
  { name: '--requires without "="', extra: ['--requires', 'xps.crypto.core'] },
  { name: 'an unknown flag', extra: ['--sign-with-any-key'] },
  { name: 'a positional argument', extra: ['stray'] },
];

test('pack with sane flags succeeds (the control for the hostile flag cases)', async () => {
  const { repo, payloadFile } = await packFixture('pack-control');
  const cli = await runHotpatch(packArgs(repo, payloadFile, { name: 'control' }));
  assertCliOutcome(cli, 0, 'OK', 'pack');
});

PACK_CASES.forEach((c, index) => {
  test(`pack with ${c.name} exits 2 with INVALID and leaves the repository untouched`, async () => {
    const { dir, repo, payloadFile } = await packFixture(`pack-${index}-${slug(c.name)}`);
    const before = await snapshotTree(dir);
    const args = packArgs(repo, payloadFile, c);
    assertCliOutcome(await runHotpatch(args), 2, 'INVALID', `hotpatch ${args.join(' ')}`);
    await assertUntouched(dir, before, 'hotpatch pack');
  });
});

test('pack with a FIFO as --payload exits 2 at once instead of blocking on it', async () => {
  const { dir, repo, fifo } = await packFixture('pack-fifo');
  const before = await snapshotTree(dir);
  const args = packArgs(repo, fifo, { name: 'fifo' });
  assertCliOutcome(await runHotpatch(args, { timeoutMs: 5000 }), 2, 'INVALID', `hotpatch ${args.join(' ')}`);
  await assertUntouched(dir, before, 'hotpatch pack');
});

test('pack with a bad version does not even create a missing repository directory', async () => {
  const { dir, payloadFile } = await packFixture('pack-norepo');
  const before = await snapshotTree(dir);
  const args = packArgs(join(dir, 'not-yet'), payloadFile, { name: 'norepo', set: { version: '1.2' } });
  assertCliOutcome(await runHotpatch(args), 2, 'INVALID', `hotpatch ${args.join(' ')}`);
  await assertUntouched(dir, before, 'hotpatch pack');
});

interface SignCase {
  name: string;
  /** Writes the hostile key file and returns its path. */
  key: (dir: string) => Promise<string>;
  extra?: string[];
}

const keyFile =
  (name: string, content: string | Uint8Array) =>
  async (dir: string): Promise<string> => {
    const path = join(dir, name);
    await writeFile(path, content, { mode: 0o600 });
    return path;
  };

const SIGN_CASES: SignCase[] = [
  { name: 'a key file of plain text', key: keyFile('notes.key', 'this is not a key\n') },
  { name: 'an empty key file', key: keyFile('empty.key', '') },
  { name: 'a key file holding a public key', key: keyFile('pub.key', K1.publicKey.toPem()) },
  {
    name: 'a PKCS#1 "RSA PRIVATE KEY" file',
    key: keyFile('pkcs1.key', WEAK_RSA.privateKey.export({ type: 'pkcs1', format: 'pem' }) as string),
  },
  {
    name: 'an encrypted PKCS#8 key file',
    key: keyFile(
      'enc.key',
      createPrivateKey(K1.privateKey.toPem()).export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'pw' }) as string,
    ),
  },
  { name: 'a PEM block with a garbled body', key: keyFile('garbled.key', '-----BEGIN PRIVATE KEY-----\n@@@@\n-----END PRIVATE KEY-----\n') },
  { name: 'a valid key but a key id that is a path', key: keyFile('good.key', K1.privateKey.toPem()), extra: ['--keyid', '../k1'] },
];

async function signFixture(name: string): Promise<{ dir: string; repo: string }> {
  const dir = join(root, name);
  const repo = join(dir, 'repo');
  await mkdir(repo, { recursive: true });
  await writePatch(repo, 'p', { signers: [] });
  return { dir, repo };
}

SIGN_CASES.forEach((c, index) => {
  test(`sign with ${c.name} exits 2 with INVALID and leaves the repository untouched`, async () => {
    const { dir, repo } = await signFixture(`sign-${index}-${slug(c.name)}`);
    const keyPath = await c.key(dir);
    const before = await snapshotTree(dir);
    const args = ['sign', '--json', '--repo', repo, '--id', 'p', '--key', keyPath, ...(c.extra ?? [])];
    assertCliOutcome(await runHotpatch(args), 2, 'INVALID', `hotpatch ${args.join(' ')}`);
    await assertUntouched(dir, before, 'hotpatch sign');
  });
});

test('sign with a good key does change the envelope (the control for the sign cases)', async () => {
  const { dir, repo } = await signFixture('sign-control');
  const keyPath = await keyFile('k1.key', K1.privateKey.toPem())(dir);
  const args = ['sign', '--json', '--repo', repo, '--id', 'p', '--key', keyPath];
  assertCliOutcome(await runHotpatch(args), 0, 'OK', 'sign');
  const envelope = JSON.parse(await readFile(join(repo, 'p.json'), 'utf8')) as { signatures: Array<{ keyid: string }> };
  assert.deepEqual(
    envelope.signatures.map((s) => s.keyid),
    ['k1'],
  );
});

// --- defects found by this corpus, each fixed in src/ and kept here as a regression test ------

for (const [name, make] of [
  ['a FIFO as the key file', async (dir: string) => (mkfifo(join(dir, 'k.key')), join(dir, 'k.key'))],
  ['a directory as the key file', async (dir: string) => (await mkdir(join(dir, 'k.key')), join(dir, 'k.key'))],
  ['a key file over 64 KiB', keyFile('huge.key', ' '.repeat(70_000))],
] as const) {
  test(`sign with ${name} exits 2 (operator input), not 1`, async () => {
    const { dir, repo } = await signFixture(`sign-bug-${slug(name)}`);
    const keyPath = await make(dir);
    const before = await snapshotTree(dir);
    const args = ['sign', '--json', '--repo', repo, '--id', 'p', '--key', keyPath];
    const cli = await runHotpatch(args, { timeoutMs: 5000 });
    await assertUntouched(dir, before, 'hotpatch sign');
    assert.equal(cli.status, 2, `expected exit 2, got ${String(cli.status)}: ${cli.stdout}`);
  });
}

test('SecurityGate.fromFile refuses a FIFO promptly instead of blocking in open()', async () => {
  const fifo = join(root, 'policy-bug.fifo');
  mkfifo(fifo);
  const pending = SecurityGate.fromFile(fifo).then(
    () => 'accepted',
    (error: unknown) => (error instanceof HotPatchError ? error.code : String(error)),
  );
  const timedOut = Symbol('timeout');
  let timer: NodeJS.Timeout | undefined;
  // A hang guard: refusing a FIFO takes no waiting, only a blocking open(2) reaches it.
  const first = await Promise.race([pending, new Promise((resolve) => (timer = setTimeout(() => resolve(timedOut), HANG_GUARD_MS)))]);
  clearTimeout(timer);
  if (first === timedOut) {
    // Unblock the reader stuck in open(2) so the test process can exit.
    closeSync(openSync(fifo, fsConstants.O_WRONLY | fsConstants.O_NONBLOCK));
    await pending;
  }
  assert.notEqual(first, timedOut, `SecurityGate.fromFile(fifo) was still pending after ${HANG_GUARD_MS} ms`);
  assert.equal(first, 'INVALID');
});

test('a state.json whose highest_version is not a string does not silently switch anti-downgrade off', async () => {
  const dir = join(root, 'state-bug');
  const repo = join(dir, 'repo');
  const state = join(dir, 'state');
  await mkdir(repo, { recursive: true });
  await mkdir(state);
  await validPatch({ dir, repo, outside: dir });
  await writeFile(join(state, 'state.json'), JSON.stringify({ format: 1, targets: { [TARGET]: { highest_version: 2 } } }));
  const trustPath = join(dir, 'trust.json');
  await writeFile(trustPath, textOf(baseTrust()));
  const cli = await runHotpatch(['verify', '--json', '--repo', repo, '--id', 'p', '--trust', trustPath, '--state', state]);
  assert.notEqual(cli.status, 0, `a corrupt anti-downgrade record let version 1.2.3 through: ${cli.stdout}`);
});

test('a highestVersion that is not semver is refused with a HotPatchError, not a TypeError', async () => {
  const dir = join(root, 'highest-bug');
  await mkdir(dir, { recursive: true });
  await validPatch({ dir, repo: dir, outside: dir });
  const verifier = new DefaultVerifier(parseTrustStore(baseTrust()), { cryptoPolicy: new CryptoPolicy() });
  await assert.rejects(
    verifyPatch(new FileSystemRepository(dir), verifier, 'p', { highestVersion: 'not-a-version' }),
    (error: unknown) => error instanceof HotPatchError && error.code === 'INVALID',
  );
});

test('a manifest version that is not a canonical SemVer string ("v1.2.3", " 1.2.3 ") is refused with INVALID', async () => {
  const dir = join(root, 'version-bug');
  const repo = join(dir, 'repo');
  await mkdir(repo, { recursive: true });
  const trustPath = join(dir, 'trust.json');
  await writeFile(trustPath, textOf(baseTrust()));
  const verifier = new DefaultVerifier(parseTrustStore(baseTrust()), { cryptoPolicy: new CryptoPolicy() });
  for (const [id, version] of [
    ['v-prefix', 'v1.2.3'],
    ['blanks', ' 1.2.3 '],
  ] as const) {
    await writePatch(repo, id, { signers: TWO_OF_THREE, manifest: { version } });
    const lib = await verifyPatch(new FileSystemRepository(repo), verifier, id).then(
      (v) => `accepted as ${JSON.stringify(v.manifest.version)}`,
      (error: unknown) => (error instanceof HotPatchError ? error.code : String(error)),
    );
    assert.equal(lib, 'INVALID', `library, version ${JSON.stringify(version)}`);
    assertCliOutcome(await runHotpatch(['verify', '--json', '--repo', repo, '--id', id, '--trust', trustPath]), 1, 'INVALID', 'verify');
  }
});

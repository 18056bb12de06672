import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DEFAULT_MAX_PAYLOAD_BYTES, SecurityGate, type SecurityPolicyConfig } from '../../src/security/index.js';
import { rejectsCode, throwsCode, verified } from './fixtures.js';

const FULL: SecurityPolicyConfig = {
  signers: { allow: ['team-key-1', 'build-bot'], deny: ['old-key'] },
  components: { allow: ['xps.crypto.*'], deny: ['xps.crypto.rng.*'] },
  requirements: { 'xps.crypto.hash.sha256': '^1.2.0' },
  versions: { 'xps.crypto.core': '1.4.0' },
  maxPayloadBytes: 1_000_000,
  requireExpiry: true,
};

describe('fromJSON', () => {
  test('a complete policy document is accepted and round-trips through toJSON', () => {
    const gate = SecurityGate.fromJSON(JSON.parse(JSON.stringify(FULL)));
    assert.deepEqual(gate.toJSON(), FULL);
    assert.deepEqual(SecurityGate.fromJSON(gate.toJSON()).toJSON(), FULL);
    gate.check(verified());
  });

  test('an empty document gives the defaults', () => {
    assert.deepEqual(SecurityGate.fromJSON({}).toJSON(), {
      signers: { allow: [], deny: [] },
      components: { allow: [], deny: [] },
      requirements: {},
      versions: {},
      maxPayloadBytes: DEFAULT_MAX_PAYLOAD_BYTES,
      requireExpiry: false,
    });
    assert.equal(DEFAULT_MAX_PAYLOAD_BYTES, 64 * 1024 * 1024);
  });

  test('unknown fields are refused with INVALID naming the field path', () => {
    throwsCode(() => SecurityGate.fromJSON({ signer: {} }), 'INVALID', /policy has unknown field "signer"/);
    throwsCode(() => SecurityGate.fromJSON({ signers: { allowed: [] } }), 'INVALID', /policy\.signers has unknown field "allowed"/);
    throwsCode(() => SecurityGate.fromJSON({ components: { block: [] } }), 'INVALID', /policy\.components has unknown field/);
  });

  test('wrong types are refused with INVALID naming the field path', () => {
    throwsCode(() => SecurityGate.fromJSON(null), 'INVALID', /policy must be a JSON object/);
    throwsCode(() => SecurityGate.fromJSON([]), 'INVALID', /policy must be a JSON object/);
    throwsCode(() => SecurityGate.fromJSON({ signers: [] }), 'INVALID', /policy\.signers must be a JSON object/);
    throwsCode(() => SecurityGate.fromJSON({ signers: { allow: 'team-key-1' } }), 'INVALID', /policy\.signers\.allow must be an array/);
    throwsCode(() => SecurityGate.fromJSON({ signers: { deny: ['a', 7] } }), 'INVALID', /policy\.signers\.deny\[1\]/);
    throwsCode(() => SecurityGate.fromJSON({ maxPayloadBytes: '10' }), 'INVALID', /policy\.maxPayloadBytes/);
    throwsCode(() => SecurityGate.fromJSON({ maxPayloadBytes: -1 }), 'INVALID', /policy\.maxPayloadBytes/);
    throwsCode(() => SecurityGate.fromJSON({ maxPayloadBytes: 1.5 }), 'INVALID', /policy\.maxPayloadBytes/);
    throwsCode(() => SecurityGate.fromJSON({ requireExpiry: 'yes' }), 'INVALID', /policy\.requireExpiry/);
    throwsCode(() => SecurityGate.fromJSON({ requirements: { 'xps.a': 1 } }), 'INVALID', /policy\.requirements\["xps\.a"\]/);
  });

  test('invalid ranges, versions and patterns are refused with INVALID naming the field path', () => {
    throwsCode(() => SecurityGate.fromJSON({ requirements: { 'xps.a': 'banana' } }), 'INVALID', /policy\.requirements\["xps\.a"\] must be a semver range/);
    throwsCode(() => SecurityGate.fromJSON({ requirements: { 'xps.a': ' ' } }), 'INVALID', /semver range/);
    throwsCode(() => SecurityGate.fromJSON({ requirements: { 'not a name': '^1.0.0' } }), 'INVALID', /policy\.requirements\["not a name"\] component/);
    throwsCode(() => SecurityGate.fromJSON({ versions: { 'xps.a': '^1.0.0' } }), 'INVALID', /policy\.versions\["xps\.a"\] must be a semver version/);
    throwsCode(() => SecurityGate.fromJSON({ components: { deny: ['xps.crypto.?'] } }), 'INVALID', /policy\.components\.deny\[0\]/);
    throwsCode(() => SecurityGate.fromJSON({ components: { allow: [''] } }), 'INVALID', /policy\.components\.allow\[0\]/);
  });

  test('the constructor checks a typed config as strictly as fromJSON', () => {
    throwsCode(() => new SecurityGate({ maxPayloadBytes: Number.NaN }), 'INVALID', /maxPayloadBytes/);
    throwsCode(() => new SecurityGate({ extra: true } as SecurityPolicyConfig), 'INVALID', /unknown field "extra"/);
  });

  test('toJSON returns a copy that does not change the gate', () => {
    const gate = new SecurityGate(FULL);
    const json = gate.toJSON();
    json.components?.deny?.push('xps.crypto.*');
    gate.check(verified());
  });
});

describe('fromFile', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'xps-security-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('a valid policy file is loaded', async () => {
    const path = join(dir, 'policy.json');
    await writeFile(path, JSON.stringify(FULL));
    const gate = await SecurityGate.fromFile(path);
    assert.deepEqual(gate.toJSON(), FULL);
  });

  test('a missing file is NOT_FOUND', async () => {
    await rejectsCode(SecurityGate.fromFile(join(dir, 'absent.json')), 'NOT_FOUND', /absent\.json/);
  });

  test('a file that is not JSON is PARSE', async () => {
    const path = join(dir, 'broken.json');
    await writeFile(path, '{"signers": ');
    await rejectsCode(SecurityGate.fromFile(path), 'PARSE', /not valid JSON/);
  });

  test('a file that is not UTF-8 is PARSE', async () => {
    const path = join(dir, 'latin1.json');
    await writeFile(path, new Uint8Array([0x7b, 0xff, 0x7d]));
    await rejectsCode(SecurityGate.fromFile(path), 'PARSE', /UTF-8/);
  });

  test('a file with an invalid policy is INVALID naming the file and the field', async () => {
    const path = join(dir, 'invalid.json');
    await writeFile(path, JSON.stringify({ requirements: { 'xps.a': 'banana' } }));
    const err = await rejectsCode(SecurityGate.fromFile(path), 'INVALID', /invalid\.json: policy\.requirements\["xps\.a"\]/);
    assert.equal(err.detail?.path, path);
  });

  test('a file over 1 MiB is TOO_LARGE', async () => {
    const path = join(dir, 'large.json');
    await writeFile(path, `{"signers":{"allow":[]}}${' '.repeat(1024 * 1024)}`);
    await rejectsCode(SecurityGate.fromFile(path), 'TOO_LARGE', /larger than the limit of 1048576 bytes/);
  });

  test('a file of exactly 1 MiB is read', async () => {
    const path = join(dir, 'exact.json');
    const body = '{}';
    await writeFile(path, body + ' '.repeat(1024 * 1024 - body.length));
    await SecurityGate.fromFile(path);
  });

  test('a directory in place of the file is INVALID (only regular files are read)', async () => {
    const path = join(dir, 'a-directory');
    await mkdir(path);
    await rejectsCode(SecurityGate.fromFile(path), 'INVALID', /not a regular file/);
  });

  test('a file that cannot be read at all is IO', async () => {
    // A path through a regular file (ENOTDIR) fails in open(2) as plain I/O, even as root.
    const file = join(dir, 'plain-file');
    await writeFile(file, '{}');
    await rejectsCode(SecurityGate.fromFile(join(file, 'policy.json')), 'IO');
  });
});

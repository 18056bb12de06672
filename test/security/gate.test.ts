import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SecurityGate } from '../../src/security/index.js';
import { HOST, throwsCode, verified } from './fixtures.js';

const OTHER_OS = process.platform === 'linux' ? 'darwin' : 'linux';

describe('step 1: component deny and allow lists', () => {
  test('a target matched by a deny pattern is refused with POLICY_DENIED naming the pattern', () => {
    const gate = new SecurityGate({ components: { deny: ['xps.crypto.*'] } });
    const err = throwsCode(() => gate.check(verified()), 'POLICY_DENIED');
    assert.equal(err.message, 'target xps.crypto.hash.sha256 is denied by pattern xps.crypto.*');
    assert.deepEqual(err.detail, { rule: 'components.deny', target: 'xps.crypto.hash.sha256', pattern: 'xps.crypto.*' });
  });

  test('deny wins over allow when both lists match the target', () => {
    const gate = new SecurityGate({ components: { allow: ['xps.crypto.hash.sha256'], deny: ['xps.crypto.*'] } });
    throwsCode(() => gate.check(verified()), 'POLICY_DENIED', /denied by pattern xps\.crypto\.\*/);
  });

  test('a non-empty allow list refuses a target it does not match', () => {
    const gate = new SecurityGate({ components: { allow: ['xps.tls.*'] } });
    const err = throwsCode(() => gate.check(verified()), 'POLICY_DENIED', /not allowed by policy/);
    assert.deepEqual(err.detail?.allow, ['xps.tls.*']);
  });

  test('a target matched by the allow list passes', () => {
    const gate = new SecurityGate({ components: { allow: ['xps.tls.*', 'xps.crypto.*'] } });
    gate.check(verified());
  });

  test('patterns are anchored: xps.crypto.* neither denies nor allows xps.cryptography.x', () => {
    const denying = new SecurityGate({ components: { deny: ['xps.crypto.*'] } });
    denying.check(verified({ target: 'xps.cryptography.x' }));
    const allowing = new SecurityGate({ components: { allow: ['xps.crypto.*'] } });
    throwsCode(() => allowing.check(verified({ target: 'xps.cryptography.x' })), 'POLICY_DENIED');
    const exact = new SecurityGate({ components: { deny: ['xps.crypto'] } });
    exact.check(verified({ target: 'xps.crypto.hash' }));
  });
});

describe('step 2: signers', () => {
  test('a denied signer among those that counted refuses the patch even when the others meet the threshold', () => {
    const gate = new SecurityGate({ signers: { deny: ['build-bot'] } });
    const err = throwsCode(
      () => gate.check(verified({}, { signers: ['team-key-1', 'build-bot', 'ops-key'], threshold: 2 })),
      'POLICY_DENIED',
      /signer build-bot is denied by policy/,
    );
    assert.equal(err.detail?.signer, 'build-bot');
  });

  test('a denied key that is named in the manifest but did not count does not refuse the patch', () => {
    const gate = new SecurityGate({ signers: { deny: ['old-key'] } });
    gate.check(verified({ signers: ['team-key-1', 'build-bot', 'old-key'] }, { signers: ['team-key-1', 'build-bot'] }));
  });

  test('allow-listed signers below the threshold are refused, saying how many were allowed', () => {
    const gate = new SecurityGate({ signers: { allow: ['team-key-1'] } });
    const err = throwsCode(() => gate.check(verified()), 'POLICY_DENIED', /^1 of 2 required signers allowed by policy/);
    assert.equal(err.detail?.allowed, 1);
    assert.equal(err.detail?.required, 2);
    assert.deepEqual(err.detail?.allowedSigners, ['team-key-1']);
  });

  test('allow-listed signers that meet the threshold pass', () => {
    const gate = new SecurityGate({ signers: { allow: ['team-key-1', 'build-bot'] } });
    gate.check(verified());
  });

  test('an empty signer allow list accepts any trusted signer', () => {
    new SecurityGate({ signers: { allow: [] } }).check(verified({}, { signers: ['anyone'], threshold: 1 }));
  });

  test('with an allow list, a threshold below one still needs one allowed signer', () => {
    const gate = new SecurityGate({ signers: { allow: ['team-key-1'] } });
    throwsCode(() => gate.check(verified({}, { signers: ['build-bot'], threshold: 0 })), 'POLICY_DENIED', /0 of 1 required/);
  });
});

describe('step 3: expiry required by policy', () => {
  test('a manifest without expires is refused when the policy requires expiry', () => {
    const gate = new SecurityGate({ requireExpiry: true });
    throwsCode(() => gate.check(verified({ expires: undefined })), 'POLICY_DENIED', /has no expires/);
    gate.check(verified());
  });

  test('a manifest without expires passes by default', () => {
    new SecurityGate().check(verified({ expires: undefined }));
  });
});

describe('step 4: payload size', () => {
  test('a payload_size above the default 64 MiB maximum is refused with TOO_LARGE and the figures', () => {
    const err = throwsCode(() => new SecurityGate().check(verified({ payload_size: 70_000_000 })), 'TOO_LARGE');
    assert.equal(err.message, 'payload_size 70000000 exceeds the policy maximum 67108864');
    assert.deepEqual(err.detail, { payloadSize: 70_000_000, maxPayloadBytes: 67_108_864 });
  });

  test('a payload_size equal to the configured maximum passes and one byte more does not', () => {
    const gate = new SecurityGate({ maxPayloadBytes: 1000 });
    gate.check(verified({ payload_size: 1000 }));
    throwsCode(() => gate.check(verified({ payload_size: 1001 })), 'TOO_LARGE');
  });
});

describe('step 5: version requirement for the target', () => {
  test('a version outside the required range is refused with REQUIREMENT_UNSATISFIED naming range and version', () => {
    const gate = new SecurityGate({ requirements: { 'xps.crypto.hash.sha256': '^2.0.0' } });
    const err = throwsCode(() => gate.check(verified()), 'REQUIREMENT_UNSATISFIED', /1\.2\.3.*\^2\.0\.0/);
    assert.deepEqual(err.detail, { target: 'xps.crypto.hash.sha256', version: '1.2.3', range: '^2.0.0' });
  });

  test('a version inside the required range passes, and a requirement for another target does not apply', () => {
    new SecurityGate({ requirements: { 'xps.crypto.hash.sha256': '>=1.2.0 <2' } }).check(verified());
    new SecurityGate({ requirements: { 'xps.other': '^9.0.0' } }).check(verified());
  });

  test('a prerelease version does not satisfy a plain range (includePrerelease is false)', () => {
    const gate = new SecurityGate({ requirements: { 'xps.crypto.hash.sha256': '>=1.0.0' } });
    throwsCode(() => gate.check(verified({ version: '1.3.0-beta.1' })), 'REQUIREMENT_UNSATISFIED');
    gate.setRequirement('xps.crypto.hash.sha256', '>=1.3.0-0');
    gate.check(verified({ version: '1.3.0-beta.1' }));
  });
});

describe('step 6: platform constraints', () => {
  test('a host outside constraints.platforms is refused with PLATFORM_MISMATCH', () => {
    const gate = new SecurityGate();
    const v = verified({ constraints: { platforms: ['linux-x64', 'darwin-arm64'] } });
    const err = throwsCode(() => gate.check(v, { platform: 'win32-x64' }), 'PLATFORM_MISMATCH', /win32-x64/);
    assert.deepEqual(err.detail, { platform: 'win32-x64', platforms: ['linux-x64', 'darwin-arm64'] });
    gate.check(v, { platform: 'darwin-arm64' });
  });

  test('without a context the host is this process’s platform and architecture', () => {
    const gate = new SecurityGate();
    gate.check(verified({ constraints: { platforms: [HOST] } }));
    throwsCode(() => gate.check(verified({ constraints: { platforms: [`${OTHER_OS}-${process.arch}`] } })), 'PLATFORM_MISMATCH');
  });

  test('an empty constraints.platforms list admits no host', () => {
    throwsCode(() => new SecurityGate().check(verified({ constraints: { platforms: [] } })), 'PLATFORM_MISMATCH');
  });

  test('the legacy min_platform maps uname names onto Node’s and refuses another OS', () => {
    const gate = new SecurityGate();
    gate.check(verified({ min_platform: 'linux-x86_64' }), { platform: 'linux-x64' });
    gate.check(verified({ min_platform: 'linux-aarch64' }), { platform: 'linux-arm64' });
    gate.check(verified({ min_platform: 'linux' }), { platform: 'linux-arm64' });
    throwsCode(
      () => gate.check(verified({ min_platform: 'linux-x86_64' }), { platform: 'darwin-x64' }),
      'PLATFORM_MISMATCH',
      /min_platform linux-x86_64 does not match platform darwin-x64/,
    );
  });

  test('a min_platform for another architecture is refused', () => {
    throwsCode(() => new SecurityGate().check(verified({ min_platform: 'linux-x86_64' }), { platform: 'linux-arm64' }), 'PLATFORM_MISMATCH');
  });

  test('a Node.js version outside constraints.node is refused with PLATFORM_MISMATCH', () => {
    const gate = new SecurityGate();
    const v = verified({ constraints: { node: '>=22' } });
    const err = throwsCode(() => gate.check(v, { nodeVersion: '20.19.0' }), 'PLATFORM_MISMATCH', /20\.19\.0.*>=22/);
    assert.deepEqual(err.detail, { nodeVersion: '20.19.0', range: '>=22' });
    gate.check(v, { nodeVersion: '22.1.0' });
  });

  test('without a context constraints.node is checked against this process’s Node.js', () => {
    const gate = new SecurityGate();
    gate.check(verified({ constraints: { node: `>=${process.versions.node}` } }));
    throwsCode(() => gate.check(verified({ constraints: { node: `>${process.versions.node}` } })), 'PLATFORM_MISMATCH');
  });
});

describe('step 7: components the patch requires', () => {
  test('a required component with no running version is refused with REQUIREMENT_UNSATISFIED', () => {
    const gate = new SecurityGate();
    const err = throwsCode(() => gate.check(verified({ constraints: { requires: { 'xps.crypto.core': '>=1.0.0' } } })), 'REQUIREMENT_UNSATISFIED');
    assert.equal(err.message, 'requires xps.crypto.core >=1.0.0 but no version of it is running');
  });

  test('a required component running too old a version is refused, naming what runs', () => {
    const gate = new SecurityGate({ versions: { 'xps.crypto.core': '0.9.0' } });
    const err = throwsCode(
      () => gate.check(verified({ constraints: { requires: { 'xps.crypto.core': '>=1.0.0' } } })),
      'REQUIREMENT_UNSATISFIED',
      /but 0\.9\.0 is running/,
    );
    assert.deepEqual(err.detail, { component: 'xps.crypto.core', range: '>=1.0.0', running: '0.9.0' });
  });

  test('a version recorded with setComponentVersion satisfies the requirement', () => {
    const gate = new SecurityGate({ versions: { 'xps.crypto.core': '0.9.0' } });
    gate.setComponentVersion('xps.crypto.core', '1.4.0');
    gate.check(verified({ constraints: { requires: { 'xps.crypto.core': '>=1.0.0' } } }));
  });

  test('a component name inherited from Object.prototype is not taken as running', () => {
    throwsCode(
      () => new SecurityGate().check(verified({ constraints: { requires: { constructor: '*' } } })),
      'REQUIREMENT_UNSATISFIED',
      /no version of it is running/,
    );
  });
});

describe('order of checks', () => {
  test('a manifest violating every rule reports each in turn as the earlier ones are fixed', () => {
    const policy = {
      components: { deny: ['xps.crypto.*'] },
      signers: { allow: ['team-key-1'] },
      requireExpiry: true,
      maxPayloadBytes: 100,
      requirements: { 'xps.crypto.hash.sha256': '^2.0.0', 'xps.tls.x': '^2.0.0' },
    };
    const bad = {
      payload_size: 101,
      expires: undefined,
      constraints: { platforms: ['nowhere-x64'], requires: { 'xps.crypto.core': '>=1.0.0' } },
    };
    const gate = new SecurityGate(policy);
    throwsCode(() => gate.check(verified(bad)), 'POLICY_DENIED', /denied by pattern/);
    throwsCode(() => gate.check(verified({ ...bad, target: 'xps.tls.x' })), 'POLICY_DENIED', /1 of 2 required signers/);
    const oneSigner = { signers: ['team-key-1'], threshold: 1 };
    throwsCode(() => gate.check(verified({ ...bad, target: 'xps.tls.x' }, oneSigner)), 'POLICY_DENIED', /no expires/);
    const withExpiry = { ...bad, target: 'xps.tls.x', expires: '2026-10-27T09:00:00Z' };
    throwsCode(() => gate.check(verified(withExpiry, oneSigner)), 'TOO_LARGE');
    const small = { ...withExpiry, payload_size: 10 };
    throwsCode(() => gate.check(verified(small, oneSigner)), 'REQUIREMENT_UNSATISFIED', /\^2\.0\.0/);
    const v2 = { ...small, version: '2.0.0' };
    throwsCode(() => gate.check(verified(v2, oneSigner)), 'PLATFORM_MISMATCH');
    const onHost = { ...v2, constraints: { platforms: [HOST], requires: { 'xps.crypto.core': '>=1.0.0' } } };
    throwsCode(() => gate.check(verified(onHost, oneSigner)), 'REQUIREMENT_UNSATISFIED', /no version of it is running/);
    gate.setComponentVersion('xps.crypto.core', '1.0.0');
    gate.check(verified(onHost, oneSigner));
  });

  test('a too-large payload is reported before an unsatisfied version requirement', () => {
    const gate = new SecurityGate({ maxPayloadBytes: 1, requirements: { 'xps.crypto.hash.sha256': '^9.0.0' } });
    throwsCode(() => gate.check(verified({ payload_size: 2 })), 'TOO_LARGE');
  });

  test('a platform mismatch is reported before a missing required component', () => {
    const v = verified({ constraints: { node: '<1.0.0', requires: { 'xps.crypto.core': '>=1.0.0' } } });
    throwsCode(() => new SecurityGate().check(v), 'PLATFORM_MISMATCH');
  });
});

describe('changing the policy while the process runs', () => {
  test('each check reads the policy as it is now', () => {
    const gate = new SecurityGate();
    const v = verified();
    gate.check(v);
    gate.denyComponent('*.sha256');
    throwsCode(() => gate.check(v), 'POLICY_DENIED');

    const signerGate = new SecurityGate();
    signerGate.allowSigner('team-key-1');
    throwsCode(() => signerGate.check(v), 'POLICY_DENIED', /1 of 2/);
    signerGate.allowSigner('build-bot');
    signerGate.check(v);
    signerGate.denySigner('build-bot');
    throwsCode(() => signerGate.check(v), 'POLICY_DENIED', /signer build-bot is denied/);

    const componentGate = new SecurityGate();
    componentGate.allowComponent('xps.tls.*');
    throwsCode(() => componentGate.check(v), 'POLICY_DENIED', /not allowed/);
    componentGate.allowComponent('xps.crypto.hash.*');
    componentGate.check(v);

    const versionGate = new SecurityGate();
    versionGate.setRequirement('xps.crypto.hash.sha256', '>=1.3.0');
    throwsCode(() => versionGate.check(v), 'REQUIREMENT_UNSATISFIED');
    versionGate.setRequirement('xps.crypto.hash.sha256', '>=1.2.0');
    versionGate.check(v);
  });

  test('mutators refuse malformed input with INVALID naming the argument', () => {
    const gate = new SecurityGate();
    throwsCode(() => gate.setRequirement('xps.crypto', 'not a range'), 'INVALID', /range for xps\.crypto/);
    throwsCode(() => gate.setRequirement('xps crypto', '^1.0.0'), 'INVALID', /component/);
    throwsCode(() => gate.setRequirement('xps.crypto', ''), 'INVALID');
    throwsCode(() => gate.setComponentVersion('xps.crypto.core', '1.0'), 'INVALID', /version of xps\.crypto\.core/);
    throwsCode(() => gate.denyComponent('xps/crypto'), 'INVALID', /pattern/);
    throwsCode(() => gate.allowComponent(''), 'INVALID', /pattern/);
    throwsCode(() => gate.allowSigner(''), 'INVALID', /keyid/);
    throwsCode(() => gate.denySigner('k'.repeat(257)), 'INVALID', /keyid/);
    assert.deepEqual(gate.toJSON(), new SecurityGate().toJSON());
  });
});

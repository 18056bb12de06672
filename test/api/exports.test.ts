/*
 * The public API, entry point by entry point (package.json "exports"). Every name listed here
 * is a promise to users: adding one, removing one or moving one to another entry point must
 * change this file, in the same commit, as a visible decision. Values are what the compiled
 * module exports at run time; types are what its declaration file ("types" condition) adds.
 *
 * Each entry point is imported by its package name (the package's self-reference), so the
 * "exports" map itself is what is tested.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { runNode } from '../support/run-node.js';

const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

interface EntryApi {
  values: string[];
  types: string[];
}

const API: Record<string, EntryApi> = {
  'xps-hotpatch': {
    values: [
      'CryptoPolicy',
      'DefaultVerifier',
      'ERROR_CODES',
      'EVENT_CHANNEL',
      'EVENT_TYPES',
      'EventBus',
      'FileKeyProvider',
      'FileSystemRepository',
      'HASH_ALGORITHMS',
      'HotPatchError',
      'HttpRepository',
      'INDEX_PAYLOAD_TYPE',
      'IndexedRepository',
      'MANIFEST_PAYLOAD_TYPE',
      'PAYLOAD_TYPES',
      'Pkcs11KeyProvider',
      'Pkcs11RecipientKey',
      'PrivateKey',
      'PublicKey',
      'RECIPIENT_ALGORITHMS',
      'RecipientPrivateKey',
      'RecipientPublicKey',
      'Registries',
      'RemoteKeyProvider',
      'RemoteUnwrapProvider',
      'RepositoryMirrors',
      'SIGNATURE_ALGORITHMS',
      'SecurityGate',
      'TRUST_STORE_PAYLOAD_TYPE',
      'TufRepository',
      'checkPayloadStream',
      'copyFileAtomic',
      'decodeEnvelope',
      'decryptPayload',
      'defaultCryptoPolicy',
      'defaultEventBus',
      'defaultRegistries',
      'encodeEnvelope',
      'encryptPayload',
      'errorCategory',
      'generateKeyPair',
      'generateRecipientKey',
      'hashBytes',
      'hashProvider',
      'importPrivateKey',
      'importPublicKey',
      'importRecipientPrivateKey',
      'importRecipientPublicKey',
      'isHashAlgorithm',
      'isHotPatchError',
      'isPatchId',
      'isSignatureAlgorithm',
      'matchesTargetPattern',
      'openRepository',
      'packPatch',
      'pae',
      'parseManifest',
      'parsePatchId',
      'parseRepositoryIndex',
      'parseRfc3339',
      'parseTrustStore',
      'readFileBounded',
      'readPinFile',
      'readTimestampReply',
      'registerApprover',
      'registerInstaller',
      'registerRepository',
      'registerSecret',
      'registerSecurity',
      'registerVerifier',
      'requestTimestamp',
      'rotateTrustStore',
      'sign',
      'signPatch',
      'signRepositoryIndex',
      'signatureProvider',
      'timestampPatch',
      'timestampQuery',
      'timingSafeEqualBytes',
      'trustForTarget',
      'unwrapProviderOf',
      'verifyPatch',
      'verifyRepositoryIndex',
      'verifySignature',
      'verifyTimestampToken',
      'writeFileAtomic',
      'writeFileExclusive',
    ],
    types: [
      'AlgorithmRule',
      'ApprovalRequest',
      'Approver',
      'AtomicWriteData',
      'ConfigValue',
      'CopyFileAtomicOptions',
      'DecryptionKey',
      'DeepReadonly',
      'EffectiveRule',
      'EncryptingPayload',
      'Envelope',
      'EnvelopeSignature',
      'ErrorCategory',
      'ErrorCode',
      'EventInit',
      'EventListener',
      'EventType',
      'FileDigest',
      'FileSystemRepositoryOptions',
      'GenerateKeyPairOptions',
      'HashAlgorithm',
      'HashProvider',
      'Hasher',
      'HotPatchErrorOptions',
      'HotPatchEvent',
      'HttpRepositoryOptions',
      'IndexEntry',
      'IndexedRepositoryOptions',
      'KeyCutoff',
      'KeyProvider',
      'ListedPatch',
      'Manifest',
      'ManifestConstraints',
      'ManifestEncryption',
      'ManifestFacts',
      'ManifestRecipient',
      'Mirror',
      'MirrorFailure',
      'PackPatchOptions',
      'PackedPatch',
      'ParsedManifest',
      'PatchId',
      'PatchInitContext',
      'PatchInstaller',
      'PatchModule',
      'PatchRepository',
      'PatchVerifier',
      'PayloadRecipient',
      'PayloadSource',
      'PayloadType',
      'Pkcs11KeyOptions',
      'ReadFileOptions',
      'RecipientAlgorithm',
      'Registry',
      'RemoteKeyOptions',
      'RemoteUnwrapOptions',
      'RepositoryIndex',
      'RepositoryLocation',
      'RequestTimestampOptions',
      'SecurityContext',
      'SecurityPolicy',
      'SecurityPolicyConfig',
      'SignIndexOptions',
      'SignPatchOptions',
      'SignatureAlgorithm',
      'SignatureProvider',
      'SignedIndex',
      'SignedPatch',
      'SubscribeOptions',
      'TargetConfig',
      'TargetTrust',
      'TimestampInfo',
      'TimestampPatchOptions',
      'TrustRule',
      'TrustStore',
      'TrustStoreDocument',
      'TrustedKey',
      'TufLocation',
      'TufRepositoryOptions',
      'UnwrapKeyProvider',
      'VerificationContext',
      'VerifiedIndex',
      'VerifiedManifest',
      'VerifierOptions',
      'WriteFileAtomicOptions',
      'WritePayloadOptions',
    ],
  },
  'xps-hotpatch/runtime': {
    values: ['DynamicInstaller', 'HotPatchRuntime', 'RollbackIndex', 'StateStore', 'defaultRuntime', 'twoPhaseApply'],
    types: [
      'ApplyOptions',
      'ApplyOutcome',
      'ApplyResult',
      'CanaryControl',
      'DrainReport',
      'DynamicInstallerOptions',
      'IsolateHandle',
      'IsolatedApi',
      'IsolationLimits',
      'IsolationMode',
      'IsolationSettings',
      'JudgeFigures',
      'JudgeRule',
      'JudgeVerdict',
      'LoadOptions',
      'LoadedModule',
      'OutputValidator',
      'RestoreReport',
      'RuntimeOptions',
      'RuntimeVersion',
      'StagedPayload',
      'StateFile',
      'StepReport',
      'StepVerdict',
      'Target',
      'TargetDeclaration',
      'TargetState',
      'TargetStatus',
      'VersionRecord',
      'VersionStatus',
      'WasmAdapter',
      'WasmExports',
      'WasmImports',
      'WasmInstance',
      'WasmModule',
      'ZdtOptions',
    ],
  },
  'xps-hotpatch/orchestration': {
    values: ['Planner', 'formatWeeklyWindow', 'parseWeeklyWindow'],
    types: [
      'DryRunCheck',
      'DryRunCheckName',
      'DryRunReport',
      'PatchPlan',
      'PersistableZdtOptions',
      'PlanPhase',
      'PlanPin',
      'PlanRunResult',
      'PlanState',
      'PlanStatus',
      'PlanZdtOptions',
      'PlannerOptions',
      'TimeWindow',
      'Weekday',
      'WeeklyWindow',
    ],
  },
  'xps-hotpatch/agent': {
    values: ['startAgent'],
    types: ['Agent', 'AgentDecryptionKey', 'AgentFleet', 'AgentFleetOptions', 'AgentOptions', 'AuditMode', 'HttpTokenOption'],
  },
  'xps-hotpatch/observability': {
    values: ['AuditLog', 'HotPatchMetrics', 'buildHistory', 'buildReport', 'createLogger', 'formatHistory', 'formatReport', 'logEvents', 'verifyAuditLog'],
    types: [
      'AuditEntry',
      'AuditFailureHandler',
      'AuditLogOptions',
      'AuditReconciliation',
      'AuditVerification',
      'ComplianceReport',
      'CreateLoggerOptions',
      'HistoryOutcome',
      'HistoryRequest',
      'HistoryRow',
      'HistoryStart',
      'HotPatchMetricsOptions',
      'Logger',
      'OperatorAction',
      'PatchOutcome',
      'PatchReport',
      'ReportApproval',
      'ReportTimelineEntry',
      'TargetHistory',
    ],
  },
  'xps-hotpatch/fleet': {
    values: [
      'AGENT_REPORT_PAYLOAD_TYPE',
      'DistributedApproval',
      'EmbeddedStore',
      'FleetController',
      'FleetMember',
      'ROLLOUT_SPEC_PAYLOAD_TYPE',
      'ROLLOUT_STATE_PAYLOAD_TYPE',
      'StoreConsensus',
      'VOTE_PAYLOAD_TYPE',
      'abortRollout',
      'addRolloutSpecSignature',
      'countVotes',
      'createRollout',
      'fleetStatus',
      'getConsensus',
      'getRollout',
      'listAgents',
      'listRollouts',
      'newProposal',
      'openStore',
      'parseApprovers',
      'pauseRollout',
      'plannerFleetHooks',
      'proposalExpiresMs',
      'proposalIdOf',
      'resumeRollout',
      'setConsensus',
      'signRolloutSpec',
      'signVote',
      'signVoteWith',
      'submitRollout',
      'verifyRolloutDocument',
    ],
    types: [
      'AgentDocument',
      'AgentTargetState',
      'ApprovalResult',
      'ApproverKey',
      'ApproversDocument',
      'ApproversList',
      'Consensus',
      'ConsensusOptions',
      'CountOptions',
      'DistributedApprovalOptions',
      'EmbeddedStoreOptions',
      'EmptyRingPolicy',
      'EtcdStore',
      'EtcdStoreOptions',
      'FleetControllerOptions',
      'FleetHealth',
      'FleetHooks',
      'FleetKeys',
      'FleetMemberOptions',
      'FleetPhase',
      'FleetProblem',
      'FleetStatus',
      'FleetStoreOptions',
      'KeyValue',
      'KvStore',
      'Leadership',
      'Lease',
      'MemberReport',
      'OpenStoreOptions',
      'PlannerFleetHooksOptions',
      'Proposal',
      'Quorum',
      'RolloutActionOptions',
      'RolloutDocument',
      'RolloutOrder',
      'RolloutSigner',
      'RolloutSpec',
      'RolloutState',
      'RolloutStateSigners',
      'RolloutStatus',
      'RolloutTrailEntry',
      'RolloutTransition',
      'SignedRolloutSpec',
      'SignedVote',
      'StoredAgent',
      'StoredRollout',
      'TargetReport',
      'VotePayload',
      'VoteTally',
      'WatchEvent',
    ],
  },
};

interface ExportTarget {
  types: string;
  default: string;
}

function packageExports(): Record<string, ExportTarget | string> {
  const pkg = JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { exports: Record<string, ExportTarget | string> };
  return pkg.exports;
}

const sorted = (names: Iterable<string>): string[] => [...names].sort();

/** Every name a declaration file exports (values and types), by the TypeScript checker. */
function declaredNames(dts: string): string[] {
  const program = ts.createProgram([dts], {
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    skipLibCheck: true,
    noEmit: true,
    types: ['node'],
  });
  const checker = program.getTypeChecker();
  const source = program.getSourceFile(dts);
  assert.ok(source !== undefined, `${dts} is not readable`);
  const moduleSymbol = checker.getSymbolAtLocation(source);
  assert.ok(moduleSymbol !== undefined, `${dts} is not a module`);
  return checker.getExportsOfModule(moduleSymbol).map((s) => s.name);
}

test('package.json "exports" lists exactly the entry points of the API, each with types and code that exist', () => {
  const exports = packageExports();
  const subpaths = Object.keys(exports).filter((k) => k !== './package.json');
  assert.deepEqual(sorted(subpaths.map((k) => `xps-hotpatch${k.slice(1)}`)), sorted(Object.keys(API)));
  for (const k of subpaths) {
    const target = exports[k] as ExportTarget;
    assert.deepEqual(Object.keys(target), ['types', 'default'], `${k}: "types" must come first, then "default"`);
    assert.ok(existsSync(join(PACKAGE_ROOT, target.types)), `${k}: ${target.types} is missing`);
    assert.ok(existsSync(join(PACKAGE_ROOT, target.default)), `${k}: ${target.default} is missing`);
  }
});

for (const [specifier, api] of Object.entries(API)) {
  test(`${specifier} exports exactly its listed values and types`, async () => {
    const mod = (await import(specifier)) as Record<string, unknown>;
    assert.deepEqual(sorted(Object.keys(mod)), sorted(api.values), `${specifier}: the run-time exports changed`);
    const target = packageExports()[`.${specifier.slice('xps-hotpatch'.length)}`] as ExportTarget;
    const declared = declaredNames(join(PACKAGE_ROOT, target.types));
    const values = new Set(api.values);
    assert.deepEqual(sorted(declared.filter((n) => !values.has(n))), sorted(api.types), `${specifier}: the exported types changed`);
    assert.deepEqual(sorted(api.values.filter((n) => !declared.includes(n))), [], `${specifier}: values missing from the declarations`);
  });
}

test('the lists above are sorted and no name is both a value and a type', () => {
  for (const [specifier, api] of Object.entries(API)) {
    assert.deepEqual(api.values, sorted(api.values), `${specifier} values`);
    assert.deepEqual(api.types, sorted(api.types), `${specifier} types`);
    assert.deepEqual(
      api.values.filter((n) => api.types.includes(n)),
      [],
      specifier,
    );
  }
});

test('main and types point at the root entry point', () => {
  const pkg = JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { main: string; types: string };
  const root = packageExports()['.'] as ExportTarget;
  assert.equal(`./${pkg.main}`, root.default);
  assert.equal(`./${pkg.types}`, root.types);
});

/*
 * Run in a fresh process: which packages importing every entry point loads (CommonJS
 * packages land in the shared require cache, etcd3 and @grpc/grpc-js among them), then the
 * same after opening an etcd:// store — the control proving the check sees them when they
 * are loaded. The etcd store connects lazily, so no cluster is needed.
 */
const PROBE = `
import { createRequire } from 'node:module';
const packages = () => [...new Set(Object.keys(createRequire(import.meta.url).cache)
  .map((p) => /[\\\\/]node_modules[\\\\/]((?:@[^\\\\/]+[\\\\/])?[^\\\\/]+)/.exec(p)?.[1]?.replace('\\\\', '/'))
  .filter((p) => p !== undefined))].sort();
const result = {};
await import('xps-hotpatch');
result.root = packages();
for (const s of ${JSON.stringify(Object.keys(API).filter((s) => s !== 'xps-hotpatch'))}) await import(s);
result.all = packages();
const { openStore } = await import('xps-hotpatch/fleet');
const store = await openStore('etcd://127.0.0.1:1');
result.etcdOpened = packages();
await store.close();
console.log(JSON.stringify(result));
`;

test('importing the package loads neither etcd3 nor gRPC until an etcd:// store is opened', { timeout: 60_000 }, async () => {
  const r = await runNode(['--input-type=module', '-e', PROBE], { cwd: PACKAGE_ROOT, hangGuardMs: 50_000 });
  assert.equal(r.status, 0, r.stderr);
  const loaded = r.json as { root: string[]; all: string[]; etcdOpened: string[] };
  const etcd = (list: string[]): string[] => list.filter((p) => p === 'etcd3' || p.startsWith('@grpc/'));
  assert.deepEqual(etcd(loaded.all), [], 'an entry point loaded the etcd client');
  // The trust pipeline loads no runtime dependency either: no logger, no metrics.
  assert.deepEqual(
    loaded.root.filter((p) => ['pino', 'prom-client'].includes(p)),
    [],
    `the root loaded ${loaded.root.join(', ')}`,
  );
  // The control: opening an etcd store does load them, and the probe sees it.
  assert.ok(loaded.etcdOpened.includes('etcd3'), `etcd3 not seen after openStore: ${loaded.etcdOpened.join(', ')}`);
  assert.ok(loaded.etcdOpened.includes('@grpc/grpc-js'), `@grpc/grpc-js not seen after openStore: ${loaded.etcdOpened.join(', ')}`);
});

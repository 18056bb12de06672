import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { parseCommandArgs } from '../../src/cli/args.js';
import { CANARY_FLAGS, CANARY_FLAG_NAMES, canaryOptionsFromFlags, withCanaryFlags } from '../../src/cli/canary-flags.js';
import { UsageError } from '../../src/cli/cli-error.js';
import { hotpatch } from './run-cli.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hotpatch-canary-flags-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const options = (argv: string[]): Record<string, unknown> => canaryOptionsFromFlags(parseCommandArgs(argv, CANARY_FLAGS).values);
const usage = (message: RegExp) => (e: unknown) => e instanceof UsageError && e.code === 'INVALID' && message.test(e.message);

test('every canary flag sets its option; flags not given leave the defaults alone', () => {
  assert.deepEqual(options([]), {});
  assert.deepEqual(
    options([
      '--steps',
      '0.005, 0.05,0.25,0.5',
      '--canary-ratio',
      '0.005',
      '--canary-interval',
      '200',
      '--confidence',
      '0.995',
      '--max-error-excess',
      '0.001',
      '--max-latency-shift',
      '0.5',
      '--min-calls',
      '2000',
      '--min-calls-per-step',
      '80',
      '--warmup-calls',
      '0',
      '--call-timeout',
      '750',
      '--load-timeout',
      '5000',
      '--probation',
      '120000',
      '--no-probation-watch',
      '--retry-on-baseline',
    ]),
    {
      steps: [0.005, 0.05, 0.25, 0.5],
      canaryRatio: 0.005,
      canaryInterval: 200,
      confidence: 0.995,
      maxErrorExcess: 0.001,
      maxLatencyShift: 0.5,
      minCalls: 2000,
      minCallsPerStep: 80,
      warmupCalls: 0,
      canaryCallTimeoutMs: 750,
      loadTimeoutMs: 5000,
      probationMs: 120_000,
      probationWatch: false,
      retryOnBaseline: true,
    },
  );
  assert.deepEqual(options(['--min-calls=1e3', '--confidence', '.9']), { minCalls: 1000, confidence: 0.9 });
  assert.equal(CANARY_FLAG_NAMES.length, 14);
});

test('numbers are read strictly: empty, words, hex, blanks and overflowing values are usage errors naming the flag', () => {
  assert.throws(
    () => canaryOptionsFromFlags({ 'min-calls': '' }),
    (e) => e instanceof UsageError && /--min-calls needs a value/.test(e.message),
  );
  for (const [flag, value] of [
    ['min-calls', 'abc'],
    ['confidence', '1e999'],
    ['call-timeout', '0x10'],
    ['probation', ' 5'],
    ['max-latency-shift', 'Infinity'],
    ['warmup-calls', 'NaN'],
    ['canary-interval', '10ms'],
  ] as const) {
    assert.throws(() => canaryOptionsFromFlags({ [flag]: value }), usage(new RegExp(`^--${flag} must be a (finite )?number, got`)), `${flag} ${value}`);
  }
  assert.throws(() => canaryOptionsFromFlags({ steps: '0.5,,1' }), usage(/^--steps must be numbers separated by commas/));
  assert.throws(() => canaryOptionsFromFlags({ steps: '' }), usage(/--steps needs a value/));
});

test('values the canary refuses are usage errors carrying its message and the flag', () => {
  const refused: [Record<string, unknown>, RegExp][] = [
    [{ confidence: '1' }, /^--confidence: confidence must be a number in \(0, 1\)/],
    [{ 'max-error-excess': '2' }, /^--max-error-excess: maxErrorExcess must be a number in \[0, 1\]/],
    [{ 'max-latency-shift': '-0.5' }, /^--max-latency-shift: maxLatencyShift must be a finite number >= 0/],
    [{ 'min-calls': '1.5' }, /^--min-calls: minCalls must be an integer >= 0/],
    [{ 'min-calls-per-step': '0' }, /^--min-calls-per-step: minCallsPerStep must be an integer >= 1/],
    [{ 'warmup-calls': '-1' }, /^--warmup-calls: warmupCalls must be an integer >= 0/],
    [{ 'call-timeout': '0' }, /^--call-timeout: canaryCallTimeoutMs must be > 0/],
    [{ 'call-timeout': String(2 ** 31) }, /^--call-timeout: canaryCallTimeoutMs must be at most 2147483647 ms/],
    [{ probation: String(2 ** 31) }, /^--probation: probationMs must be at most/],
    [{ 'canary-interval': '3000000000' }, /^--canary-interval: canaryInterval must be at most/],
    [{ 'canary-ratio': '0' }, /^--canary-ratio: canaryRatio must be a number in \(0, 1\]/],
    [{ steps: '0.5,0.25' }, /^--steps: steps must increase/],
    [{ steps: '0.5,1.5' }, /^--steps: steps\[1\] must be a number in \(0, 1\]/],
  ];
  for (const [values, message] of refused) assert.throws(() => canaryOptionsFromFlags(values), usage(message), JSON.stringify(values));
});

test("flags laid over a plan file's zdt win field by field; --max-latency-shift replaces the file's older maxLatencyRatio", () => {
  const file = { steps: [0.5, 1], minCalls: 10, maxLatencyRatio: 3 };
  assert.deepEqual(withCanaryFlags(file, { minCalls: 500, confidence: 0.9 }, 'zdt'), { confidence: 0.9, maxLatencyRatio: 3, minCalls: 500, steps: [0.5, 1] });
  assert.deepEqual(withCanaryFlags(file, { maxLatencyShift: 0.2 }, 'zdt'), { maxLatencyShift: 0.2, minCalls: 10, steps: [0.5, 1] });
  assert.deepEqual(withCanaryFlags(undefined, { warmupCalls: 0 }, 'zdt'), { warmupCalls: 0 });
  assert.throws(() => withCanaryFlags('fast', { minCalls: 1 }, 'zdt'), usage(/must be an object of canary options/));
  assert.throws(() => withCanaryFlags({ bogus: 1 }, { minCalls: 1 }, 'zdt'), usage(/unknown or non-persistable field "bogus"/));
  assert.throws(
    () => withCanaryFlags({ probationMs: 2 ** 31 }, { minCalls: 1 }, 'zdt'),
    usage(/^zdt: probationMs must be at most/),
    'the merge is checked as a whole',
  );
});

test('hotpatch apply: a bad canary flag exits 2 with INVALID before any agent is reached', () => {
  const sock = join(dir, 'no-agent.sock'); // nothing listens: reaching it would be exit 3 (IO)
  const base = ['apply', '--agent', sock, '--target', 'xps.crypto.hash.sha256', '--patch', 'p1', '--json'];
  for (const bad of [
    ['--min-calls', 'abc'],
    ['--confidence', '1e999'],
    ['--confidence', '1'],
    ['--call-timeout', '0'],
    ['--probation', '9999999999'],
    ['--steps', '0.5,0.2'],
  ]) {
    const r = hotpatch([...base, ...bad]);
    assert.equal(r.status, 2, `${bad.join(' ')}: ${r.stderr}`);
    assert.equal(r.json?.ok, false);
    assert.equal(r.json?.code, 'INVALID');
    assert.match(String(r.json?.message), new RegExp(bad[0]!), bad.join(' '));
  }
  const flagWithValue = hotpatch([...base, '--no-probation-watch=yes']);
  assert.equal(flagWithValue.status, 2);
  // Good flags pass the check and go on to the (missing) agent: an operational error, exit 3.
  const good = hotpatch([...base, '--min-calls', '0', '--confidence', '0.95', '--no-probation-watch', '--retry-on-baseline']);
  assert.equal(good.status, 3, good.stderr);
  assert.equal(good.json?.code, 'IO');
});

test("hotpatch apply: canary flags go with --plan FILE (checked with the file's zdt) but not with --plan-id", async () => {
  const sock = join(dir, 'no-agent.sock');
  const planFile = join(dir, 'plan.json');
  await writeFile(
    planFile,
    JSON.stringify({
      id: 'p1',
      target: 'xps.a',
      repo: 'default',
      verifier: 'default',
      security: 'default',
      installer: 'default',
      zdt: { maxLatencyRatio: 2, steps: [0.5, 1] },
    }),
  );
  const withPlanId = hotpatch(['apply', '--agent', sock, '--plan-id', 'p1', '--min-calls', '5', '--json']);
  assert.equal(withPlanId.status, 2);
  assert.match(String(withPlanId.json?.message), /not --plan-id/);
  const badPatch = hotpatch(['apply', '--agent', sock, '--target', 'xps.demo.f', '--patch', '../x', '--json']);
  assert.equal(badPatch.status, 2, 'a bad patch id is a usage error before the agent is reached');
  assert.match(String(badPatch.json?.message), /^--patch "\.\.\/x" is not a valid patch id/);
  // The flag's maxLatencyShift replaces the file's maxLatencyRatio (both would be refused): the plan goes on to the missing agent (exit 3).
  assert.equal(hotpatch(['apply', '--agent', sock, '--plan', planFile, '--max-latency-shift', '0.5', '--json']).status, 3);
  const badMerge = join(dir, 'bad-plan.json');
  await writeFile(
    badMerge,
    JSON.stringify({
      id: 'p1',
      target: 'xps.a',
      repo: 'default',
      verifier: 'default',
      security: 'default',
      installer: 'default',
      zdt: { steps: [0.5, 1], typo: 1 },
    }),
  );
  const r = hotpatch(['apply', '--agent', sock, '--plan', badMerge, '--min-calls', '5', '--json']);
  assert.equal(r.status, 2, r.stderr);
  assert.equal(r.json?.code, 'INVALID');
  assert.match(String(r.json?.message), /unknown or non-persistable field "typo"/);
});

test('hotpatch apply --help and fleet --help list the canary flags', () => {
  for (const command of [
    ['apply', '--help'],
    ['fleet', '--help'],
  ]) {
    const r = hotpatch(command);
    assert.equal(r.status, 0);
    for (const flag of CANARY_FLAG_NAMES) assert.match(r.stdout, new RegExp(`--${flag}\\b`), `${command[0]}: --${flag}`);
  }
});

test('hotpatch fleet rollout: a bad canary flag exits 2 and the store is never opened', async () => {
  const storeDir = join(dir, 'fleet-store');
  const r = hotpatch([
    'fleet',
    'rollout',
    '--store',
    storeDir,
    '--target',
    'xps.a',
    '--patch',
    'p1',
    '--version',
    '1.0.1',
    '--payload-hash',
    `sha256:${'0'.repeat(64)}`,
    '--rings',
    '2',
    '--soak',
    '0',
    '--max-error-excess',
    '1.5',
    '--json',
  ]);
  assert.equal(r.status, 2, r.stderr);
  assert.equal(r.json?.code, 'INVALID');
  assert.match(String(r.json?.message), /^--max-error-excess: maxErrorExcess/);
  await assert.rejects(readdir(storeDir), (e: NodeJS.ErrnoException) => e.code === 'ENOENT', 'nothing was created');
  const other = hotpatch(['fleet', 'pause', '--store', storeDir, '--rollout', 'x', '--min-calls', '5']);
  assert.equal(other.status, 2, 'only rollout takes canary flags');
});

/*
 * The real `hotpatch` binary (node dist/src/cli/main.js) against an agent embedded in a
 * separate host process (agent-host.js) that keeps calling its own target, then the offline
 * `audit verify` and `report` commands on that host's state directory.
 */
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  FAST_ZDT,
  LONG_ZDT,
  T,
  call,
  faultySource,
  hotpatch,
  makeFixture,
  planOf,
  startHost,
  until,
  type CliResult,
  type Fixture,
  type Host,
} from './helpers.js';

interface TargetView {
  target: string;
  active: { version: string; patchId: string | null };
  frozen?: string;
  canary?: unknown;
}

describe('hotpatch operator commands against an agent in another process', { timeout: 80_000 }, () => {
  let fx: Fixture;
  let host: Host;
  let sock: string;

  const agentStatus = async (): Promise<TargetView> => {
    const r = await call({ socketPath: sock }, 'GET', '/v1/status');
    return (r.json.targets as TargetView[]).find((t) => t.target === T)!;
  };
  const planFile = async (name: string, plan: Record<string, unknown>): Promise<string> => {
    const file = join(fx.dir, `${name}.plan.json`);
    await writeFile(file, JSON.stringify(plan));
    return file;
  };
  const showFailure = (r: CliResult): string => `exit ${r.status}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;

  before(async () => {
    fx = await makeFixture('hotpatch-cli-agent-');
    await fx.publish('cli-good-1', '1.1.0');
    await fx.publish('cli-good-2', '1.2.0');
    await fx.publish('cli-faulty', '1.3.0', faultySource('cli-faulty'));
    await fx.publish('cli-good-3', '1.4.0');
    await fx.publish('cli-good-4', '1.5.0');
    await fx.publish('cli-good-5', '1.6.0');
    await fx.publish('cli-good-6', '1.7.0');
    sock = join(fx.dir, 'agent.sock');
    host = await startHost({ stateDir: fx.stateDir, socketPath: sock, repoDir: fx.repoDir, trustFile: fx.trustFile });
  });

  after(async () => {
    await host?.kill();
    await fx?.close();
  });

  test('status --json lists the host target; without --json it prints it for people', async () => {
    const r = await hotpatch(['status', '--agent', sock, '--json']);
    assert.equal(r.status, 0, showFailure(r));
    assert.equal(r.json?.ok, true);
    assert.equal(r.json?.code, 'OK');
    const targets = r.json?.targets as TargetView[];
    assert.deepEqual(
      targets.map((t) => [t.target, t.active.version, t.active.patchId]),
      [[T, '1.0.0', null]],
    );
    assert.deepEqual(r.json?.plans, []);
    const human = await hotpatch(['status', '--agent', `unix:${sock}`]);
    assert.equal(human.status, 0, showFailure(human));
    assert.match(human.stdout, new RegExp(`^${T.replace(/\./g, '\\.')}$`, 'm'));
    assert.match(human.stdout, /^ {2}active: {3}1\.0\.0 \(built-in\) in flight \d+, good$/m);
  });

  test('apply without --json prints plain progress lines (not a TTY): canary step, ratio, verdict, calls judged', async () => {
    const r = await hotpatch([
      'apply',
      '--agent',
      sock,
      '--target',
      T,
      '--patch',
      'cli-good-1',
      '--steps',
      '0.5,1',
      '--canary-interval',
      '20',
      '--min-calls',
      '0',
    ]);
    assert.equal(r.status, 0, showFailure(r));
    assert.match(r.stdout, /^canary step 1\/2 at 50\.0%: Successful( \([^)]*\))? — [\d,]+ calls?, 0 errors\b/m);
    assert.match(r.stdout, /^canary step 2\/2 at 100\.0%: Successful( \([^)]*\))? — [\d,]+ calls?, 0 errors\b/m);
    const judged = [...r.stdout.matchAll(/^canary step \d\/2 at [\d.]+%: Successful( \([^)]*\))? — ([\d,]+) calls?, 0 errors\b/gm)].map((m) =>
      Number(m[2]!.replaceAll(',', '')),
    );
    assert.equal(judged.length, 2, r.stdout);
    assert.ok(
      judged.every((n) => n > 0),
      `calls were judged: ${judged.join(', ')}`,
    );
    assert.doesNotMatch(r.stdout, /undefined|NaN/, 'no missing figure is printed');
    assert.match(r.stdout, /^Promoted +cli-good-1 1\.1\.0: every canary step passed\b/m);
    assert.match(r.stdout, /^Activated +cli-good-1 1\.1\.0: /m);
    assert.match(r.stdout, /^plan apply-cli-good-1-\d{8}T\d{6}Z-[0-9a-f]{4}: activated — /m);
    assert.doesNotMatch(r.stdout, /[\r\x1b]/, 'no terminal control characters when stdout is not a TTY');
    assert.equal((await agentStatus()).active.version, '1.1.0');
  });

  test('apply --target T --patch ID --json: exit 0, the last line is the activated outcome', async () => {
    const r = await hotpatch(['apply', '--agent', sock, '--target', T, '--patch', 'cli-good-2', '--steps', '0.5,1', '--canary-interval', '20', '--json']);
    assert.equal(r.status, 0, showFailure(r));
    assert.equal(r.stdout.trimEnd().split('\n').length, 1, 'with --json only the JSON line is printed');
    assert.equal(r.json?.ok, true);
    assert.equal(r.json?.code, 'OK');
    assert.match(String(r.json?.planId), /^apply-cli-good-2-\d{8}T\d{6}Z-[0-9a-f]{4}$/, 'every apply is a plan of its own');
    assert.equal(r.json?.status, 'activated');
    assert.equal(r.json?.patchId, 'cli-good-2');
    assert.equal(r.json?.version, '1.2.0');
    // A step may first be Inconclusive (too few calls at its first look); each step ends Successful.
    const steps = r.json?.steps as { step: number; verdict: string }[];
    assert.deepEqual(
      [1, 2].map((n) => steps.filter((x) => x.step === n).at(-1)?.verdict),
      ['Successful', 'Successful'],
      JSON.stringify(steps),
    );
    assert.ok(steps.every((x) => x.verdict !== 'Failed'));
    assert.equal((await agentStatus()).active.version, '1.2.0');
  });

  test('a faulty patch (wrong output for some inputs): apply exits 1 with CANARY_FAILED, nothing changes', async () => {
    const r = await hotpatch(['apply', '--agent', sock, '--target', T, '--patch', 'cli-faulty', '--steps', '0.5,1', '--canary-interval', '20', '--json']);
    assert.equal(r.status, 1, showFailure(r));
    assert.equal(r.json?.ok, false);
    assert.equal(r.json?.code, 'CANARY_FAILED');
    assert.match(String(r.json?.message), /candidate output differed from the baseline/);
    assert.equal((r.json?.detail as { status?: string }).status, 'rolled-back');
    assert.match(r.stderr, /^hotpatch: CANARY_FAILED: /m);
    assert.equal((await agentStatus()).active.version, '1.2.0');
  });

  test('rollback --json flips back to the previous version', async () => {
    const r = await hotpatch(['rollback', '--agent', sock, '--target', T, '--reason', 'operator drill', '--json']);
    assert.equal(r.status, 0, showFailure(r));
    assert.equal(r.json?.version, '1.1.0');
    assert.equal(r.json?.message, `${T} rolled back to 1.1.0`);
    assert.equal((await agentStatus()).active.version, '1.1.0');
  });

  test('freeze --reason refuses applies (exit 1, a clear message) until freeze --unfreeze', async () => {
    const usage = await hotpatch(['freeze', '--agent', sock, '--target', T, '--json']);
    assert.equal(usage.status, 2, showFailure(usage));
    assert.match(String(usage.json?.message), /--reason is required/);

    const f = await hotpatch(['freeze', '--agent', sock, '--target', T, '--reason', 'release freeze', '--json']);
    assert.equal(f.status, 0, showFailure(f));
    assert.equal(f.json?.frozen, 'release freeze');
    assert.equal((await agentStatus()).frozen, 'release freeze');

    const file = await planFile('good-3', planOf('plan-cli-good-3', 'cli-good-3', FAST_ZDT));
    const refused = await hotpatch(['apply', '--agent', sock, '--plan', file, '--json']);
    assert.equal(refused.status, 1, showFailure(refused));
    assert.equal(refused.json?.ok, false);
    assert.match(String(refused.json?.message), new RegExp(`target ${T.replace(/\./g, '\\.')} is frozen: release freeze`));
    assert.ok(['POLICY_DENIED', 'ABORTED'].includes(String(refused.json?.code)), showFailure(refused));
    assert.equal((await agentStatus()).active.version, '1.1.0');

    const u = await hotpatch(['freeze', '--agent', sock, '--target', T, '--unfreeze', '--json']);
    assert.equal(u.status, 0, showFailure(u));
    assert.equal((await agentStatus()).frozen, undefined);
    const again = await hotpatch(['apply', '--agent', sock, '--plan-id', 'plan-cli-good-3', '--json']);
    assert.equal(again.status, 0, showFailure(again));
    assert.equal(again.json?.status, 'activated');
    assert.equal((await agentStatus()).active.version, '1.4.0');
  });

  test('promote: no canary → exit 1 INVALID; during a canary → exit 0 and the apply activates', async () => {
    const none = await hotpatch(['promote', '--agent', sock, '--target', T, '--json']);
    assert.equal(none.status, 1, showFailure(none));
    assert.equal(none.json?.code, 'INVALID');
    assert.match(String(none.json?.message), /has no canary running to promote/);
    const usage = await hotpatch(['promote', '--agent', sock, '--json']);
    assert.equal(usage.status, 2, showFailure(usage));

    const file = await planFile('good-4', planOf('plan-cli-good-4', 'cli-good-4', LONG_ZDT));
    const applying = hotpatch(['apply', '--agent', sock, '--plan', file, '--json']);
    await until(async () => (await agentStatus()).canary !== undefined, 15_000, 'the canary to start', 20);
    const p = await hotpatch(['promote', '--agent', sock, '--target', T, '--json']);
    assert.equal(p.status, 0, showFailure(p));
    const r = await applying;
    assert.equal(r.status, 0, showFailure(r));
    assert.equal(r.json?.status, 'activated');
    assert.match(String(r.json?.reason), /promoted by operator/);
    assert.equal((await agentStatus()).active.version, '1.5.0');
  });

  test('abort during a canary: exit 0, and the apply exits 1 with ABORTED', async () => {
    const file = await planFile('good-5', planOf('plan-cli-good-5', 'cli-good-5', LONG_ZDT));
    const applying = hotpatch(['apply', '--agent', sock, '--plan', file, '--json']);
    await until(async () => (await agentStatus()).canary !== undefined, 15_000, 'the canary to start', 20);
    const a = await hotpatch(['abort', '--agent', sock, '--target', T, '--reason', 'pager went off', '--json']);
    assert.equal(a.status, 0, showFailure(a));
    const r = await applying;
    assert.equal(r.status, 1, showFailure(r));
    assert.equal(r.json?.code, 'ABORTED');
    assert.match(String(r.json?.message), /pager went off/);
    assert.equal((await agentStatus()).active.version, '1.5.0');
  });

  test('apply with a bad canary flag: exit 2 with INVALID naming the flag, and the agent never sees a plan', async () => {
    const plansBefore = (await call({ socketPath: sock }, 'GET', '/v1/plans')).json.plans;
    for (const bad of [['--min-calls', 'abc'], ['--confidence', '1'], ['--warmup-calls=-1'], ['--call-timeout', '1e999'], ['--probation', String(2 ** 31)]]) {
      const r = await hotpatch(['apply', '--agent', sock, '--target', T, '--patch', 'cli-good-6', ...bad, '--json']);
      assert.equal(r.status, 2, showFailure(r));
      assert.equal(r.json?.code, 'INVALID');
      assert.match(String(r.json?.message), new RegExp(`^${bad[0]!.split('=')[0]!}\\b`), showFailure(r));
    }
    assert.deepEqual((await call({ socketPath: sock }, 'GET', '/v1/plans')).json.plans, plansBefore, 'no plan was added');
    assert.equal((await agentStatus()).active.version, '1.5.0', 'nothing was applied');
  });

  test("apply with the canary flags: the stored plan carries them, and each progress line shows the judge's figures", async () => {
    const r = await hotpatch([
      'apply',
      '--agent',
      sock,
      '--target',
      T,
      '--patch',
      'cli-good-6',
      '--steps',
      '0.5,1',
      '--canary-interval',
      '20',
      '--confidence',
      '0.995',
      '--max-error-excess',
      '0.001',
      '--max-latency-shift',
      '999',
      '--min-calls',
      '50',
      '--min-calls-per-step',
      '20',
      '--warmup-calls',
      '0',
      '--call-timeout',
      '1000',
      '--probation',
      '0',
      '--no-probation-watch',
    ]);
    assert.equal(r.status, 0, showFailure(r));
    const step1 = /^canary step 1\/2 at 50\.0%: Successful.*$/m.exec(r.stdout)?.[0];
    assert.ok(step1 !== undefined, r.stdout);
    assert.match(step1, / — [\d,]+ calls, 0 errors \(baseline [\d.]+% of [\d,]+\)/, "the calls judged against the baseline's");
    assert.doesNotMatch(r.stdout, /undefined|NaN/);
    assert.match(r.stdout, /^plan apply-cli-good-6-\d{8}T\d{6}Z-[0-9a-f]{4}: activated — /m);
    const journal = JSON.parse(await readFile(join(fx.stateDir, 'journal.json'), 'utf8')) as {
      plans: { plan: { id: string; zdt?: Record<string, unknown> } }[];
    };
    assert.deepEqual(journal.plans.find((p) => p.plan.id.startsWith('apply-cli-good-6-'))?.plan.zdt, {
      canaryCallTimeoutMs: 1000,
      canaryInterval: 20,
      confidence: 0.995,
      maxErrorExcess: 0.001,
      maxLatencyShift: 999,
      minCalls: 50,
      minCallsPerStep: 20,
      probationMs: 0,
      probationWatch: false,
      steps: [0.5, 1],
      warmupCalls: 0,
    });
    assert.equal((await agentStatus()).active.version, '1.7.0');
  });

  test('events --count N --json prints N events, then the summary line', async () => {
    const streamsBefore = (await call({ socketPath: sock }, 'GET', '/v1/status')).json.eventStreams as number;
    const events = hotpatch(['events', '--agent', sock, '--count', '2', '--json'], { timeoutMs: 20_000 });
    // Once the follower's stream is open, one apply publishes the two events it waits for:
    // Requested (the operator's request), then Planned.
    await until(
      async () => ((await call({ socketPath: sock }, 'GET', '/v1/status')).json.eventStreams as number) > streamsBefore,
      15_000,
      'the follower to attach',
      20,
    );
    await call({ socketPath: sock }, 'POST', '/v1/apply', { plan: planOf('ping-0', 'unpublished-0') });
    const r = await events;
    assert.equal(r.status, 0, showFailure(r));
    const lines = r.stdout
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(lines.length, 3, r.stdout);
    assert.equal(lines[0]!.type, 'Requested');
    assert.match(String(lines[0]!.reason), /^apply of xps\.crypto\.hash\.sha256 requested by unix-socket$/);
    assert.equal(lines[1]!.type, 'Planned');
    for (const e of lines.slice(0, 2)) {
      assert.equal(e.target, T);
      assert.match(String(e.id), /^unpublished-\d+$/);
    }
    assert.deepEqual(lines[2], { ok: true, code: 'OK', message: '2 event(s)', events: 2 });
    const bad = await hotpatch(['events', '--agent', sock, '--count', '0', '--json']);
    assert.equal(bad.status, 2, showFailure(bad));
  });

  test('an unreachable agent is an operational error: exit 3, code IO', async () => {
    for (const agent of [join(fx.dir, 'no-such-dir', 'agent.sock'), `unix:${join(fx.dir, 'absent.sock')}`]) {
      const r = await hotpatch(['status', '--agent', agent, '--json']);
      assert.equal(r.status, 3, showFailure(r));
      assert.equal(r.json?.ok, false);
      assert.equal(r.json?.code, 'IO');
      assert.match(String(r.json?.message), /cannot reach the agent at/);
    }
    const apply = await hotpatch(['apply', '--agent', join(fx.dir, 'absent.sock'), '--target', T, '--patch', 'cli-good-1', '--json']);
    assert.equal(apply.status, 3, showFailure(apply));
    assert.equal(apply.json?.code, 'IO');
  });

  test('the host served every call right throughout and stops cleanly on SIGTERM', async () => {
    const stopped = await host.stop();
    const exit = await host.exited;
    assert.deepEqual(exit, { code: 0, signal: null }, host.stderr());
    assert.ok(stopped !== undefined, 'the host printed its stopped line');
    assert.ok(Number(stopped.calls) > 1000, `calls: ${String(stopped.calls)}`);
    assert.equal(stopped.errors, 0);
    assert.equal(stopped.wrong, 0, 'the faulty candidate never answered a caller wrongly');
  });

  test('audit verify --state DIR: exit 0 on the untouched state directory', async () => {
    const r = await hotpatch(['audit', 'verify', '--state', fx.stateDir, '--json']);
    assert.equal(r.status, 0, showFailure(r));
    assert.equal(r.json?.ok, true);
    assert.ok(Number(r.json?.lines) > 20);
    const human = await hotpatch(['audit', 'verify', '--state', fx.stateDir]);
    assert.equal(human.status, 0);
    assert.match(human.stdout, /^audit OK: \d+ line\(s\), head [0-9a-f]{64}$/m);
  });

  test('report --state DIR lists the applied patches with their signers and outcomes (md and json)', async () => {
    const md = await hotpatch(['report', '--state', fx.stateDir, '--format', 'md']);
    assert.equal(md.status, 0, showFailure(md));
    assert.match(md.stdout, /^# Hot patch compliance report$/m);
    assert.match(md.stdout, /\*\*Audit log: verified\.\*\*/);
    const row = (id: string, version: string, outcome: string): RegExp =>
      new RegExp(`^\\| ${id} \\| ${T.replace(/\./g, '\\.')} \\| ${version.replace(/\./g, '\\.')} \\| ${outcome} \\| ci \\| 0 \\|`, 'm');
    assert.match(md.stdout, row('cli-good-1', '1.1.0', 'activated'));
    assert.match(md.stdout, row('cli-good-2', '1.2.0', 'rolled-back'));
    assert.match(md.stdout, row('cli-faulty', '1.3.0', 'rolled-back'));
    assert.match(md.stdout, row('cli-good-3', '1.4.0', 'activated'));
    assert.match(md.stdout, row('cli-good-4', '1.5.0', 'activated'));
    assert.match(md.stdout, /^## cli-good-3$/m);

    const js = await hotpatch(['report', '--state', fx.stateDir, '--format', 'json']);
    assert.equal(js.status, 0, showFailure(js));
    const report = JSON.parse(js.stdout) as {
      audit: { ok: boolean };
      patches: { id: string; signers: string[]; signersSource: string; outcome: string; version: string; payload_hash?: string; reasons: string[] }[];
    };
    assert.equal(report.audit.ok, true);
    const p3 = report.patches.find((p) => p.id === 'cli-good-3');
    assert.ok(p3 !== undefined, js.stdout);
    assert.deepEqual(p3.signers, ['ci']);
    assert.equal(p3.signersSource, 'verified-event');
    assert.equal(p3.outcome, 'activated');
    assert.equal(p3.version, '1.4.0');
    assert.match(p3.payload_hash ?? '', /^sha256:[0-9a-f]{64}$/);
    assert.equal(report.patches.find((p) => p.id === 'cli-faulty')?.outcome, 'rolled-back');
    // An operator abort publishes Aborted, then RolledBack once calls are routed back: the last decides.
    const p5 = report.patches.find((p) => p.id === 'cli-good-5');
    assert.equal(p5?.outcome, 'rolled-back');
    assert.ok(
      p5?.reasons.some((x) => /^Aborted: pager went off/.test(x)),
      JSON.stringify(p5?.reasons),
    );

    const future = '2999-01-01T00:00:00Z';
    const none = await hotpatch(['report', '--state', fx.stateDir, '--since', future, '--format', 'json']);
    assert.equal(none.status, 0, showFailure(none));
    assert.deepEqual((JSON.parse(none.stdout) as { patches: unknown[] }).patches, []);
    const noneMd = await hotpatch(['report', '--state', fx.stateDir, '--since', future, '--format', 'md']);
    assert.equal(noneMd.status, 0, showFailure(noneMd));
    assert.match(noneMd.stdout, /^No patch events recorded\.$/m);
    const badSince = await hotpatch(['report', '--state', fx.stateDir, '--since', 'yesterday-ish', '--json']);
    assert.equal(badSince.status, 2, showFailure(badSince));
  });

  test('audit verify exits 1 naming the line after a line of audit.log is edited', async () => {
    const path = join(fx.stateDir, 'audit.log');
    const lines = (await readFile(path, 'utf8')).split('\n');
    const at = 4; // 1-based line number to edit
    const edited = lines[at - 1]!.replace(/"reason":"/, '"reason":"(edited) ');
    assert.notEqual(edited, lines[at - 1]);
    lines[at - 1] = edited;
    await writeFile(path, lines.join('\n'));
    const r = await hotpatch(['audit', 'verify', '--state', fx.stateDir, '--json']);
    assert.equal(r.status, 1, showFailure(r));
    assert.equal(r.json?.ok, false, showFailure(r));
    assert.equal(r.json?.code, 'INVALID');
    assert.match(String(r.json?.message), new RegExp(`^audit log broken at line ${at}: line ${at} was modified`));
    assert.equal((r.json?.detail as { firstBad: { line: number } }).firstBad.line, at);
    assert.match(r.stderr, new RegExp(`hotpatch: INVALID: audit log broken at line ${at}`));
    const md = await hotpatch(['report', '--state', fx.stateDir, '--format', 'md']);
    assert.equal(md.status, 0, showFailure(md));
    assert.match(md.stdout, new RegExp(`NOT VERIFIED — first bad line ${at}`));
  });
});

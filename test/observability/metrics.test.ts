import assert from 'node:assert/strict';
import { test } from 'node:test';
import { register as globalRegistry } from 'prom-client';
import { EventBus, HotPatchError } from '../../src/core/index.js';
import { HotPatchMetrics } from '../../src/observability/index.js';
import { CanaryRoute, HotPatchRuntime, type Target } from '../../src/zero-downtime/index.js';
import { event } from './helpers.js';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses the Prometheus text format (the subset prom-client writes). */
function parse(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m !== null, `unparsable line ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

function value(samples: Sample[], name: string, labels: Record<string, string>): number | undefined {
  const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  assert.ok(found.length <= 1, `${name} ${JSON.stringify(labels)} matches ${found.length} series`);
  return found[0]?.value;
}

const TARGET = 'xps.test.calc';

interface Calc {
  add(a: number, b: number): number;
  fail(): number;
}

function calc(offset: number): Calc {
  return {
    add: (a: number, b: number) => a + b + offset,
    fail: () => {
      throw new Error('boom');
    },
  };
}

function setup(): { bus: EventBus; runtime: HotPatchRuntime; target: Target<Calc>; metrics: HotPatchMetrics } {
  const bus = new EventBus();
  // No timed probe: the test arms it by hand, so the sample count is exact.
  const runtime = new HotPatchRuntime({ bus, durationProbeMs: 0 });
  const target = runtime.target(TARGET, { version: '1.0.0', impl: calc(0) });
  const metrics = new HotPatchMetrics({ runtime, bus });
  return { bus, runtime, target, metrics };
}

function call(target: Target<Calc>, ok: number, errors: number): void {
  for (let i = 0; i < ok; i++) target.api.add(i, 1);
  for (let i = 0; i < errors; i++) assert.throws(() => target.api.fail());
}

function version(target: Target<Calc>, v: string, offset: number): ReturnType<Target<Calc>['versionFrom']> {
  return target.versionFrom(calc(offset), { version: v, patchId: `patch-${v}`, hooks: {} });
}

test('calls, errors, durations, the active version and a zero canary ratio are exported for a steady target', async () => {
  const { target, metrics } = setup();
  call(target, 598, 5);
  // Durations are sampled by time: the runtime arms a probe a few times a second, and the
  // next call after each arming is timed. Arm it twice by hand.
  target.armProbe();
  call(target, 1, 0);
  target.armProbe();
  call(target, 1, 0);
  const s = parse(await metrics.metrics());
  assert.equal(value(s, 'hotpatch_calls_total', { target: TARGET, version: '1.0.0', outcome: 'ok' }), 600);
  assert.equal(value(s, 'hotpatch_calls_total', { target: TARGET, version: '1.0.0', outcome: 'error' }), 5);
  assert.equal(value(s, 'hotpatch_active_version_info', { target: TARGET, version: '1.0.0' }), 1);
  assert.equal(value(s, 'hotpatch_canary_ratio', { target: TARGET }), 0);
  assert.equal(value(s, 'hotpatch_rollbacks_total', { target: TARGET }), 0);
  const count = value(s, 'hotpatch_call_duration_seconds_count', { target: TARGET, version: '1.0.0' });
  assert.equal(count, 2);
  assert.equal(value(s, 'hotpatch_call_duration_seconds_bucket', { target: TARGET, version: '1.0.0', le: '+Inf' }), 2);
  assert.ok(s.some((x) => x.name === 'hotpatch_call_duration_seconds_bucket' && x.labels.le === '0.000001'));
  assert.match(metrics.contentType, /^text\/plain/);
  metrics.close();
});

test('events and rollbacks are counted by type and target from the bus', async () => {
  const { bus, metrics } = setup();
  bus.publish(event('Verified', 'p1', { target: TARGET }));
  bus.publish(event('Staged', 'p1', { target: TARGET }));
  bus.publish(event('RolledBack', 'p1', { target: TARGET }));
  bus.publish(event('RolledBack', 'p2', { target: 'xps.other' }));
  const s = parse(await metrics.metrics());
  assert.equal(value(s, 'hotpatch_events_total', { type: 'Verified', target: TARGET }), 1);
  assert.equal(value(s, 'hotpatch_events_total', { type: 'RolledBack', target: TARGET }), 1);
  assert.equal(value(s, 'hotpatch_rollbacks_total', { target: TARGET }), 1);
  assert.equal(value(s, 'hotpatch_rollbacks_total', { target: 'xps.other' }), 1);
  assert.equal(value(s, 'hotpatch_events_total', { type: 'Promoted', target: TARGET }), undefined);
  metrics.close();
});

test('with Object.prototype polluted (as a hostile payload might leave it), events are still counted and scrapes still work', async () => {
  const { bus, target, metrics } = setup();
  const proto = Object.prototype as Record<string, unknown>;
  proto.polluted = 'yes';
  try {
    bus.publish(event('Failed', 'p1', { target: TARGET }));
    bus.publish(event('RolledBack', 'p1', { target: TARGET }));
    call(target, 3, 1);
    const s = parse(await metrics.metrics());
    assert.equal(value(s, 'hotpatch_events_total', { type: 'Failed', target: TARGET }), 1);
    assert.equal(value(s, 'hotpatch_rollbacks_total', { target: TARGET }), 1);
    assert.equal(value(s, 'hotpatch_calls_total', { target: TARGET, version: '1.0.0', outcome: 'error' }), 1);
  } finally {
    delete proto.polluted;
    metrics.close();
  }
});

test("a canary shows its ratio and both versions' calls; after promotion only the new version is active", async () => {
  const { target, metrics } = setup();
  const candidate = version(target, '1.1.0', 100);
  const route = new CanaryRoute(
    target.active,
    candidate,
    {
      patchId: 'patch-1.1.0',
      deterministic: false,
      differentialSampleRate: 0,
      retryOnBaseline: false,
      routingKey: undefined,
      random: () => 0.5,
      warmupCalls: 0,
      latencyShare: 0.25,
      confidence: 0.99,
      deadlineMs: 5000,
      validate: undefined,
      methodNames: target.keys,
    },
    0.25,
  );
  target.setCanary(route);
  call(target, 400, 0);
  let s = parse(await metrics.metrics());
  assert.equal(value(s, 'hotpatch_canary_ratio', { target: TARGET }), 0.25);
  const base = value(s, 'hotpatch_calls_total', { target: TARGET, version: '1.0.0', outcome: 'ok' })!;
  const cand = value(s, 'hotpatch_calls_total', { target: TARGET, version: '1.1.0', outcome: 'ok' })!;
  assert.equal(base + cand, 400);
  assert.ok(cand > 40 && cand < 160, `candidate took ${cand} of 400 calls at 25 %`);
  assert.ok(value(s, 'hotpatch_call_duration_seconds_count', { target: TARGET, version: '1.1.0' })! > 0);

  target.promoteTo(candidate);
  s = parse(await metrics.metrics());
  assert.equal(value(s, 'hotpatch_canary_ratio', { target: TARGET }), 0);
  assert.equal(value(s, 'hotpatch_active_version_info', { target: TARGET, version: '1.1.0' }), 1);
  assert.equal(value(s, 'hotpatch_active_version_info', { target: TARGET, version: '1.0.0' }), undefined);
  metrics.close();
});

test('call counters never go backwards across scrapes, even when versions go away or come back', async () => {
  const { target, metrics } = setup();
  const seen = new Map<string, number>();
  const scrape = async (): Promise<void> => {
    const now = new Map<string, number>();
    for (const x of parse(await metrics.metrics())) {
      if (x.name === 'hotpatch_calls_total' || x.name === 'hotpatch_call_duration_seconds_count') now.set(`${x.name}${JSON.stringify(x.labels)}`, x.value);
    }
    for (const [key, before] of seen) {
      const after = now.get(key);
      assert.ok(after !== undefined, `${key} disappeared`);
      assert.ok(after >= before, `${key} went from ${before} to ${after}`);
    }
    for (const [key, v] of now) seen.set(key, v);
  };
  call(target, 300, 2);
  await scrape();
  target.promoteTo(version(target, '1.1.0', 1));
  call(target, 300, 3);
  await scrape();
  target.promoteTo(version(target, '1.2.0', 2)); // 1.1.0 is previous: still live
  call(target, 10, 0);
  await scrape();
  target.promoteTo(version(target, '1.3.0', 3)); // 1.1.0 is gone
  await scrape();
  // A new object for a version string seen before starts from zero calls of its own.
  target.promoteTo(version(target, '1.1.0', 4));
  call(target, 7, 1);
  await scrape();
  const s = parse(await metrics.metrics());
  assert.equal(value(s, 'hotpatch_calls_total', { target: TARGET, version: '1.1.0', outcome: 'ok' }), 307);
  assert.equal(value(s, 'hotpatch_calls_total', { target: TARGET, version: '1.1.0', outcome: 'error' }), 4);
  assert.equal(value(s, 'hotpatch_calls_total', { target: TARGET, version: '1.0.0', outcome: 'ok' }), 300);
  assert.equal(value(s, 'hotpatch_calls_total', { target: TARGET, version: '1.2.0', outcome: 'ok' }), 10);
  metrics.close();
});

test('async calls in flight are counted once they finish', async () => {
  const bus = new EventBus();
  const runtime = new HotPatchRuntime({ bus });
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const target = runtime.target('xps.test.async', {
    version: '1.0.0',
    impl: {
      async wait(fail: boolean): Promise<void> {
        await gate;
        if (fail) throw new Error('late failure');
      },
    },
  });
  const metrics = new HotPatchMetrics({ runtime, bus });
  const calls = [target.api.wait(false), target.api.wait(true)];
  let s = parse(await metrics.metrics());
  assert.equal(value(s, 'hotpatch_calls_total', { target: 'xps.test.async', outcome: 'ok' }), 0);
  assert.equal(value(s, 'hotpatch_calls_total', { target: 'xps.test.async', outcome: 'error' }), 0);
  release();
  await Promise.allSettled(calls);
  s = parse(await metrics.metrics());
  assert.equal(value(s, 'hotpatch_calls_total', { target: 'xps.test.async', outcome: 'ok' }), 1);
  assert.equal(value(s, 'hotpatch_calls_total', { target: 'xps.test.async', outcome: 'error' }), 1);
  metrics.close();
});

test('metrics live on their own registry, take a prefix, and close() detaches them', async () => {
  const bus = new EventBus();
  const runtime = new HotPatchRuntime({ bus });
  runtime.target(TARGET, { version: '1.0.0', impl: calc(0) });
  const metrics = new HotPatchMetrics({ runtime, bus, prefix: 'svc_hotpatch_' });
  bus.publish(event('Staged', 'p1', { target: TARGET }));
  const s = parse(await metrics.metrics());
  assert.equal(value(s, 'svc_hotpatch_events_total', { type: 'Staged', target: TARGET }), 1);
  assert.doesNotMatch(await globalRegistry.metrics(), /hotpatch_/);
  metrics.close();
  assert.equal(bus.listenerCount, 0);
  assert.equal(await metrics.metrics(), '\n');
  assert.throws(
    () => new HotPatchMetrics({ runtime, bus, prefix: 'bad prefix' }),
    (e) => e instanceof HotPatchError && e.code === 'INVALID',
  );
});

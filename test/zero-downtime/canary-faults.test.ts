import assert from 'node:assert/strict';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { HotPatchError, type HotPatchEvent } from '../../src/core/index.js';
import { twoPhaseApply, type ApplyResult } from '../../src/zero-downtime/index.js';
import { startCpuBurners, type CpuBurners } from '../support/cpu-burners.js';
import { drive, signedPatch, world, type World } from './fixtures.js';

// Real patch files (staged, hash-checked, import()ed) judged with the default options while a
// CPU-burning neighbour shares the machine: the judge must still promote the good patch and
// catch each faulty kind.

const SIGN = 'xps.test.sign.token';
const LOOKUP = 'xps.test.io.lookup';
const KEY = 'k'.repeat(32);

/** Not deterministic: a random salt in every token, so outputs cannot be compared. */
const signImpl = {
  sign: (s: string): string => {
    const salt = randomBytes(8).toString('hex');
    return `${salt}.${createHmac('sha256', KEY)
      .update(salt + s)
      .digest('hex')}`;
  },
};
const validToken = (out: unknown, args: readonly unknown[]): boolean => {
  if (typeof out !== 'string') return false;
  const [salt, mac] = out.split('.');
  return (
    mac ===
    createHmac('sha256', KEY)
      .update(`${salt}${String(args[0])}`)
      .digest('hex')
  );
};
const lookupImpl = {
  async lookup(key: string): Promise<string> {
    await new Promise((r) => setImmediate(r));
    return createHash('sha256').update(key).digest('hex');
  },
};

/** A patch for the sign target: the same algorithm, with `fault` spliced into the method body. */
function signPatch(fault: string): string {
  return `import { createHmac, randomBytes } from 'node:crypto';
let calls = 0;
const spin = (ms) => { const end = performance.now() + ms; while (performance.now() < end); };
void spin;
export const api = { sign(s) { calls += 1; ${fault}
  const salt = randomBytes(8).toString('hex');
  return salt + '.' + createHmac('sha256', '${KEY}').update(salt + s).digest('hex'); } };`;
}

let burners: CpuBurners;
before(async () => {
  burners = await startCpuBurners(1);
});
after(async () => {
  await burners.stop();
});

async function apply(
  w: World,
  id: string,
  target: string,
  source: string,
  load: (i: number) => unknown,
  options: Record<string, unknown> = {},
): Promise<{ result?: ApplyResult; error?: HotPatchError; load: Awaited<ReturnType<typeof drive>> }> {
  const { verified, payload } = signedPatch(id, target, '1.0.1', source);
  const running = twoPhaseApply(w.installer, verified, payload, { runtime: w.runtime, probationMs: 0, ...options });
  const driven = await drive(load, running);
  try {
    return { result: await running, load: driven };
  } catch (error) {
    if (!(error instanceof HotPatchError)) throw error;
    return { error, load: driven };
  }
}

function failedStep(events: readonly HotPatchEvent[]): Record<string, unknown> | undefined {
  return events.find((e) => e.type === 'CanaryStep' && e.detail?.verdict === 'Failed')?.detail;
}

describe('the canary judge beside a CPU-burning neighbour, default options, real patch files', { concurrency: false }, () => {
  test('a good re-implementation is promoted, with its figures in the Promoted event', async () => {
    const w = await world();
    try {
      const t = w.runtime.target(SIGN, { version: '1.0.0', impl: signImpl });
      const r = await apply(w, 'sign-good', SIGN, signPatch(''), (i) => t.api.sign(`m${i}`));
      assert.equal(r.error, undefined, r.error?.message);
      assert.equal(r.result?.outcome, 'promoted');
      assert.equal(r.load.errors.length, 0);
      const promoted = w.events.find((e) => e.type === 'Promoted')!;
      assert.equal((promoted.detail?.figures as { rule: string }).rule, 'no-regression');
      assert.match(promoted.reason, /Mann–Whitney U p=/);
    } finally {
      await w.close();
    }
  });

  test('a patch throwing on 0.1 % of calls of a target that cannot be shadowed is caught by the error test', async () => {
    const w = await world();
    try {
      const t = w.runtime.target(SIGN, { version: '1.0.0', impl: signImpl });
      const r = await apply(w, 'sign-throws', SIGN, signPatch(`if (calls % 1000 === 999) throw new Error('rare');`), (i) => t.api.sign(`m${i}`), {
        returnErrorOnCanaryFail: true,
      });
      assert.equal(r.error?.code, 'CANARY_FAILED', r.result?.reason);
      const step = failedStep(w.events)!;
      assert.ok(step.rule === 'error-excess' || step.rule === 'overwhelming-errors', String(step.rule));
      assert.equal(step.baselineErrors, 0);
      assert.equal(t.active.version, '1.0.0');
    } finally {
      await w.close();
    }
  });

  test('a patch 1.5 times slower is caught by the latency test, its effect size named', async () => {
    const w = await world();
    try {
      const spin = (ms: number): void => {
        const end = performance.now() + ms;
        while (performance.now() < end);
      };
      const t = w.runtime.target(SIGN, { version: '1.0.0', impl: { sign: (s: string) => (spin(0.1), signImpl.sign(s)) } });
      const r = await apply(w, 'sign-slow', SIGN, signPatch('spin(0.15);'), (i) => t.api.sign(`m${i}`));
      assert.equal(r.error?.code, 'CANARY_FAILED', r.result?.reason);
      const step = failedStep(w.events)!;
      assert.equal(step.rule, 'latency-shift');
      assert.ok((step.latencyRatio as number) > 1.3, String(step.latencyRatio));
      assert.ok((step.latencyP as number) < (step.alpha as number));
    } finally {
      await w.close();
    }
  });

  test('async calls that never settle count as errors at their deadline, and with retryOnBaseline every caller is answered', async () => {
    const w = await world();
    try {
      const t = w.runtime.target(LOOKUP, { version: '1.0.0', impl: lookupImpl, idempotent: true });
      const src = `import { createHash } from 'node:crypto';
let calls = 0;
export const api = { async lookup(key) { calls += 1; if (calls % 100 === 50) return new Promise(() => {});
  await new Promise((r) => setImmediate(r)); return createHash('sha256').update(key).digest('hex'); } };`;
      const { verified, payload } = signedPatch('lookup-hangs', LOOKUP, '1.0.1', src);
      const running = twoPhaseApply(w.installer, verified, payload, { runtime: w.runtime, probationMs: 0, retryOnBaseline: true });
      // 32 callers at once, as a server would have: one waiting on a hung call does not stop the others.
      const loads = await Promise.all(
        Array.from({ length: 32 }, (_, c) =>
          drive(async (i) => {
            const out = await t.api.lookup(`k${c}-${i}`);
            assert.equal(out, createHash('sha256').update(`k${c}-${i}`).digest('hex'));
            return out;
          }, running),
        ),
      );
      const r = await running.then(
        (result) => ({ result, error: undefined, load: { errors: loads.flatMap((l) => l.errors) } }),
        (error: HotPatchError) => ({ result: undefined, error, load: { errors: loads.flatMap((l) => l.errors) } }),
      );
      assert.equal(r.error?.code, 'CANARY_FAILED', r.result?.reason);
      const step = failedStep(w.events)!;
      assert.ok((step.timeouts as number) > 0, JSON.stringify(step));
      assert.match(r.error!.message, /past their deadline/);
      assert.equal(r.load.errors.length, 0, `client-visible failures: ${String(r.load.errors[0])}`);
    } finally {
      await w.close();
    }
  });

  test('the validate hook catches wrong outputs of a target that cannot be compared, and callers never see them', async () => {
    const w = await world();
    try {
      const t = w.runtime.target(SIGN, { version: '1.0.0', impl: signImpl, idempotent: true, validate: validToken });
      const src = signPatch(`if (calls % 100 === 7) return 'zz.' + s;`);
      const r = await apply(
        w,
        'sign-wrong',
        SIGN,
        src,
        (i) => {
          const out = t.api.sign(`m${i}`);
          assert.ok(validToken(out, [`m${i}`]), `a caller got ${out}`);
          return out;
        },
        { retryOnBaseline: true },
      );
      assert.equal(r.error?.code, 'CANARY_FAILED', r.result?.reason);
      const step = failedStep(w.events)!;
      assert.ok((step.invalidOutputs as number) > 0);
      assert.equal(r.load.errors.length, 0, String(r.load.errors[0]));
    } finally {
      await w.close();
    }
  });

  test('a candidate that fails every call from its N-th on is routed back within a few calls, mid-interval, even at 100 %', async () => {
    const w = await world();
    try {
      const t = w.runtime.target(SIGN, { version: '1.0.0', impl: signImpl });
      for (let i = 0; i < 2000; i++) t.api.sign(`warm${i}`);
      const r = await apply(w, 'sign-dies', SIGN, signPatch(`if (calls > 3000) throw new Error('dead');`), (i) => t.api.sign(`m${i}`), {
        steps: [1],
        canaryInterval: 60_000,
        minCalls: 0,
      });
      assert.equal(r.error?.code, 'CANARY_FAILED', r.result?.reason);
      const step = failedStep(w.events)!;
      assert.equal(step.rule, 'overwhelming-errors');
      // Judged at once rather than at the end of a 60 s interval: a few dozen failures at most, not
      // thousands. (Against a baseline record of 2,000 calls and 3,000 good candidate calls, Fisher
      // at the trip level needs about 25 errors: (3000/5000)^k < 2.5e-6.)
      assert.ok((step.candidateErrors as number) <= 50, `${String(step.candidateErrors)} errors served before routing back`);
      assert.ok(r.load.errors.length <= 50);
    } finally {
      await w.close();
    }
  });

  test('a failure that begins after promotion is caught by the probation watch, routed back to the warm previous version, and with retryOnBaseline no caller sees it', async () => {
    const w = await world();
    try {
      const t = w.runtime.target(SIGN, { version: '1.0.0', impl: signImpl, idempotent: true });
      const { verified, payload } = signedPatch('sign-late', SIGN, '1.0.1', signPatch(`if (globalThis.__lateFault === true) throw new Error('late');`));
      const running = twoPhaseApply(w.installer, verified, payload, { runtime: w.runtime, probationMs: 600_000, retryOnBaseline: true });
      await drive((i) => t.api.sign(`m${i}`), running);
      assert.equal((await running).outcome, 'promoted');
      const rolledBack = new Promise<HotPatchEvent>((resolve) => w.bus.subscribe((e) => e.type === 'RolledBack' && resolve(e)));
      (globalThis as { __lateFault?: boolean }).__lateFault = true;
      let served = 0;
      let failed = 0;
      await drive(() => {
        served += 1;
        try {
          return t.api.sign('x');
        } catch (error) {
          failed += 1;
          throw error;
        }
      }, rolledBack);
      const e = await rolledBack;
      assert.equal(e.detail?.phase, 'probation');
      assert.equal(t.active.version, '1.0.0');
      // retryOnBaseline: the promoted version's failed calls were answered by the previous one.
      assert.equal(failed, 0, `${failed} of ${served} calls failed before the route back`);
      assert.ok(served > 0);
      assert.doesNotThrow(() => t.api.sign('after'));
    } finally {
      delete (globalThis as { __lateFault?: boolean }).__lateFault;
      await w.close();
    }
  });
});

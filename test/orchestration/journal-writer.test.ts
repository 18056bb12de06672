import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { Journal, MAX_REASON, journalText } from '../../src/orchestration/journal.js';
import { JournalWriter } from '../../src/orchestration/journal-writer.js';
import type { PlanState } from '../../src/orchestration/plan.js';
import { planOf } from './helpers.js';

const LIMIT = 96 * 1024;

function planState(id: string): PlanState {
  return {
    plan: planOf(id, { patch: `fix-${id}` }) as PlanState['plan'],
    status: 'pending',
    reason: 'planned',
    attempts: 0,
    updatedAt: new Date().toISOString(),
  };
}

/** A change the planner makes to a plan between writes; reasons of every kind of character up to their bound. */
const changeArb = fc.record({
  plan: fc.nat(),
  reason: fc.oneof(fc.string({ maxLength: 64 }), fc.string({ unit: 'binary', minLength: MAX_REASON / 2, maxLength: MAX_REASON }), {
    arbitrary: fc.constantFrom('\u0000'.repeat(MAX_REASON), 'é'.repeat(MAX_REASON), '"'.repeat(MAX_REASON)),
    weight: 2,
  }),
  status: fc.constantFrom('pending', 'waiting', 'running', 'activated', 'failed'),
  /** Write now and wait for it; write in the background; or add a plan next. */
  then: fc.constantFrom('save', 'background', 'add'),
});

test('adding a plan is refused exactly when the journal would pass its limit, however much changed since the last write', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'journal-writer-'));
  const seen = { fits: 0, nearFits: 0, over: 0 };
  try {
    await fc.assert(
      fc.asyncProperty(fc.array(changeArb, { minLength: 20, maxLength: 60 }), async (changes) => {
        const states = new Map<string, PlanState>();
        const writer = new JournalWriter(new Journal(dir), () => [...states.values()].map((s) => structuredClone(s)), LIMIT);
        let next = 0;
        for (const change of changes) {
          if (change.then === 'add' || states.size === 0) {
            const added = planState(`p${next++}`);
            states.set(added.plan.id, added);
            const said = writer.bytesIfOver([...states.values()], added);
            const actual = Buffer.byteLength(journalText([...states.values()]));
            // Undefined must mean it fits; a figure must be the real, over-limit size (give or take the timestamp's width).
            if (said === undefined) assert.ok(actual <= LIMIT, `said it fits, but the journal is ${actual} bytes`);
            else assert.ok(actual > LIMIT && Math.abs(said - actual) <= 8, `said ${said}, actual ${actual}`);
            seen[said !== undefined ? 'over' : actual > LIMIT / 2 ? 'nearFits' : 'fits'] += 1;
            if (said !== undefined) states.delete(added.plan.id);
            else writer.saveInBackground();
            continue;
          }
          const ids = [...states.keys()];
          const state = states.get(ids[change.plan % ids.length]!)!;
          state.reason = change.reason.slice(0, MAX_REASON);
          state.status = change.status as PlanState['status'];
          state.updatedAt = new Date().toISOString();
          if (change.then === 'save') await writer.save();
          else writer.saveInBackground();
        }
        await writer.flush();
        writer.close();
      }),
      { numRuns: 25 },
    );
    // The property was exercised on both sides of the limit, and close to it.
    assert.ok(seen.over > 0 && seen.nearFits > 0 && seen.fits > 0, JSON.stringify(seen));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a write that failed is kept, retried by flush, and recognised as a journal error', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'journal-writer-'));
  try {
    const states = [planState('p1')];
    // The state directory is a file: every write fails until it is a directory again.
    await rm(dir, { recursive: true });
    const { writeFile, mkdir } = await import('node:fs/promises');
    await writeFile(dir, 'not a directory');
    const writer = new JournalWriter(new Journal(dir), () => states, LIMIT);
    const failed = await writer.save().then(
      () => undefined,
      (error: unknown) => error,
    );
    assert.ok(failed !== undefined && writer.isWriteError(failed), 'the write failed and is known as a journal write error');
    assert.equal(writer.isWriteError(new Error('other')), false);
    await assert.rejects(writer.flush(), 'flush retries the failed write and throws again');
    await rm(dir);
    await mkdir(dir);
    await writer.flush();
    const reread = await new Journal(dir).load();
    assert.deepEqual(
      reread.plans.map((p) => p.plan.id),
      ['p1'],
    );
    writer.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

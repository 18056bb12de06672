import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { HotPatchError } from '../../src/core/index.js';
import { WEEKDAYS, formatWeeklyWindow, parseWeeklyWindow, windowStatus, type WeeklyWindow } from '../../src/orchestration/index.js';

const ms = (iso: string): number => Date.parse(iso);
const isInvalid = (e: unknown): boolean => e instanceof HotPatchError && e.code === 'INVALID';
const TUE_THU = parseWeeklyWindow('Tue-Thu 09:00-16:00 UTC');

test('parseWeeklyWindow reads day ranges, day lists, en dashes and wrapping ranges', () => {
  assert.deepEqual(TUE_THU, { days: ['Tue', 'Wed', 'Thu'], start: '09:00', end: '16:00' });
  assert.deepEqual(parseWeeklyWindow('Mon,Wed 22:00-23:30 UTC'), { days: ['Mon', 'Wed'], start: '22:00', end: '23:30' });
  assert.deepEqual(parseWeeklyWindow('Tue\u2013Thu 09:00\u201316:00 UTC'), TUE_THU);
  assert.deepEqual(parseWeeklyWindow('Fri-Mon 00:00-24:00 UTC'), { days: ['Mon', 'Fri', 'Sat', 'Sun'], start: '00:00', end: '24:00' });
  assert.deepEqual(parseWeeklyWindow('Sat, Mon-Tue 01:00-02:00 UTC'), { days: ['Mon', 'Tue', 'Sat'], start: '01:00', end: '02:00' });
});

test('parseWeeklyWindow refuses anything else with INVALID', () => {
  for (const bad of [
    '',
    'Tue-Thu 09:00-16:00', // no zone: never guess local time
    'Tue-Thu 09:00-16:00 CET',
    'Tue-Thu 9:00-16:00 UTC',
    'Tue-Thu 16:00-09:00 UTC', // end before start
    'Tue-Thu 09:00-09:00 UTC',
    'Tue-Thu 09:00-24:01 UTC',
    'Tue-Thu 24:00-24:00 UTC',
    'Tue-Thu 09:60-10:00 UTC',
    'Tus-Thu 09:00-16:00 UTC',
    'Tue-Thu-Fri 09:00-16:00 UTC',
    'Tue,,Thu 09:00-16:00 UTC',
    '09:00-16:00 UTC',
  ]) {
    assert.throws(() => parseWeeklyWindow(bad), isInvalid, bad);
  }
  assert.throws(() => parseWeeklyWindow(42 as unknown as string), isInvalid);
});

test('windowStatus for "Tue-Thu 09:00-16:00 UTC" at the edges of the window', () => {
  const w = { weekly: [TUE_THU] };
  // 2030-01-01 is a Tuesday.
  assert.equal(new Date(ms('2030-01-01T00:00:00Z')).getUTCDay(), 2);
  const nextTue = ms('2030-01-08T09:00:00Z');
  const cases: [string, boolean, number | undefined][] = [
    ['2030-01-01T08:59:59.999Z', false, ms('2030-01-01T09:00:00Z')],
    ['2030-01-01T09:00:00.000Z', true, undefined],
    ['2030-01-02T12:30:00.000Z', true, undefined],
    ['2030-01-03T15:59:59.999Z', true, undefined],
    ['2030-01-03T16:00:00.000Z', false, nextTue],
    ['2030-01-04T10:00:00.000Z', false, nextTue], // Friday
    ['2030-01-06T23:59:59.000Z', false, nextTue], // Sunday
    ['2030-01-07T10:00:00.000Z', false, nextTue], // Monday
  ];
  for (const [at, open, next] of cases) {
    const s = windowStatus(w, ms(at));
    assert.equal(s.open, open, at);
    assert.equal(s.nextOpenMs, next, at);
    assert.equal(s.closedForever, undefined, at);
    if (!open) assert.match(s.reason, new RegExp(`outside Tue-Thu 09:00-16:00 UTC; next opening ${new Date(next!).toISOString()}`));
  }
});

test('windowStatus with notBefore / notAfter: waits, opens, and closes forever', () => {
  const w = { notBefore: '2030-01-01T10:00:00Z', notAfter: '2030-01-02T10:00:00Z' };
  const before = windowStatus(w, ms('2030-01-01T09:00:00Z'));
  assert.equal(before.open, false);
  assert.equal(before.nextOpenMs, ms('2030-01-01T10:00:00Z'));
  assert.match(before.reason, /before notBefore/);
  assert.equal(windowStatus(w, ms('2030-01-01T10:00:00Z')).open, true);
  const after = windowStatus(w, ms('2030-01-02T10:00:00Z'));
  assert.deepEqual([after.open, after.closedForever], [false, true]);
  assert.match(after.reason, /closed at 2030-01-02T10:00:00Z/);

  // notBefore and weekly together: the first weekly opening after notBefore.
  const both = windowStatus({ notBefore: '2030-01-02T17:00:00Z', weekly: [TUE_THU] }, ms('2030-01-01T12:00:00Z'));
  assert.equal(both.nextOpenMs, ms('2030-01-03T09:00:00Z'));
  // No weekly opening is left before notAfter: closed for good.
  const none = windowStatus({ notAfter: '2030-01-05T00:00:00Z', weekly: [TUE_THU] }, ms('2030-01-03T17:00:00Z'));
  assert.deepEqual([none.open, none.closedForever], [false, true]);
  assert.equal(windowStatus(undefined, 0).open, true);
});

test('windowStatus checks its window strictly', () => {
  assert.throws(() => windowStatus({ notBefore: 'yesterday' }, 0), isInvalid);
  assert.throws(() => windowStatus({ notBefore: '2030-01-02T00:00:00Z', notAfter: '2030-01-01T00:00:00Z' }, 0), isInvalid);
  assert.throws(() => windowStatus({ weekly: [] }, 0), isInvalid);
  assert.throws(() => windowStatus({ weekly: [{ days: ['Tue', 'Tue'], start: '09:00', end: '10:00' }] }, 0), isInvalid);
  assert.throws(() => windowStatus({ weekly: [{ days: ['Tue'], start: '09:00', end: '10:00', tz: 'CET' } as unknown as WeeklyWindow] }, 0), isInvalid);
  assert.throws(() => windowStatus({ every: 'day' } as never, 0), isInvalid);
  assert.throws(() => windowStatus(undefined, Number.NaN), isInvalid);
});

const weeklyArb = fc
  .record({
    days: fc.subarray([...WEEKDAYS], { minLength: 1 }),
    a: fc.integer({ min: 0, max: 24 * 60 }),
    b: fc.integer({ min: 0, max: 24 * 60 }),
  })
  .filter(({ a, b }) => a !== b && Math.min(a, b) < 24 * 60)
  .map(({ days, a, b }): WeeklyWindow => {
    const hhmm = (m: number): string => `${String(Math.floor(m / 60)).padStart(2, '0')}:${String(m % 60).padStart(2, '0')}`;
    return { days, start: hhmm(Math.min(a, b)), end: hhmm(Math.max(a, b)) };
  });
const instantArb = fc.integer({ min: ms('2000-01-01T00:00:00Z'), max: ms('2100-01-01T00:00:00Z') });

/** The definition, independently: the instant's UTC weekday is listed and start <= time of day < end. */
function inside(w: WeeklyWindow, at: number): boolean {
  const d = new Date(at);
  const day = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'][d.getUTCDay()]!;
  const minutes = (s: string): number => Number(s.slice(0, 2)) * 60 + Number(s.slice(3));
  const timeMs = at - Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate());
  return (w.days as string[]).includes(day) && timeMs >= minutes(w.start) * 60_000 && timeMs < minutes(w.end) * 60_000;
}

test('property: windowStatus(weekly).open holds exactly when the UTC weekday is listed and start <= time < end', () => {
  fc.assert(
    fc.property(weeklyArb, instantArb, (w, at) => {
      assert.equal(windowStatus({ weekly: [w] }, at).open, inside(w, at));
    }),
    { numRuns: 2000 },
  );
});

test('property: a closed weekly window names the first instant it is open again', () => {
  fc.assert(
    fc.property(fc.array(weeklyArb, { minLength: 1, maxLength: 3 }), instantArb, (ws, at) => {
      const s = windowStatus({ weekly: ws }, at);
      const anyInside = (t: number): boolean => ws.some((w) => inside(w, t));
      assert.equal(s.open, anyInside(at));
      if (s.open) return;
      const next = s.nextOpenMs!;
      assert.ok(next > at && next - at <= 8 * 86_400_000);
      assert.ok(anyInside(next), 'open at nextOpenMs');
      assert.ok(!anyInside(next - 1), 'closed just before nextOpenMs');
      // Openings only begin at a window's start minute, so no minute boundary in between is open.
      for (let t = Math.ceil((at + 1) / 60_000) * 60_000; t < next; t += 60_000 * 7) assert.ok(!anyInside(t));
    }),
    { numRuns: 300 },
  );
});

test('property: formatWeeklyWindow and parseWeeklyWindow round-trip', () => {
  fc.assert(
    fc.property(weeklyArb, (w) => {
      const sorted = { ...w, days: [...w.days].sort((a, b) => WEEKDAYS.indexOf(a) - WEEKDAYS.indexOf(b)) };
      assert.deepEqual(parseWeeklyWindow(formatWeeklyWindow(sorted)), sorted);
    }),
  );
});

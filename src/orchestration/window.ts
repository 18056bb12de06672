import { HotPatchError, asObject, describe, parseRfc3339, rejectUnknownFields } from '../core/index.js';

/**
 * Time windows of a plan: an absolute span (`notBefore` … `notAfter`) and, optionally, weekly
 * recurring windows in UTC ("Tue-Thu 09:00-16:00 UTC"). A plan runs only while every part
 * that is given is open. All of it is pure (an instant in, a verdict out).
 */

export const WEEKDAYS = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'] as const;
export type Weekday = (typeof WEEKDAYS)[number];

export interface WeeklyWindow {
  /** Days on which the window opens, in week order (Mon … Sun), no duplicates. */
  days: Weekday[];
  /** "HH:MM" UTC, 00:00 … 23:59. */
  start: string;
  /** "HH:MM" UTC, after `start`; "24:00" is the end of the day. A window never spans midnight. */
  end: string;
}

export interface TimeWindow {
  /** RFC 3339: the plan does not run before this instant. */
  notBefore?: string;
  /** RFC 3339: the plan does not start at or after this instant; past it the plan fails. */
  notAfter?: string;
  /** Recurring UTC windows; the plan runs inside any of them (non-empty when given). */
  weekly?: WeeklyWindow[];
}

export interface WindowStatus {
  open: boolean;
  /** Why, in words: "outside Tue-Thu 09:00-16:00 UTC; next opening 2030-01-01T09:00:00.000Z". */
  reason: string;
  /** When closed but not forever: the first instant (epoch ms) at which it is open. */
  nextOpenMs?: number;
  /** Past `notAfter`, or no weekly opening is left before it: the plan can never run. */
  closedForever?: boolean;
}

const DAY_MS = 86_400_000;
const MINUTE_MS = 60_000;
const WINDOW_FIELDS = new Set(['notBefore', 'notAfter', 'weekly']);
const WEEKLY_FIELDS = new Set(['days', 'start', 'end']);
const HHMM = /^([01]\d|2[0-4]):([0-5]\d)$/;
const MAX_WEEKLY_WINDOWS = 64;
const MAX_WINDOW_TEXT = 256;

/** Minutes after midnight of an "HH:MM" string; "24:00" only where `allowEndOfDay`. */
function minutesOf(value: unknown, field: string, allowEndOfDay: boolean): number {
  if (typeof value !== 'string') throw new HotPatchError('INVALID', `${field} must be an "HH:MM" string, got ${describe(value)}`);
  const m = HHMM.exec(value);
  if (m === null) throw new HotPatchError('INVALID', `${field} ${JSON.stringify(value)} is not an "HH:MM" time (00:00-23:59)`);
  const minutes = Number(m[1]) * 60 + Number(m[2]);
  if (minutes > 24 * 60 || (minutes === 24 * 60 && !allowEndOfDay)) {
    throw new HotPatchError(
      'INVALID',
      `${field} ${JSON.stringify(value)} is not a time of day${allowEndOfDay ? ' (24:00 is the latest end)' : ' (the latest start is 23:59)'}`,
    );
  }
  return minutes;
}

function dayIndex(name: string, field: string): number {
  const i = WEEKDAYS.findIndex((d) => d.toLowerCase() === name.toLowerCase());
  if (i < 0) throw new HotPatchError('INVALID', `${field}: ${JSON.stringify(name)} is not a weekday (${WEEKDAYS.join(', ')})`);
  return i;
}

/**
 * Parses a weekly window: days (names, ranges `Tue-Thu` — wrapping like `Fri-Mon` allowed —
 * separated by commas), a start and an end time, and the literal zone `UTC`:
 * `"Tue-Thu 09:00-16:00 UTC"`, `"Mon,Wed 22:00-23:30 UTC"`. An en dash works as the dash.
 * The zone is required, so nobody reads a UTC window as local time. INVALID otherwise.
 */
export function parseWeeklyWindow(text: string): WeeklyWindow {
  if (typeof text !== 'string') throw new HotPatchError('INVALID', `weekly window must be a string, got ${describe(text)}`);
  if (text.length > MAX_WINDOW_TEXT) throw new HotPatchError('INVALID', `weekly window is longer than ${MAX_WINDOW_TEXT} characters`);
  const m = /^\s*(\S(?:.*\S)?)\s+(\d{2}:\d{2})\s*[-\u2013]\s*(\d{2}:\d{2})\s+UTC\s*$/.exec(text);
  if (m === null) {
    throw new HotPatchError('INVALID', `weekly window ${JSON.stringify(text)} must look like "Tue-Thu 09:00-16:00 UTC" or "Mon,Wed 22:00-23:30 UTC"`);
  }
  const field = `weekly window ${JSON.stringify(text)}`;
  const selected = new Set<number>();
  for (const rawItem of m[1]!.split(',')) {
    const item = rawItem.trim();
    const range = /^([A-Za-z]+)\s*[-\u2013]\s*([A-Za-z]+)$/.exec(item);
    if (range !== null) {
      const from = dayIndex(range[1]!, field);
      const to = dayIndex(range[2]!, field);
      for (let d = from; ; d = (d + 1) % 7) {
        selected.add(d);
        if (d === to) break;
      }
    } else if (/^[A-Za-z]+$/.test(item)) {
      selected.add(dayIndex(item, field));
    } else {
      throw new HotPatchError('INVALID', `${field}: ${JSON.stringify(item)} is neither a weekday nor a range of weekdays`);
    }
  }
  return checkWeeklyWindow({ days: [...selected].sort((a, b) => a - b).map((d) => WEEKDAYS[d]!), start: m[2]!, end: m[3]! }, field);
}

/** "Tue-Thu 09:00-16:00 UTC" style text of a window (consecutive days collapsed to ranges). */
export function formatWeeklyWindow(window: WeeklyWindow): string {
  const idx = window.days.map((d) => WEEKDAYS.indexOf(d)).sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < idx.length;) {
    let j = i;
    while (j + 1 < idx.length && idx[j + 1] === idx[j]! + 1) j++;
    parts.push(
      j - i >= 2
        ? `${WEEKDAYS[idx[i]!]}-${WEEKDAYS[idx[j]!]}`
        : idx
            .slice(i, j + 1)
            .map((d) => WEEKDAYS[d])
            .join(','),
    );
    i = j + 1;
  }
  return `${parts.join(',')} ${window.start}-${window.end} UTC`;
}

/** Strict check of a weekly window object; returns a normalised copy (days in week order). */
export function checkWeeklyWindow(value: unknown, field = 'weekly window'): WeeklyWindow {
  const obj = asObject(value, field);
  rejectUnknownFields(obj, WEEKLY_FIELDS, field);
  if (!Array.isArray(obj.days) || obj.days.length === 0) throw new HotPatchError('INVALID', `${field}.days must be a non-empty array of weekdays`);
  const seen = new Set<number>();
  for (const d of obj.days) {
    if (typeof d !== 'string' || !(WEEKDAYS as readonly string[]).includes(d)) {
      throw new HotPatchError('INVALID', `${field}.days: ${describe(d)} is not one of ${WEEKDAYS.join(', ')}`);
    }
    const i = WEEKDAYS.indexOf(d as Weekday);
    if (seen.has(i)) throw new HotPatchError('INVALID', `${field}.days lists ${d} twice`);
    seen.add(i);
  }
  const start = minutesOf(obj.start, `${field}.start`, false);
  const end = minutesOf(obj.end, `${field}.end`, true);
  if (end <= start) {
    throw new HotPatchError(
      'INVALID',
      `${field}: end ${String(obj.end)} must be after start ${String(obj.start)} (a window never spans midnight; use two windows)`,
    );
  }
  return { days: [...seen].sort((a, b) => a - b).map((i) => WEEKDAYS[i]!), start: obj.start as string, end: obj.end as string };
}

/** Strict check of a time window; returns a normalised copy. */
export function checkTimeWindow(value: unknown, field = 'window'): TimeWindow {
  const obj = asObject(value, field);
  rejectUnknownFields(obj, WINDOW_FIELDS, field);
  const out: TimeWindow = {};
  let nb: number | undefined;
  let na: number | undefined;
  if (obj.notBefore !== undefined) {
    nb = parseRfc3339(obj.notBefore, `${field}.notBefore`);
    out.notBefore = obj.notBefore as string;
  }
  if (obj.notAfter !== undefined) {
    na = parseRfc3339(obj.notAfter, `${field}.notAfter`);
    out.notAfter = obj.notAfter as string;
  }
  if (nb !== undefined && na !== undefined && na <= nb) {
    throw new HotPatchError('INVALID', `${field}: notAfter ${out.notAfter} must be after notBefore ${out.notBefore}`);
  }
  if (obj.weekly !== undefined) {
    if (!Array.isArray(obj.weekly) || obj.weekly.length === 0 || obj.weekly.length > MAX_WEEKLY_WINDOWS) {
      throw new HotPatchError('INVALID', `${field}.weekly must be an array of 1-${MAX_WEEKLY_WINDOWS} weekly windows`);
    }
    out.weekly = obj.weekly.map((w, i) => checkWeeklyWindow(w, `${field}.weekly[${i}]`));
  }
  return out;
}

/** UTC weekday of an instant as an index into WEEKDAYS (0 = Mon). */
function weekdayOf(ms: number): number {
  return (new Date(ms).getUTCDay() + 6) % 7;
}

/** The first instant >= `from` inside one of the weekly windows (always within 8 days). */
function nextWeeklyOpening(weekly: readonly WeeklyWindow[], from: number): number {
  const firstDay = Math.floor(from / DAY_MS) * DAY_MS;
  let best = Infinity;
  for (let k = 0; k <= 7; k++) {
    const day = firstDay + k * DAY_MS;
    const name = WEEKDAYS[weekdayOf(day)]!;
    for (const w of weekly) {
      if (!w.days.includes(name)) continue;
      const start = day + minutesOf(w.start, 'start', false) * MINUTE_MS;
      const end = day + minutesOf(w.end, 'end', true) * MINUTE_MS;
      if (end > from) best = Math.min(best, Math.max(start, from));
    }
    if (best !== Infinity) return best;
  }
  return best;
}

/**
 * Whether a plan may run at `nowMs`. Without a window it always may. Closed windows say when
 * they open next; past `notAfter` (or with no weekly opening left before it) `closedForever`.
 */
export function windowStatus(window: TimeWindow | undefined, nowMs: number): WindowStatus {
  if (typeof nowMs !== 'number' || !Number.isFinite(nowMs)) throw new HotPatchError('INVALID', `nowMs must be a finite number, got ${describe(nowMs)}`);
  if (window === undefined) return { open: true, reason: 'no time window' };
  const w = checkTimeWindow(window);
  const notBefore = w.notBefore === undefined ? undefined : parseRfc3339(w.notBefore, 'notBefore');
  const notAfter = w.notAfter === undefined ? undefined : parseRfc3339(w.notAfter, 'notAfter');
  const weeklyText = w.weekly === undefined ? undefined : w.weekly.map(formatWeeklyWindow).join(' or ');
  if (notAfter !== undefined && nowMs >= notAfter) {
    return { open: false, closedForever: true, reason: `the time window closed at ${w.notAfter}` };
  }
  const from = notBefore !== undefined && notBefore > nowMs ? notBefore : nowMs;
  const next = w.weekly === undefined ? from : nextWeeklyOpening(w.weekly, from);
  if (notAfter !== undefined && next >= notAfter) {
    return {
      open: false,
      closedForever: true,
      reason: `no opening of ${weeklyText ?? 'the window'} is left before notAfter ${w.notAfter}`,
    };
  }
  if (next === nowMs) {
    const parts = [weeklyText === undefined ? undefined : `inside ${weeklyText}`, w.notAfter === undefined ? undefined : `until notAfter ${w.notAfter}`];
    return { open: true, reason: `time window open${parts.some((p) => p !== undefined) ? ` (${parts.filter((p) => p !== undefined).join(', ')})` : ''}` };
  }
  const why = notBefore !== undefined && nowMs < notBefore ? `before notBefore ${w.notBefore}` : `outside ${weeklyText ?? 'the time window'}`;
  return { open: false, nextOpenMs: next, reason: `${why}; next opening ${new Date(next).toISOString()}` };
}

import { HotPatchError } from './errors.js';

// Full-date "T" full-time with a mandatory offset (RFC 3339 §5.6). Leap seconds (":60")
// are refused: JavaScript dates cannot represent them and a manifest has no need for one.
const RFC3339_PATTERN = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;

/** Parses an RFC 3339 timestamp to epoch milliseconds, refusing impossible dates (Feb 30). */
export function parseRfc3339(value: unknown, field: string): number {
  if (typeof value !== 'string') {
    throw new HotPatchError('INVALID', `${field} must be an RFC 3339 string, got ${typeof value}`);
  }
  const m = RFC3339_PATTERN.exec(value);
  if (m === null) {
    throw new HotPatchError('INVALID', `${field} ${JSON.stringify(value)} is not an RFC 3339 date-time`);
  }
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const fraction = m[7] === undefined ? 0 : Math.floor(Number(`0${m[7]}`) * 1000);
  let offsetMinutes = 0;
  if (m[9] !== undefined) {
    const offH = Number(m[10]);
    const offM = Number(m[11]);
    if (offH > 23 || offM > 59) {
      throw new HotPatchError('INVALID', `${field} ${JSON.stringify(value)} has an impossible UTC offset`);
    }
    offsetMinutes = (m[9] === '-' ? -1 : 1) * (offH * 60 + offM);
  }
  const local = Date.UTC(year, month - 1, day, hour, minute, second, fraction);
  const check = new Date(local);
  if (
    check.getUTCFullYear() !== year ||
    check.getUTCMonth() !== month - 1 ||
    check.getUTCDate() !== day ||
    check.getUTCHours() !== hour ||
    check.getUTCMinutes() !== minute ||
    check.getUTCSeconds() !== second
  ) {
    throw new HotPatchError('INVALID', `${field} ${JSON.stringify(value)} names a date or time that does not exist`);
  }
  return local - offsetMinutes * 60_000;
}

import { randomBytes } from 'node:crypto';
import { HotPatchError } from '../core/index.js';
import { PLAN_STATUSES, type PlanState, type PlanStatus, type Planner } from '../orchestration/index.js';

/** Plans per page when the request names no `limit`. */
export const DEFAULT_PLAN_PAGE = 100;
/** The largest `limit` a request may ask for. */
export const MAX_PLAN_PAGE = 1000;

export interface PlanPageQuery {
  limit: number;
  /** The `next` of the previous page, as sent (checked against the agent's order by `planPage`). */
  after?: string;
}

/**
 * An endpoint's query parameters are `allowed` ones, each given once: INVALID otherwise, so a
 * typo never silently falls back to a default.
 */
export function checkQueryNames(url: URL, allowed: readonly string[]): void {
  const names = [...url.searchParams.keys()];
  for (const name of names) {
    if (!allowed.includes(name)) {
      throw new HotPatchError(
        'INVALID',
        `${url.pathname}: unknown query parameter ${JSON.stringify(name.slice(0, 64))} (allowed: ${allowed.join(', ') || 'none'})`,
      );
    }
    if (names.indexOf(name) !== names.lastIndexOf(name)) throw new HotPatchError('INVALID', `${url.pathname}: ${name} is given more than once`);
  }
}

/**
 * Reads `?limit=N&after=CURSOR` strictly: an unknown parameter, a repeated one, a limit that
 * is not a whole number in [1, MAX_PLAN_PAGE] → INVALID, so a typo never silently returns
 * the default page.
 */
export function planPageQuery(url: URL): PlanPageQuery {
  checkQueryNames(url, ['limit', 'after']);
  const query: PlanPageQuery = { limit: DEFAULT_PLAN_PAGE };
  const limit = url.searchParams.get('limit');
  if (limit !== null) {
    // Digits only: Number() would take "1e3", " 7", "0x10" and "" as numbers.
    const n = /^[0-9]{1,7}$/.test(limit) ? Number(limit) : NaN;
    if (!(n >= 1 && n <= MAX_PLAN_PAGE)) {
      throw new HotPatchError('INVALID', `${url.pathname}: limit must be a whole number from 1 to ${MAX_PLAN_PAGE}, got ${JSON.stringify(limit.slice(0, 64))}`);
    }
    query.limit = n;
  }
  const after = url.searchParams.get('after');
  if (after !== null) query.after = after;
  return query;
}

export interface PlanPage {
  plans: Record<string, unknown>[];
  /** Plans the agent holds in all. */
  total: number;
  /** Plans of each status, every status present. */
  counts: Record<PlanStatus, number>;
  /** Present when more plans follow: pass it as `after` for the next page. */
  next?: string;
}

/**
 * A position for every plan, increasing along the planner's order (the order plans were
 * added), kept across requests. A cursor is a position, not a plan id nor an index: the
 * planner drops old finished plans (and `removePlan` any), so the plan a page ended at may be
 * gone when the next page is asked for, and every index after it shifts; a position still
 * says where to resume, so no plan is skipped or served twice. Positions are this process's:
 * the cursor carries an epoch, and one from an earlier run of the agent is refused.
 */
class PlanOrder {
  readonly epoch = randomBytes(4).toString('hex');
  readonly #positions = new Map<string, number>();
  #last = 0;

  /** The positions of `states` (the planner's whole list, in its order). */
  number(states: readonly PlanState[]): number[] {
    const out: number[] = [];
    let previous = 0;
    for (const s of states) {
      let at = this.#positions.get(s.plan.id);
      // New, or removed and added again (the planner appends it): a new position at the end.
      if (at === undefined || at <= previous) {
        at = ++this.#last;
        this.#positions.set(s.plan.id, at);
      }
      out.push(at);
      previous = at;
    }
    if (this.#positions.size > states.length) {
      // Plans gone since the last request: forget them, so the map stays the planner's size.
      const ids = new Set(states.map((s) => s.plan.id));
      for (const id of this.#positions.keys()) if (!ids.has(id)) this.#positions.delete(id);
    }
    return out;
  }

  cursor(position: number): string {
    return `${this.epoch}.${position}`;
  }

  /** The position a cursor names; INVALID for anything this process did not hand out. */
  position(cursor: string): number {
    const m = /^([0-9a-f]{8})\.([1-9][0-9]{0,15})$/.exec(cursor);
    const at = m === null ? NaN : Number(m[2]);
    if (m === null || m[1] !== this.epoch || !(at <= this.#last)) {
      throw new HotPatchError(
        'INVALID',
        `after: ${JSON.stringify(cursor.slice(0, 64))} is not a cursor of this agent (pass the next of a previous page; after a restart of the agent, start again without after)`,
      );
    }
    return at;
  }
}

const orders = new WeakMap<Planner, PlanOrder>();

/**
 * One page of the planner's plans, oldest first (the journal's order), with the total and
 * the count by status. Plans added while a client pages come on a later page.
 */
export function planPage(planner: Planner, query: PlanPageQuery): PlanPage {
  let order = orders.get(planner);
  if (order === undefined) orders.set(planner, (order = new PlanOrder()));
  const states = planner.plans();
  const positions = order.number(states);
  let start = 0;
  if (query.after !== undefined) {
    const after = order.position(query.after);
    while (start < positions.length && positions[start]! <= after) start += 1;
  }
  const slice = states.slice(start, start + query.limit);
  const counts = Object.fromEntries(PLAN_STATUSES.map((s) => [s, 0])) as Record<PlanStatus, number>;
  for (const s of states) counts[s.status] += 1;
  const page: PlanPage = { plans: slice.map(planSummary), total: states.length, counts };
  const end = start + slice.length;
  if (end < states.length) page.next = order.cursor(positions[end - 1]!);
  return page;
}

function planSummary(state: PlanState): Record<string, unknown> {
  return {
    id: state.plan.id,
    target: state.plan.target,
    patch: state.patchId ?? state.plan.patch,
    version: state.version,
    status: state.status,
    phase: state.phase,
    reason: state.reason,
    attempts: state.attempts,
    updatedAt: state.updatedAt,
  };
}

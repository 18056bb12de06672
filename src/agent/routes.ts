import type { IncomingMessage, ServerResponse } from 'node:http';
import { HotPatchError, emitRedactedWarning, parseTargetName, rejectUnknownFields, type EventBus, type HotPatchEvent } from '../core/index.js';
import type { FleetStatus } from '../distributed/index.js';
import type { AuditChainStanding, AuditLog, HotPatchMetrics } from '../observability/index.js';
import { FINAL_STATUSES, checkPlan, type PatchPlan, type Planner } from '../orchestration/index.js';
import type { HotPatchRuntime } from '../zero-downtime/index.js';
import { errorBody, httpStatusFor } from './http-errors.js';
import { checkQueryNames, planPage, planPageQuery } from './plan-pages.js';
import { identityOf, requestRole, type RequestRecorder } from './operator-record.js';
import type { RecentEvents } from './recent-events.js';
import { readJsonBody, stringField } from './request-body.js';

export interface AgentContext {
  runtime: HotPatchRuntime;
  planner: Planner;
  bus: EventBus;
  metrics: HotPatchMetrics;
  /** Open event streams, closed when the agent stops. */
  streams: Set<ServerResponse>;
  maxEventStreams: number;
  maxEventBacklogBytes: number;
  /** Records an operator request before it acts (refuses it when the record cannot be written, in fail-closed mode). */
  recordRequest: RequestRecorder;
  /** Set when the agent is in a fleet: who it is there, and the fleet as its store holds it. */
  fleet?: { agentId: string; ring: number; prefix: string };
  fleetStatus?: () => Promise<FleetStatus>;
  /** The last events published (for a dashboard opened now). */
  recent: RecentEvents;
  /** The audit log, whose standing /v1/status reports. */
  audit: AuditLog;
}

type Handler = (ctx: AgentContext, req: IncomingMessage, res: ServerResponse, url: URL) => Promise<void>;

/**
 * An endpoint and the verb it needs, as the Kubernetes API server separates get/list/watch
 * from create/update: `read` endpoints change nothing and a read-only token may call them;
 * every other one needs the operator token. A new endpoint must pick one.
 */
export interface Route {
  readonly access: 'read' | 'operate';
  /** An event stream: counted against maxEventStreams, not maxRequestsInFlight. */
  readonly stream?: true;
  readonly handler: Handler;
}

const read = (handler: Handler): Route => ({ access: 'read', handler });
const operate = (handler: Handler): Route => ({ access: 'operate', handler });

/** The admin API. Every response is JSON except /metrics and the event stream. */
export const ROUTES: Readonly<Record<string, Route>> = {
  /** Targets, one page of plans (as /v1/plans) and the count of plans by status. */
  'GET /v1/status': read(async (ctx, _req, res, url) => {
    const { plans, total, counts, next } = planPage(ctx.planner, planPageQuery(url));
    // eventStreams: the event streams open now (who is following), e.g. to know a follower is attached.
    // The last version known good per target (state.json's last_good), beside what runs now.
    const saved = ctx.runtime.store === undefined ? undefined : (await ctx.runtime.store.read()).targets;
    send(res, 200, {
      ok: true,
      targets: ctx.runtime.status().map((t) => {
        const good = saved?.[t.target]?.last_good;
        return { ...t, lastGood: good === undefined || good === null ? null : { version: good.version, patchId: good.id } };
      }),
      plans,
      total,
      planCounts: counts,
      eventStreams: ctx.streams.size,
      audit: auditStanding(ctx.audit),
      ...(ctx.fleet === undefined ? {} : { fleet: ctx.fleet }),
      ...(next === undefined ? {} : { next }),
    });
  }),
  /** Who the request was admitted as: the token's name and role (the dashboard shows it, and offers actions to an operator only). */
  'GET /v1/whoami': read(async (_ctx, req, res) => {
    const who = identityOf(req);
    send(res, 200, { ok: true, credential: who.credential, role: requestRole(req), ...(who.token === undefined ? {} : { tokenName: who.token }) });
  }),
  /** In a fleet: every agent by ring with its per-target versions, the rollouts, the leading controller. */
  'GET /v1/fleet': read(async (ctx, _req, res) => {
    if (ctx.fleetStatus === undefined) throw new HotPatchError('NOT_FOUND', 'this agent is not in a fleet');
    const status = await ctx.fleetStatus();
    send(res, 200, {
      ok: true,
      self: ctx.fleet,
      controller: status.controller ?? null,
      agents: status.agents.map((a) => ({
        agentId: a.agentId,
        ring: a.ring,
        labels: a.labels ?? {},
        targets: a.targets,
        ...(a.signedBy === undefined ? {} : { signedBy: a.signedBy }),
      })),
      rollouts: status.rollouts.map((r) => ({
        id: r.id,
        target: r.target,
        version: r.version,
        patchId: r.patchId,
        status: r.state.status,
        ring: r.state.ring,
      })),
      problems: status.problems,
    });
  }),
  /** `?limit=N&after=CURSOR`: plans in the order they were added, a page at a time. */
  'GET /v1/plans': read(async (ctx, _req, res, url) => {
    const { plans, total, next } = planPage(ctx.planner, planPageQuery(url));
    send(res, 200, { ok: true, plans, total, ...(next === undefined ? {} : { next }) });
  }),
  /**
   * Adds a plan (or names an existing one) and runs it to its end; progress is on the event
   * stream. Concurrent applies to one target: the first runs, the others get ABORTED (busy).
   */
  'POST /v1/apply': operate(async (ctx, req, res) => {
    const body = await readJsonBody(req);
    rejectUnknownFields(body, ['plan', 'planId', 'dryRun'], 'apply');
    if (body.dryRun !== undefined && typeof body.dryRun !== 'boolean') throw new HotPatchError('INVALID', 'apply: dryRun must be a boolean');
    if (body.dryRun === true) {
      await dryRun(ctx, req, res, body);
      return;
    }
    let planId: string;
    if (body.plan !== undefined) {
      // Checked (an object, no unknown field, …) before it is recorded, recorded before it is added.
      const plan = checkPlan(body.plan, 'apply plan');
      await ctx.recordRequest(req, 'apply', plan.target, { plan: plan.id, ...(plan.patch === undefined ? {} : { patch: plan.patch }) });
      planId = ctx.planner.addPlan(plan).plan.id;
    } else {
      planId = stringField(body, 'planId', 'apply')!;
      const known = ctx.planner.plan(planId);
      await ctx.recordRequest(req, 'apply', known.plan.target, { plan: planId, ...(known.plan.patch === undefined ? {} : { patch: known.plan.patch }) });
    }
    const {
      status: before,
      plan: { target },
    } = ctx.planner.plan(planId);
    const result = await ctx.planner.runOnce(planId);
    const { apply, ...rest } = result;
    // An apply succeeds only if that version serves now: a plan that ended earlier is not run
    // again, and says so (reused), and one activated earlier may have been rolled back since.
    const reused = FINAL_STATUSES.includes(before);
    const serving = ctx.runtime.list().find((t) => t.name === target)?.active;
    let ok = result.status === 'activated';
    let message = reused ? `plan ${planId} had already ended (${before}); nothing was run again: ${result.reason}` : result.reason;
    if (result.status === 'waiting') {
      // Not refused for good: say what happens to it next, and how to stop that.
      const then =
        serving !== undefined && ctx.runtime.get(target).frozen !== undefined
          ? 'it runs by itself when the target is unfrozen'
          : `run it again (hotpatch apply --plan-id ${planId}) once that clears`;
      message = `plan ${planId} is waiting, nothing applied yet: ${result.reason}; ${then} — or cancel it (hotpatch cancel --plan-id ${planId})`;
    }
    let code = result.code ?? (result.status === 'rolled-back' ? 'CANARY_FAILED' : 'ABORTED');
    if (ok && serving?.patchId !== result.patchId) {
      ok = false;
      code = 'ABORTED';
      message = `plan ${planId} activated ${result.patchId ?? 'its patch'} earlier, but ${target} now serves ${serving?.version ?? 'another version'}: nothing was applied now (apply again as a new plan)`;
    }
    // 200 when that version serves; otherwise the status of the outcome's code (409 busy or
    // superseded, 422 refused or rolled back) with the plan's outcome in the body.
    send(res, ok ? 200 : httpStatusFor(code), {
      ok,
      message,
      ...rest,
      ...(reused ? { reused: true } : {}),
      ...(serving === undefined ? {} : { serving: { version: serving.version, patchId: serving.patchId } }),
      ...(ok ? {} : { code }),
      steps: apply?.steps,
    });
  }),
  'POST /v1/promote': operate(async (ctx, req, res) => {
    const { target } = await targetBody(req, 'promote', []);
    const t = ctx.runtime.get(target);
    await ctx.recordRequest(req, 'promote', target);
    await t.promote();
    send(res, 200, { ok: true, target, message: `promotion of ${target} requested` });
  }),
  'POST /v1/abort': operate(async (ctx, req, res) => {
    const { target, body } = await targetBody(req, 'abort', ['reason']);
    const reason = stringField(body, 'reason', 'abort', { optional: true }) ?? 'aborted by operator';
    const t = ctx.runtime.get(target);
    await ctx.recordRequest(req, 'abort', target, { reason });
    t.abort(reason);
    send(res, 200, { ok: true, target, message: `abort of ${target} requested: ${reason}` });
  }),
  'POST /v1/rollback': operate(async (ctx, req, res) => {
    const { target, body } = await targetBody(req, 'rollback', ['reason', 'to']);
    const reason = stringField(body, 'reason', 'rollback', { optional: true }) ?? 'rollback requested by operator';
    const to = stringField(body, 'to', 'rollback', { optional: true });
    ctx.runtime.get(target);
    await ctx.recordRequest(req, 'rollback', target, { reason, ...(to === undefined ? {} : { to }) });
    const now = await ctx.runtime.rollback(target, reason, to === undefined ? {} : { to });
    send(res, 200, { ok: true, target, version: now.version, message: `${target} rolled back to ${now.version}` });
  }),
  'POST /v1/freeze': operate(async (ctx, req, res) => {
    const { target, body } = await targetBody(req, 'freeze', ['reason']);
    const reason = stringField(body, 'reason', 'freeze')!;
    const t = ctx.runtime.get(target);
    await ctx.recordRequest(req, 'freeze', target, { reason });
    t.frozen = reason;
    send(res, 200, { ok: true, target, frozen: reason, message: `${target} frozen: ${reason}` });
  }),
  'POST /v1/unfreeze': operate(async (ctx, req, res) => {
    const { target } = await targetBody(req, 'unfreeze', []);
    const t = ctx.runtime.get(target);
    await ctx.recordRequest(req, 'unfreeze', target);
    t.frozen = undefined;
    // Plans the freeze left waiting go on now (in the background; progress is on the event stream).
    void ctx.planner
      .runWaiting(target)
      .catch((error: unknown) =>
        emitRedactedWarning(`resuming plans of ${target} after unfreeze: ${(error as Error).message}`, { code: 'HOTPATCH_PLAN_ERROR' }),
      );
    send(res, 200, { ok: true, target, message: `${target} unfrozen` });
  }),
  /** Ends a plan that has not ended (a waiting one never runs; a running apply is aborted). */
  'POST /v1/cancel': operate(async (ctx, req, res) => {
    const body = await readJsonBody(req);
    rejectUnknownFields(body, ['planId', 'reason'], 'cancel');
    const planId = stringField(body, 'planId', 'cancel')!;
    const reason = stringField(body, 'reason', 'cancel', { optional: true }) ?? 'cancelled by operator';
    const plan = ctx.planner.plan(planId);
    await ctx.recordRequest(req, 'cancel', plan.plan.target, { plan: planId, reason });
    const result = await ctx.planner.cancel(planId, reason);
    send(res, 200, { ok: true, ...result, message: `plan ${planId} cancelled: ${result.reason}` });
  }),
  /** Ends the active version's probation now: recorded good, kept across restarts. */
  'POST /v1/confirm': operate(async (ctx, req, res) => {
    const { target, body } = await targetBody(req, 'confirm', ['reason']);
    const reason = stringField(body, 'reason', 'confirm', { optional: true }) ?? 'confirmed good by operator';
    ctx.runtime.get(target);
    await ctx.recordRequest(req, 'confirm', target, { reason });
    const wasGood = ctx.runtime.isGood(ctx.runtime.get(target).active);
    const v = await ctx.runtime.confirm(target, reason);
    const message = wasGood ? `${target} ${v.version} is already good: nothing to confirm` : `${target} ${v.version} confirmed good: probation ended`;
    send(res, 200, { ok: true, target, version: v.version, confirmed: !wasGood, message });
  }),
  'GET /v1/events': { access: 'read', stream: true, handler: eventStream },
  /** `?target=T&limit=N` (default 200, at most 500): the last events published, oldest first. */
  'GET /v1/events/recent': read(async (ctx, _req, res, url) => {
    checkQueryNames(url, ['target', 'limit']);
    const target = url.searchParams.get('target') ?? undefined;
    if (target !== undefined) parseTargetName(target, 'target');
    const limitText = url.searchParams.get('limit') ?? '200';
    const limit = Number(limitText);
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > 500)
      throw new HotPatchError('INVALID', `limit must be an integer from 1 to 500, got ${JSON.stringify(limitText.slice(0, 20))}`);
    send(res, 200, { ok: true, events: ctx.recent.list(target, limit) });
  }),
  'GET /metrics': read(async (ctx, _req, res) => {
    const text = await ctx.metrics.metrics();
    res.writeHead(200, { 'content-type': ctx.metrics.contentType });
    res.end(text);
  }),
};

/**
 * `POST /v1/apply {…, dryRun: true}`: would the plan apply now? The checks a run makes before
 * staging, with no side effect (the plan is not added; the request itself is recorded).
 */
async function dryRun(ctx: AgentContext, req: IncomingMessage, res: ServerResponse, body: Record<string, unknown>): Promise<void> {
  let plan: PatchPlan | string;
  if (body.plan !== undefined) {
    plan = checkPlan(body.plan, 'apply plan');
  } else {
    plan = stringField(body, 'planId', 'apply')!;
  }
  const target = typeof plan === 'string' ? ctx.planner.plan(plan).plan.target : plan.target;
  await ctx.recordRequest(req, 'dry-run', target, { plan: typeof plan === 'string' ? plan : plan.id });
  const report = await ctx.planner.dryRun(plan);
  const failed = report.checks.find((c) => !c.ok);
  const message = report.wouldApply
    ? `dry run: ${report.patchId ?? '?'} ${report.version ?? ''} would apply to ${target} now (${report.checks.length} checks passed)`
    : `dry run: would not apply now — ${failed?.check ?? '?'}: ${failed?.detail ?? '?'}`;
  const code = failed?.code ?? 'INVALID';
  send(res, report.wouldApply ? 200 : httpStatusFor(code), { ok: report.wouldApply, message, ...report, ...(report.wouldApply ? {} : { code }) });
}

/** `GET /v1/events[?target=T]`: Server-Sent Events, one per bus event. */
async function eventStream(ctx: AgentContext, _req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
  checkQueryNames(url, ['target']);
  const only = url.searchParams.get('target') ?? undefined;
  if (only !== undefined) parseTargetName(only, 'target');
  if (ctx.streams.size >= ctx.maxEventStreams) {
    send(res, 503, { ok: false, code: 'TOO_LARGE', message: `too many event streams open (${ctx.maxEventStreams}); try again later` }, { 'retry-after': '1' });
    return;
  }
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
  res.write('retry: 1000\n\n');
  let seq = 0;
  const off = ctx.bus.subscribe(
    (event: HotPatchEvent) => {
      // A client that does not read must not make the agent buffer without bound: past the
      // backlog limit its stream is closed (it may reconnect and read on).
      if (res.writableLength > ctx.maxEventBacklogBytes) {
        res.destroy();
        return;
      }
      seq += 1;
      res.write(`id: ${seq}\nevent: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`);
    },
    only === undefined ? {} : { target: only },
  );
  // A comment line now and then keeps proxies and idle timeouts from closing the stream.
  const heartbeat = setInterval(() => res.write(': keep-alive\n\n'), 15_000);
  heartbeat.unref();
  ctx.streams.add(res);
  res.on('close', () => {
    off();
    clearInterval(heartbeat);
    ctx.streams.delete(res);
  });
}

async function targetBody(req: IncomingMessage, what: string, extra: string[]): Promise<{ target: string; body: Record<string, unknown> }> {
  const body = await readJsonBody(req);
  rejectUnknownFields(body, ['target', ...extra], what);
  return { target: parseTargetName(stringField(body, 'target', what), 'target'), body };
}

export function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...headers, 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export function sendError(res: ServerResponse, error: unknown): void {
  const { status, body } = errorBody(error);
  if (res.headersSent) {
    res.destroy(error instanceof Error ? error : undefined);
    return;
  }
  send(res, status, body);
}

/**
 * The audit log's standing: intact (its end matched state.json at open, the lines before it
 * chain — `chain`, read in the background after the start — and every append written) or not, and why.
 */
function auditStanding(audit: AuditLog): {
  ok: boolean;
  seq: number;
  consistent: boolean;
  chain: AuditChainStanding['state'];
  failedAppends: number;
  lostAppends: number;
  failure?: string;
} {
  const failure = audit.failure?.message ?? audit.chainProblem;
  return {
    ok: audit.intact,
    seq: audit.seq,
    consistent: audit.reconciliation?.consistent ?? true,
    chain: audit.chain.state,
    failedAppends: audit.failedAppends,
    lostAppends: audit.lostAppends,
    ...(failure === undefined ? {} : { failure }),
  };
}

import type { IncomingMessage, ServerResponse } from 'node:http';
import { HotPatchError, parseTargetName, type EventBus, type HotPatchEvent } from '../core/index.js';
import type { HotPatchMetrics } from '../observability/index.js';
import { checkPlan, type Planner } from '../orchestration/index.js';
import type { HotPatchRuntime } from '../zero-downtime/index.js';
import { errorBody, httpStatusFor } from './http-errors.js';
import { planPage, planPageQuery } from './plan-pages.js';
import type { RequestRecorder } from './operator-record.js';
import { onlyFields, readJsonBody, stringField } from './request-body.js';

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

const PLAN_FIELDS = ['id', 'target', 'patch', 'repo', 'verifier', 'security', 'installer', 'approver', 'window', 'dependsOn', 'zdt'];

/** The admin API. Every response is JSON except /metrics and the event stream. */
export const ROUTES: Readonly<Record<string, Route>> = {
  /** Targets, one page of plans (as /v1/plans) and the count of plans by status. */
  'GET /v1/status': read(async (ctx, _req, res, url) => {
    const { plans, total, counts, next } = planPage(ctx.planner, planPageQuery(url));
    send(res, 200, { ok: true, targets: ctx.runtime.status(), plans, total, planCounts: counts, ...(next === undefined ? {} : { next }) });
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
    onlyFields(body, ['plan', 'planId'], 'apply');
    let planId: string;
    if (body.plan !== undefined) {
      if (typeof body.plan !== 'object' || body.plan === null || Array.isArray(body.plan)) throw new HotPatchError('INVALID', 'apply: plan must be an object');
      onlyFields(body.plan as Record<string, unknown>, PLAN_FIELDS, 'apply plan');
      // Checked before it is recorded, recorded before it is added.
      const plan = checkPlan(body.plan);
      await ctx.recordRequest(req, 'apply', plan.target, { plan: plan.id, ...(plan.patch === undefined ? {} : { patch: plan.patch }) });
      planId = ctx.planner.addPlan(plan).plan.id;
    } else {
      planId = stringField(body, 'planId', 'apply')!;
      const known = ctx.planner.plan(planId);
      await ctx.recordRequest(req, 'apply', known.plan.target, { plan: planId, ...(known.plan.patch === undefined ? {} : { patch: known.plan.patch }) });
    }
    const result = await ctx.planner.runOnce(planId);
    const { apply, ...rest } = result;
    const ok = result.status === 'activated';
    // 200 when activated; otherwise the status of the outcome's code (409 busy, 422 refused
    // or rolled back) with the plan's outcome in the body.
    const code = result.code ?? (result.status === 'rolled-back' ? 'CANARY_FAILED' : 'ABORTED');
    send(res, ok ? 200 : httpStatusFor(code), { ok, message: result.reason, ...rest, ...(ok ? {} : { code }), steps: apply?.steps });
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
    const { target, body } = await targetBody(req, 'rollback', ['reason']);
    const reason = stringField(body, 'reason', 'rollback', { optional: true }) ?? 'rollback requested by operator';
    ctx.runtime.get(target);
    await ctx.recordRequest(req, 'rollback', target, { reason });
    const now = await ctx.runtime.rollback(target, reason);
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
    send(res, 200, { ok: true, target, message: `${target} unfrozen` });
  }),
  'GET /v1/events': { access: 'read', stream: true, handler: eventStream },
  'GET /metrics': read(async (ctx, _req, res) => {
    const text = await ctx.metrics.metrics();
    res.writeHead(200, { 'content-type': ctx.metrics.contentType });
    res.end(text);
  }),
};

/** `GET /v1/events[?target=T]`: Server-Sent Events, one per bus event. */
async function eventStream(ctx: AgentContext, _req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
  const only = url.searchParams.get('target') ?? undefined;
  if (only !== undefined) parseTargetName(only, 'target');
  if (ctx.streams.size >= ctx.maxEventStreams) {
    send(res, 503, { ok: false, code: 'TOO_LARGE', message: `too many event streams open (${ctx.maxEventStreams}); try again later` }, { 'retry-after': '1' });
    return;
  }
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
  res.write('retry: 1000\n\n');
  let seq = 0;
  const off = ctx.bus.subscribe((event: HotPatchEvent) => {
    // A client that does not read must not make the agent buffer without bound: past the
    // backlog limit its stream is closed (it may reconnect and read on).
    if (res.writableLength > ctx.maxEventBacklogBytes) {
      res.destroy();
      return;
    }
    seq += 1;
    res.write(`id: ${seq}\nevent: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`);
  }, only === undefined ? {} : { target: only });
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
  onlyFields(body, ['target', ...extra], what);
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

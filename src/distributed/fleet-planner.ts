import { createHash } from 'node:crypto';
import { HotPatchError, describe, isPatchId, messageOf, type HotPatchEvent } from '../core/index.js';
import {
  FINAL_STATUSES,
  Planner,
  checkPersistableZdt,
  overlayZdtOptions,
  type PatchPlan,
  type PlanRunResult,
  type PlanZdtOptions,
} from '../orchestration/index.js';
import type { TargetReport } from './agent-registration.js';
import type { RolloutOrder } from './fleet-documents.js';
import { fleetHealthReporter, type FleetHealthOptions } from './fleet-health.js';
import { isMemberStopping, type MemberReport } from './fleet-member.js';

export interface PlannerFleetHooksOptions extends FleetHealthOptions {
  /**
   * The registered components each rollout's plan names (default `default` for each, as the
   * agent's `defaults` register them): the agent fetches from its own repository, verifies
   * against its own trust store, applies its own security gate and, with `approver`, waits
   * for its own approval quorum.
   */
  components?: { repo?: string; verifier?: string; security?: string; installer?: string; approver?: string };
  /**
   * This host's canary options for every rollout's plan (checked like a plan's `zdt`); a
   * rollout's own `zdt` is laid over them field by field, so the operators' choice wins.
   */
  zdt?: PlanZdtOptions;
  /** How long a plan left waiting (approval, window, freeze, busy target) waits before it is run again (default 1000 ms; sooner when one of its events arrives). */
  retryMs?: number;
  /** Called when the agent acts on an order, before it acts (the agent records it in its audit log). */
  onOrder?: (order: RolloutOrder, action: 'apply' | 'rollback') => Promise<void> | void;
}

export interface FleetHooks {
  apply(order: RolloutOrder, signal: AbortSignal): Promise<MemberReport>;
  rollback(order: RolloutOrder): Promise<MemberReport>;
  report(): TargetReport[];
}

/**
 * The plan an order becomes on this agent. Its id is derived from the rollout id, so the
 * same order after a restart is the same plan: the planner returns its outcome instead of
 * running it again (an ended plan never runs twice), which also makes a replayed order inert.
 */
export function fleetPlanId(rolloutId: string): string {
  const id = `fleet-${rolloutId}`;
  if (isPatchId(id)) return id;
  // Too long for a plan id: a readable head and a digest of the whole rollout id.
  return `fleet-${rolloutId.slice(0, 96)}-${createHash('sha256').update(rolloutId).digest('hex').slice(0, 16)}`;
}

/**
 * A fleet member's apply / rollback / report over the agent's own Planner: every order is a
 * plan (its patch pinned to the order's version and payload hash, its canary options the
 * rollout's) run through the whole pipeline — fetch from the agent's repository, verify
 * against its trust store, security gate, approval, window, journal, audit, stage, canary,
 * promote — never a second, thinner path. A plan left waiting (an approval not yet given, a
 * closed window, a frozen or busy target) is run again until it ends or the rollout stops;
 * a refused or rolled-back plan is reported `failed`, which halts the rollout.
 */
export function plannerFleetHooks(planner: Planner, options: PlannerFleetHooksOptions = {}): FleetHooks {
  if (!(planner instanceof Planner)) throw new HotPatchError('INVALID', `planner must be a Planner, got ${describe(planner)}`);
  const retryMs = options.retryMs ?? 1000;
  if (!Number.isSafeInteger(retryMs) || retryMs < 1 || retryMs > 2 ** 31 - 1)
    throw new HotPatchError('INVALID', `retryMs must be a whole number of milliseconds in [1, 2^31-1], got ${describe(retryMs)}`);
  if (options.onOrder !== undefined && typeof options.onOrder !== 'function')
    throw new HotPatchError('INVALID', `onOrder must be a function, got ${describe(options.onOrder)}`);
  const hostZdt = options.zdt === undefined ? undefined : checkPersistableZdt(options.zdt, 'zdt');
  const runtime = planner.runtime;
  const c = options.components ?? {};
  const report = fleetHealthReporter(runtime, options);
  const serving = (target: string): { version: string; patchId: string | null } => {
    const active = runtime.get(target).active;
    return { version: active.version, patchId: active.patchId };
  };

  const planFor = (order: RolloutOrder): PatchPlan => {
    const zdt = hostZdt === undefined && order.zdt === undefined ? undefined : overlayZdtOptions(hostZdt, order.zdt);
    return {
      id: fleetPlanId(order.id),
      target: order.target,
      patch: order.patchId,
      repo: c.repo ?? 'default',
      verifier: c.verifier ?? 'default',
      security: c.security ?? 'default',
      installer: c.installer ?? 'default',
      ...(c.approver === undefined ? {} : { approver: c.approver }),
      ...(zdt === undefined ? {} : { zdt }),
      pin: { version: order.version, payloadHash: order.payloadHash },
    };
  };

  /** Resolves after `retryMs`, or sooner when the plan publishes an event or the signal aborts. */
  const nextLook = (planId: string, signal: AbortSignal): Promise<void> =>
    new Promise((resolve) => {
      // An aborted signal fires no more 'abort' events.
      if (signal.aborted) return resolve();
      const done = (): void => {
        clearTimeout(timer);
        off();
        signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, retryMs);
      const off = runtime.bus.subscribe((e: HotPatchEvent) => {
        if (e.detail?.plan === planId) done();
      });
      signal.addEventListener('abort', done, { once: true });
    });

  /**
   * After the member stopped an apply. The rollout stopped (halted, aborted…): the plan must
   * never run later by itself, so one that has not ended is cancelled. The member itself
   * stops (a shutdown): the order still stands and the restarted member gives it again, so
   * the plan is dropped from the planner (its history stays in the audit log) when it has not
   * ended, or ended only because this stop cut its run short — the same order then makes it
   * afresh. Kept, it would either be run with no member following its rollout (an unfreeze
   * runs waiting plans), or stand, ended, for an outcome the order never had.
   */
  const afterStop = async (planId: string, reason: unknown, interrupted: boolean): Promise<void> => {
    const state = planner.plans().find((s) => s.plan.id === planId);
    if (state === undefined) return;
    const ended = FINAL_STATUSES.includes(state.status);
    if (isMemberStopping(reason)) {
      if (!ended || interrupted) await planner.removePlan(planId).catch(() => {});
    } else if (!ended) {
      await planner.cancel(planId, messageOf(reason)).catch(() => {});
    }
  };

  const outcome = (order: RolloutOrder, r: PlanRunResult): MemberReport => {
    const now = serving(order.target);
    if (r.status === 'activated') return { phase: 'promoted', ...now, reason: r.reason };
    return { phase: 'failed', ...now, reason: `plan ${r.planId} ${r.status}${r.code === undefined ? '' : ` (${r.code})`}: ${r.reason}` };
  };

  return {
    async apply(order, signal) {
      await options.onOrder?.(order, 'apply');
      const plan = planFor(order);
      planner.addPlan(plan);
      /** The plan's last run ended because `signal` aborted it (failed, ABORTED). */
      let interrupted = false;
      try {
        for (;;) {
          if (signal.aborted) throw signal.reason ?? new HotPatchError('ABORTED', `rollout ${order.id} stopped`);
          const state = planner.plan(plan.id);
          if (FINAL_STATUSES.includes(state.status)) {
            return outcome(order, {
              planId: plan.id,
              status: state.status,
              reason: state.reason ?? state.status,
              ...(state.code === undefined ? {} : { code: state.code }),
            });
          }
          let result: PlanRunResult | undefined;
          try {
            result = await planner.runOnce(plan.id, signal);
          } catch (error) {
            // Run by someone else right now (the planner's loop, an unfreeze): look again after it.
            if (!(error instanceof HotPatchError && error.code === 'ABORTED') || signal.aborted) throw error;
          }
          // A run the stop cut short is the stop's doing, not the plan's outcome (see afterStop).
          interrupted = signal.aborted && result?.status === 'failed' && result.code === 'ABORTED';
          if (!interrupted && result !== undefined && FINAL_STATUSES.includes(result.status)) return outcome(order, result);
          await nextLook(plan.id, signal);
        }
      } finally {
        if (signal.aborted) await afterStop(plan.id, signal.reason, interrupted);
      }
    },

    async rollback(order) {
      await options.onOrder?.(order, 'rollback');
      const planId = fleetPlanId(order.id);
      const known = planner.plans().find((s) => s.plan.id === planId);
      if (known !== undefined && !FINAL_STATUSES.includes(known.status))
        await planner.cancel(planId, `rollout ${order.id} ${order.state.status}`).catch(() => {});
      const target = runtime.get(order.target);
      const runsIt = target.applying?.patchId === order.patchId || target.paused?.patchId === order.patchId || target.active.patchId === order.patchId;
      if (runsIt) await runtime.rollback(order.target, `rollout ${order.id} ${order.state.status}: ${order.state.reason ?? 'rolled back'}`);
      return { phase: 'rolled-back', ...serving(order.target), reason: runsIt ? `rolled back ${order.patchId}` : `${order.patchId} was not active` };
    },

    report,
  };
}

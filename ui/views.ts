import type { Fleet, HotPatchEvent, PlanRow, Status, TargetStatus } from './api.js';
import { lineChart } from './chart.js';
import { el, pct, time } from './dom.js';

/** One look of a canary's judge, from its CanaryStep event. */
export interface CanaryLook {
  step: number;
  of: number;
  ratio: number;
  verdict: string;
  reason: string;
  candidateCalls: number;
  errorRate: number | undefined;
  baselineErrorRate: number | undefined;
  latencyRatio: number | undefined;
}

export type Action = 'promote' | 'abort' | 'rollback' | 'freeze' | 'unfreeze' | 'confirm';

export function lookOf(e: HotPatchEvent): CanaryLook {
  const d = e.detail ?? {};
  const num = (k: string): number | undefined => (typeof d[k] === 'number' ? (d[k] as number) : undefined);
  return {
    step: num('step') ?? 0,
    of: num('of') ?? 0,
    ratio: num('ratio') ?? 0,
    verdict: typeof d.verdict === 'string' ? d.verdict : '?',
    reason: e.reason,
    candidateCalls: num('candidateCalls') ?? 0,
    errorRate: num('errorRate'),
    baselineErrorRate: num('baselineErrorRate'),
    latencyRatio: num('latencyRatio'),
  };
}

function version(v: TargetStatus['active'] | undefined): string {
  if (v === undefined) return '—';
  return v.patchId === null ? `${v.version} (built-in)` : `${v.version} (${v.patchId})`;
}

function actionButton(label: string, action: Action, target: string, operate: boolean, danger = false): HTMLButtonElement {
  const b = el('button', { type: 'button', 'data-action': action, 'data-target': target, class: danger ? 'danger' : '' }, label);
  if (!operate) b.disabled = true;
  return b;
}

export function targetsView(status: Status, operate: boolean): HTMLElement {
  const rows = status.targets.map((t) =>
    el(
      'tr',
      { 'data-target': t.target },
      el('td', {}, el('strong', {}, t.target), el('div', { class: 'muted' }, t.isolation)),
      el('td', { class: 'active-version' }, version(t.active)),
      el('td', {}, version(t.previous)),
      el(
        'td',
        { class: 'last-good' },
        t.lastGood === null ? '—' : t.lastGood.patchId === null ? `${t.lastGood.version} (built-in)` : `${t.lastGood.version} (${t.lastGood.patchId})`,
      ),
      el('td', {}, t.probation.good ? 'good' : `probation ${Math.round(t.probation.leftMs / 1000)} s`),
      el('td', {}, String(t.active.inflight + (t.previous?.inflight ?? 0))),
      el(
        'td',
        {},
        t.canary === undefined ? '—' : el('span', { class: 'badge canary' }, `canary ${pct(t.canary.ratio)}`),
        t.frozen === undefined ? null : el('span', { class: 'badge frozen' }, `frozen: ${t.frozen}`),
      ),
      el(
        'td',
        { class: 'actions' },
        t.canary !== undefined ? actionButton('Promote', 'promote', t.target, operate) : null,
        t.canary !== undefined ? actionButton('Abort', 'abort', t.target, operate, true) : null,
        t.canary === undefined && t.previous !== undefined ? actionButton('Roll back', 'rollback', t.target, operate, true) : null,
        t.frozen === undefined ? actionButton('Freeze', 'freeze', t.target, operate) : actionButton('Unfreeze', 'unfreeze', t.target, operate),
      ),
    ),
  );
  return el(
    'section',
    { id: 'targets' },
    el('h2', {}, 'Targets'),
    el(
      'div',
      { class: 'scroll' },
      el(
        'table',
        {},
        el(
          'thead',
          {},
          el('tr', {}, ...['target', 'active', 'previous (warm)', 'last good', 'standing', 'in flight', 'state', ''].map((h) => el('th', {}, h))),
        ),
        el('tbody', {}, ...rows),
      ),
    ),
  );
}

export function canaryView(status: Status, looks: Map<string, CanaryLook[]>): HTMLElement {
  const live = status.targets.filter((t) => t.canary !== undefined);
  const cards = live.map((t) => {
    const history = looks.get(t.target) ?? [];
    const last = history[history.length - 1];
    return el(
      'article',
      { class: 'canary-card', 'data-target': t.target },
      el('h3', {}, `${t.target}: ${t.canary!.version} (${t.canary!.patchId})`),
      el(
        'p',
        { class: 'step' },
        last === undefined ? `starting at ${pct(t.canary!.ratio)}` : `step ${last.step} of ${last.of} at ${pct(last.ratio)} — ${last.verdict}`,
      ),
      el(
        'p',
        { class: 'muted' },
        `${t.canary!.candidateCalls} candidate calls, ${t.canary!.candidateErrors} errors; ${t.canary!.baselineCalls} baseline calls`,
      ),
      last === undefined ? null : el('p', { class: 'reason' }, last.reason),
      el(
        'div',
        { class: 'charts' },
        lineChart(
          'error rate per look',
          [
            { label: 'candidate', cls: 'candidate', values: history.map((l) => l.errorRate) },
            { label: 'baseline', cls: 'baseline', values: history.map((l) => l.baselineErrorRate) },
          ],
          (v) => pct(v),
        ),
        lineChart(
          'latency, candidate / baseline',
          [{ label: 'ratio', cls: 'candidate', values: history.map((l) => l.latencyRatio) }],
          (v) => `×${v.toFixed(2)}`,
          {
            value: 1.3,
            label: 'tolerated ×1.30',
          },
        ),
      ),
    );
  });
  return el('section', { id: 'canary' }, el('h2', {}, 'Canary'), ...(cards.length === 0 ? [el('p', { class: 'muted' }, 'No canary in flight.')] : cards));
}

export function timelineView(events: HotPatchEvent[], target: string | undefined): HTMLElement {
  const shown = events
    .filter((e) => target === undefined || e.target === target)
    .slice(-100)
    .reverse();
  return el(
    'section',
    { id: 'timeline' },
    el('h2', {}, target === undefined ? 'Timeline' : `Timeline of ${target}`),
    el(
      'ol',
      { class: 'timeline' },
      ...shown.map((e) =>
        el(
          'li',
          { class: `event ${e.type}` },
          el('time', {}, time(e.ts)),
          el('span', { class: 'type' }, e.type),
          el('span', { class: 'target' }, e.target),
          el('span', { class: 'reason' }, e.reason),
        ),
      ),
    ),
  );
}

export function plansView(plans: PlanRow[]): HTMLElement {
  return el(
    'section',
    { id: 'plans' },
    el('h2', {}, 'Plans'),
    plans.length === 0
      ? el('p', { class: 'muted' }, 'No plans.')
      : el(
          'div',
          { class: 'scroll' },
          el(
            'table',
            {},
            el('thead', {}, el('tr', {}, ...['plan', 'target', 'patch', 'status', 'reason'].map((h) => el('th', {}, h)))),
            el(
              'tbody',
              {},
              ...plans.map((p) =>
                el(
                  'tr',
                  {},
                  el('td', {}, p.id),
                  el('td', {}, p.target),
                  el('td', {}, p.patchId ?? p.patch ?? '—'),
                  el('td', {}, el('span', { class: `badge ${p.status}` }, p.status)),
                  el('td', {}, p.reason ?? ''),
                ),
              ),
            ),
          ),
        ),
  );
}

export function approvalsView(events: HotPatchEvent[]): HTMLElement {
  const approvals = events.filter((e) => e.type === 'Approved').reverse();
  return el(
    'section',
    { id: 'approvals' },
    el('h2', {}, 'Approvals'),
    approvals.length === 0
      ? el('p', { class: 'muted' }, 'No approvals among the recent events.')
      : el(
          'ul',
          {},
          ...approvals.map((e) => {
            const signers = Array.isArray(e.detail?.signers) ? (e.detail.signers as unknown[]).map(String).join(', ') : undefined;
            return el(
              'li',
              {},
              el('time', {}, time(e.ts)),
              ` ${e.id} ${e.version} on ${e.target}: `,
              el('strong', {}, String(e.detail?.approver ?? '?')),
              signers === undefined ? null : ` (signed by ${signers})`,
            );
          }),
        ),
  );
}

export function summaryView(status: Status): HTMLElement {
  const a = status.audit;
  return el(
    'section',
    { id: 'summary' },
    el(
      'span',
      { class: `badge ${a.ok ? 'ok' : 'bad'}`, id: 'audit' },
      a.ok
        ? a.chain === 'ok'
          ? `audit chain intact (${a.seq} lines)`
          : `audit log end intact (${a.seq} lines); earlier lines ${a.chain === 'checking' ? 'being checked' : 'not checked'}`
        : `audit chain NOT intact: ${a.failure ?? (a.consistent ? `${a.lostAppends} events lost` : 'its end does not match state.json')}`,
    ),
    status.fleet === undefined
      ? null
      : el('span', { class: 'badge', id: 'fleet' }, `fleet ${status.fleet.prefix}: ${status.fleet.agentId}, ring ${status.fleet.ring}`),
    el(
      'span',
      { class: 'badge' },
      `plans: ${
        Object.entries(status.planCounts)
          .map(([k, v]) => `${v} ${k}`)
          .join(', ') || 'none'
      }`,
    ),
  );
}

export function fleetView(fleet: Fleet): HTMLElement {
  const rows = fleet.agents.flatMap((a) => {
    const targets = Object.entries(a.targets);
    const agentCell = (): HTMLElement => el('td', {}, el('strong', {}, a.agentId), a.agentId === fleet.self.agentId ? ' (this agent)' : null);
    if (targets.length === 0)
      return [el('tr', {}, el('td', {}, String(a.ring)), agentCell(), el('td', { colspan: '3', class: 'muted' }, 'no target reported'))];
    return targets.map(([name, t]) =>
      el(
        'tr',
        {},
        el('td', {}, String(a.ring)),
        agentCell(),
        el('td', {}, name),
        el('td', {}, t.patchId === undefined ? `${t.version} (built-in)` : `${t.version} (${t.patchId})`),
        el('td', {}, `${t.phase}, ${t.health}`),
      ),
    );
  });
  return el(
    'section',
    { id: 'fleet' },
    el('h2', {}, `Fleet ${fleet.self.prefix}`),
    el('p', { class: 'muted' }, `controller: ${fleet.controller ?? 'none leads'}; ${fleet.agents.length} agent(s)`),
    el(
      'div',
      { class: 'scroll' },
      el(
        'table',
        {},
        el('thead', {}, el('tr', {}, ...['ring', 'agent', 'target', 'version', 'phase, health'].map((h) => el('th', {}, h)))),
        el('tbody', {}, ...rows),
      ),
    ),
    fleet.rollouts.length === 0
      ? null
      : el(
          'ul',
          { class: 'rollouts' },
          ...fleet.rollouts.slice(0, 10).map((r) => el('li', {}, `${r.id}: ${r.target} ${r.version} (${r.patchId}) — ${r.status}, ring ${r.ring}`)),
        ),
    fleet.problems.length === 0
      ? null
      : el('p', { class: 'error' }, `${fleet.problems.length} stored document(s) did not verify: ${fleet.problems.map((p) => p.key).join(', ')}`),
  );
}

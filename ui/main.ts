/**
 * The agent's dashboard: targets, the live canary, the timeline, plans, approvals and the audit
 * chain, from the admin API and its event stream; operator actions behind a confirmation.
 */
import { follow, getJson, post, session, type HotPatchEvent, type PlanRow, type Status } from './api.js';
import { el, fill } from './dom.js';
import { approvalsView, canaryView, lookOf, plansView, summaryView, targetsView, timelineView, type Action, type CanaryLook } from './views.js';

const app = document.getElementById('app')!;
const live = document.getElementById('live')!;
const operate = session.role === 'operate';
let status: Status | undefined;
let plans: PlanRow[] = [];
const events: HotPatchEvent[] = [];
const looks = new Map<string, CanaryLook[]>();
let focus: string | undefined;
let refreshing: Promise<void> | undefined;
let again = false;

fill(document.getElementById('who')!, `signed in as ${session.name} (${operate ? 'operator' : 'read-only'})`);

function record(e: HotPatchEvent): void {
  events.push(e);
  if (events.length > 500) events.splice(0, events.length - 500);
  if (e.type === 'CanaryStarted') looks.set(e.target, []);
  if (e.type === 'CanaryStep') looks.set(e.target, [...(looks.get(e.target) ?? []), lookOf(e)]);
}

function render(): void {
  if (status === undefined) return;
  const targets = targetsView(status, operate);
  for (const row of targets.querySelectorAll<HTMLTableRowElement>('tbody tr')) {
    row.addEventListener('click', (ev) => {
      if ((ev.target as HTMLElement).closest('button') !== null) return;
      focus = focus === row.dataset.target ? undefined : row.dataset.target;
      render();
    });
  }
  fill(
    app,
    summaryView(status),
    targets,
    canaryView(status, looks),
    el('div', { class: 'columns' }, timelineView(events, focus), el('div', {}, plansView(plans), approvalsView(events))),
  );
}

/** Status and plans again, at most one fetch at a time (events arriving meanwhile ask for one more). */
function refresh(): Promise<void> {
  if (refreshing !== undefined) {
    again = true;
    return refreshing;
  }
  refreshing = (async () => {
    try {
      const [s, p] = await Promise.all([getJson<Status>('/v1/status'), getJson<{ plans: PlanRow[] }>('/v1/plans?limit=50')]);
      status = s;
      plans = p.plans;
      render();
    } finally {
      refreshing = undefined;
      if (again) {
        again = false;
        void refresh();
      }
    }
  })();
  return refreshing;
}

const QUESTIONS: Record<Action, (t: string) => string> = {
  promote: (t) => `Promote the canary of ${t} now, to every call?`,
  abort: (t) => `Abort the canary of ${t}? Every call goes back to the baseline.`,
  rollback: (t) => `Roll ${t} back to its previous version?`,
  freeze: (t) => `Freeze ${t}? No patch is applied to it until it is unfrozen.`,
  unfreeze: (t) => `Unfreeze ${t}? Plans waiting for it go on.`,
  confirm: (t) => `Confirm the active version of ${t} good now (end its probation)?`,
};

function ask(question: string): Promise<boolean> {
  const dialog = document.getElementById('confirm') as HTMLDialogElement;
  fill(document.getElementById('confirm-text')!, question);
  dialog.showModal();
  return new Promise((resolve) => dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true }));
}

app.addEventListener('click', (ev) => {
  const button = (ev.target as HTMLElement).closest<HTMLButtonElement>('button[data-action]');
  if (button === null) return;
  const action = button.dataset.action as Action;
  const target = button.dataset.target!;
  void (async () => {
    if (!(await ask(QUESTIONS[action](target)))) return;
    const reason = `${action} from the dashboard by ${session.name}`;
    const body = action === 'promote' || action === 'unfreeze' ? { target } : { target, reason };
    const reply = await post(`/v1/${action}`, body);
    toast(reply.ok ? reply.message : `${reply.code ?? 'refused'}: ${reply.message}`, reply.ok);
    await refresh();
  })();
});

function toast(text: string, ok: boolean): void {
  const note = el('div', { class: `toast ${ok ? 'ok' : 'bad'}`, role: 'status' }, text);
  document.body.appendChild(note);
  setTimeout(() => note.remove(), 6000);
}

document.getElementById('sign-out')!.addEventListener('click', () => {
  void post('/ui/logout', {}).then(() => location.reload());
});

async function start(): Promise<void> {
  const recent = await getJson<{ events: HotPatchEvent[] }>('/v1/events/recent?limit=500');
  for (const e of recent.events) record(e);
  follow(
    (e) => {
      record(e);
      render();
      void refresh();
    },
    (open) => {
      live.textContent = open ? 'live' : 'reconnecting…';
      live.className = `badge ${open ? 'ok' : 'bad'}`;
      if (open) void refresh();
    },
  );
  await refresh();
}

void start();

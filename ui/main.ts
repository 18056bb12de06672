/**
 * The agent's dashboard: targets, the live canary, the timeline, plans, approvals and the audit
 * chain, from the admin API and its event stream; operator actions behind a confirmation.
 */
import { Busy, SignedOut, follow, getJson, post, session, type Fleet, type HotPatchEvent, type PlanRow, type Status } from './api.js';
import { el, fill } from './dom.js';
import { approvalsView, canaryView, fleetView, lookOf, plansView, summaryView, targetsView, timelineView, type Action, type CanaryLook } from './views.js';

const app = document.getElementById('app')!;
const live = document.getElementById('live')!;
const signOutButton = document.getElementById('sign-out') as HTMLButtonElement;

interface View {
  status: Status | undefined;
  plans: PlanRow[];
  events: HotPatchEvent[];
  looks: Map<string, CanaryLook[]>;
  focus: string | undefined;
  operate: boolean;
  stop: AbortController;
  error: string | undefined;
  /** In a fleet: the fleet as its store holds it (read every few seconds: its changes are not this agent's events). */
  fleet: Fleet | undefined;
}
let view: View | undefined;
let refreshing: Promise<void> | undefined;
let again = false;

const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function badge(text: string, ok: boolean | undefined): void {
  live.textContent = text;
  live.className = `badge${ok === undefined ? '' : ok ? ' ok' : ' bad'}`;
}

function showSignIn(message?: string): void {
  view?.stop.abort();
  view = undefined;
  signOutButton.hidden = true;
  fill(document.getElementById('who')!, '');
  badge('signed out', undefined);
  const input = el('input', { id: 'token', name: 'token', type: 'password', required: '', autocomplete: 'off' });
  const error = el('p', { id: 'sign-in-error', class: 'error', role: 'alert' }, message ?? '');
  const form = el('form', { id: 'sign-in' }, el('label', { for: 'token' }, 'Token'), input, el('button', { type: 'submit' }, 'Sign in'), error);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    session.set(input.value);
    void getJson<{ tokenName?: string }>('/v1/status').then(
      () => void start(),
      (err: unknown) => {
        session.clear();
        fill(error, err instanceof SignedOut ? 'The agent refused this token.' : `The agent cannot be reached: ${(err as Error).message}`);
      },
    );
  });
  fill(
    app,
    el(
      'section',
      { class: 'sign-in' },
      el('h2', {}, 'Sign in'),
      el('p', {}, "This agent's dashboard needs one of its tokens: the operator's, or a read-only one. It is kept in this tab only."),
      form,
    ),
  );
  input.focus();
}

function record(v: View, e: HotPatchEvent): void {
  v.events.push(e);
  if (v.events.length > 500) v.events.splice(0, v.events.length - 500);
  if (e.type === 'CanaryStarted') v.looks.set(e.target, []);
  if (e.type === 'CanaryStep') v.looks.set(e.target, [...(v.looks.get(e.target) ?? []), lookOf(e)]);
}

function render(): void {
  const v = view;
  if (v === undefined || v.status === undefined) return;
  const targets = targetsView(v.status, v.operate);
  for (const row of targets.querySelectorAll<HTMLTableRowElement>('tbody tr')) {
    row.addEventListener('click', (ev) => {
      if ((ev.target as HTMLElement).closest('button') !== null) return;
      v.focus = v.focus === row.dataset.target ? undefined : row.dataset.target;
      render();
    });
  }
  fill(
    app,
    v.error === undefined ? null : el('p', { class: 'error', role: 'alert' }, v.error),
    summaryView(v.status),
    targets,
    canaryView(v.status, v.looks),
    v.fleet === undefined ? null : fleetView(v.fleet),
    el('div', { class: 'columns' }, timelineView(v.events, v.focus), el('div', {}, plansView(v.plans), approvalsView(v.events))),
  );
}

/** Status and plans again, one fetch at a time (events arriving meanwhile ask for one more). */
function refresh(): Promise<void> {
  if (refreshing !== undefined) {
    again = true;
    return refreshing;
  }
  refreshing = (async () => {
    const v = view;
    if (v === undefined) return;
    try {
      const [s, p] = await Promise.all([getJson<Status>('/v1/status'), getJson<{ plans: PlanRow[] }>('/v1/plans?limit=50')]);
      const first = v.status === undefined;
      v.status = s;
      v.plans = p.plans;
      v.error = undefined;
      render();
      // What the dashboard-render benchmark times: navigation start to the first full render.
      if (first) performance.mark('hotpatch-first-render');
    } catch (error) {
      if (error instanceof SignedOut) return showSignIn('The agent no longer accepts this token: sign in again.');
      v.error = `Cannot read the agent's status: ${(error as Error).message}`;
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
  dialog.returnValue = '';
  dialog.showModal();
  return new Promise((resolve) => dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true }));
}

app.addEventListener('click', (ev) => {
  const button = (ev.target as HTMLElement).closest<HTMLButtonElement>('button[data-action]');
  if (button === null || view === undefined) return;
  const action = button.dataset.action as Action;
  const target = button.dataset.target!;
  void (async () => {
    if (!(await ask(QUESTIONS[action](target)))) return;
    const reason = `${action} from the dashboard`;
    const body = action === 'promote' || action === 'unfreeze' ? { target } : { target, reason };
    try {
      const reply = await post(`/v1/${action}`, body);
      toast(reply.ok ? reply.message : `${reply.code ?? 'refused'}: ${reply.message}`, reply.ok);
    } catch (error) {
      if (error instanceof SignedOut) return showSignIn('The agent no longer accepts this token: sign in again.');
      toast(`not sent: ${(error as Error).message}`, false);
    }
    await refresh();
  })();
});

function toast(text: string, ok: boolean): void {
  const note = el('div', { class: `toast ${ok ? 'ok' : 'bad'}`, role: 'status' }, text);
  document.body.appendChild(note);
  setTimeout(() => note.remove(), 6000);
}

signOutButton.addEventListener('click', () => {
  session.clear();
  showSignIn();
});

/** The event stream, followed for as long as the view lives: reconnected with backoff when it ends or fails. */
async function stream(v: View): Promise<void> {
  let backoff = 500;
  while (!v.stop.signal.aborted) {
    try {
      await follow(
        (e) => {
          record(v, e);
          render();
          void refresh();
        },
        () => {
          backoff = 500;
          badge('live', true);
          void refresh();
        },
        v.stop.signal,
      );
    } catch (error) {
      if (v.stop.signal.aborted) return;
      if (error instanceof SignedOut) return showSignIn('The agent no longer accepts this token: sign in again.');
    }
    badge('reconnecting…', false);
    await pause(backoff);
    backoff = Math.min(backoff * 2, 10_000);
  }
}

async function start(): Promise<void> {
  const v: View = {
    status: undefined,
    plans: [],
    events: [],
    looks: new Map(),
    focus: undefined,
    operate: false,
    stop: new AbortController(),
    error: undefined,
    fleet: undefined,
  };
  view?.stop.abort();
  view = v;
  signOutButton.hidden = false;
  badge('connecting…', undefined);
  // The recent events first (the agent may still be starting: 503, asked again).
  for (let wait = 250; ; wait = Math.min(wait * 2, 5_000)) {
    try {
      const recent = await getJson<{ events: HotPatchEvent[] }>('/v1/events/recent?limit=500');
      for (const e of recent.events) record(v, e);
      break;
    } catch (error) {
      if (error instanceof SignedOut) return showSignIn('The agent refused this token.');
      if (!(error instanceof Busy)) {
        fill(app, el('p', { class: 'error', role: 'alert' }, `Cannot reach the agent: ${(error as Error).message}; retrying…`));
      }
      await pause(wait);
      if (v.stop.signal.aborted) return;
    }
  }
  const who = await getJson<{ role?: string; tokenName?: string }>('/v1/whoami').catch(() => ({ role: undefined, tokenName: undefined }));
  v.operate = who.role === 'operate';
  fill(document.getElementById('who')!, `signed in as ${who.tokenName ?? '?'} (${v.operate ? 'operator' : 'read-only'})`);
  void stream(v);
  await refresh();
  void followFleet(v);
}

/** While the agent is in a fleet, its agents and rollouts every 5 s. */
async function followFleet(v: View): Promise<void> {
  while (!v.stop.signal.aborted && v.status?.fleet !== undefined) {
    try {
      v.fleet = await getJson<Fleet>('/v1/fleet');
      render();
    } catch (error) {
      if (error instanceof SignedOut) return showSignIn('The agent no longer accepts this token: sign in again.');
    }
    await pause(5_000);
  }
}

if (session.token === undefined) showSignIn();
else void start();
